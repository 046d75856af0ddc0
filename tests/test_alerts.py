"""The outbox and its delivery, end to end: real databases, real Apprise, a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import http.server
import io
import itertools
import json
import logging
import re
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from monitor import models as m
from monitor.alerts import outbox
from monitor.alerts.deliver import deliver_due
from monitor.cli import main as cli
from monitor.config import Settings
from monitor.db import sessionmaker
from monitor.ingest import AlertRule
from monitor.posts import ForwardOrigin, Post
from monitor.runtime import Runtime, open_runtime

WJ = "\u2060"
CODE_RE = r"#([a-z][0-9a-z]{6})\b"  # an alert's code: 7 Crockford base-32 characters, a letter first
ENTITIES = ["Росатом", "УКТМК", "Газпром", "Казатомпром", "Сбербанк"]
WATCHLIST = ("".join(f'[[entities]]\nname = "{e}"\n\n' for e in ENTITIES)
             + '[[entities]]\nname = "Тишина"\nsilent = true\n\n')


class Sink:
    """A local webhook: records every POST (Apprise json://); can fail its first N calls with HTTP 500."""

    def __init__(self, fail_first: int = 0) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.calls = 0
        self.fail_first = fail_first
        self.lock = threading.Lock()
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with sink.lock:
                    sink.calls += 1
                    failing = sink.calls <= sink.fail_first
                    if not failing:
                        sink.bodies.append(json.loads(body))
                self.send_response(500 if failing else 200)
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *a: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.server.server_address[1]}/hook"

    def texts(self) -> list[str]:
        return [(b.get("title", "") + "\n" + b.get("message", "")).replace(WJ, "") for b in self.bodies]

    def codes(self) -> list[str]:
        return [c for t in self.texts() for c in re.findall(CODE_RE, t)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def sinks() -> Iterator[Callable[..., Sink]]:
    made: list[Sink] = []

    def make(fail_first: int = 0) -> Sink:
        s = Sink(fail_first)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def dest(name: str, url: str, extra: str = "") -> str:
    return f'[[alerts]]\nname = "{name}"\nurl = "{url}"\n{extra}\n'


T0 = datetime(2025, 5, 20, 9, 0, tzinfo=UTC)


def post(mid: int, text: str, *, minutes: int = 0, forward: ForwardOrigin | None = None) -> Post:
    return Post(message_id=mid, date=T0 + timedelta(minutes=minutes), text=text, forward=forward)


async def channel(rt: Runtime, name: str, tg_id: int) -> m.Channel:
    return await rt.store.upsert_channel(username=name, tg_id=tg_id, title=name.title())


async def ingest(rt: Runtime, ch: m.Channel, posts: list[Post]) -> int:
    return (await rt.ingestor.ingest(ch, posts, rule=AlertRule(force=True))).alerts


async def alerts(rt: Runtime) -> list[m.Alert]:
    async with sessionmaker(rt.engine)() as s:
        return list((await s.execute(select(m.Alert).order_by(m.Alert.id))).scalars())


async def drain(rt: Runtime, *, passes: int = 30, step: timedelta = timedelta(hours=7)) -> int:
    """Delivery passes, each later than the last by more than any backoff, until nothing is pending."""
    at = datetime.now(UTC)
    total = 0
    for _ in range(passes):
        total += await deliver_due(rt, at=at)
        if not [a for a in await alerts(rt) if a.status == outbox.PENDING]:
            break
        at += step
    return total


def story(i: int, names: list[str]) -> str:
    return f"Новость номер {i}: " + " и ".join(names) + f" обсуждают сделку номер {i * 7}."


# --------------------------------------------------------------------------- outbox + delivery


async def test_one_delivery_per_post_and_destination_naming_all_entities(
        make_settings: Callable[..., Settings], db_url: str, sinks: Callable[..., Sink]) -> None:
    a, b = sinks(), sinks()
    settings = make_settings(WATCHLIST + dest("a", a.url) + dest("b", b.url, 'format = "html"'), db_url)
    async with open_runtime(settings) as rt:
        ch = await channel(rt, "news_one", 1001)
        posts, expected = [], {}
        for i in range(20):  # 50 matches across 20 posts: 2 or 3 entities each, one of them named twice
            names = [ENTITIES[(i + k) % 5] for k in range(3 if 5 <= i < 10 else 2)]
            text = story(i, names) + (f" Ещё раз: {names[0]}." if i < 5 else "")
            posts.append(post(100 + i, text))
            expected[100 + i] = set(names)
        res = await rt.ingestor.ingest(ch, posts, rule=AlertRule(force=True))
        assert res.matches == 50 and res.alerts == 40
        assert await deliver_due(rt) == 40
        for sink in (a, b):
            assert len(sink.bodies) == 20
            for text in sink.texts():
                mid = int(re.search(r"t\.me/news_one/(\d+)", text).group(1))
                title = text.split("\n", 1)[0]
                assert {e for e in ENTITIES if e in title} == expected[mid]
            assert len(set(sink.codes())) == 20
        # re-polls, a re-import, a restart: nothing more
        assert await ingest(rt, ch, posts) == 0
        assert await deliver_due(rt) == 0
    async with open_runtime(settings) as rt2:
        ch = await rt2.store.find_channel(username="news_one")
        assert await ingest(rt2, ch, posts) == 0
        assert await deliver_due(rt2) == 0
        # an edit alerts only for the entity that was not there before
        edited = post(100, story(0, ["Росатом", "УКТМК"]) + " Позже к ним присоединился Сбербанк.")
        assert await ingest(rt2, ch, [edited]) == 2
        assert await deliver_due(rt2) == 0  # 20 messages went to each in the last minute: the limit
        assert await deliver_due(rt2, at=datetime.now(UTC) + timedelta(minutes=2)) == 2
    assert len(a.bodies) == 21 and a.texts()[-1].split("\n", 1)[0].startswith("Сбербанк —")


async def test_flaky_destination_receives_each_alert_once(
        make_settings: Callable[..., Settings], db_url: str, sinks: Callable[..., Sink]) -> None:
    flaky = sinks(fail_first=3)
    settings = make_settings(WATCHLIST + dest("flaky", flaky.url), db_url)
    async with open_runtime(settings) as rt:
        ch = await channel(rt, "news_two", 1002)
        await ingest(rt, ch, [post(i, story(i, ["Газпром"])) for i in range(1, 7)])
        assert await drain(rt) == 6
        rows = await alerts(rt)
    assert all(r.status == outbox.SENT for r in rows)
    assert sorted(flaky.codes()) == sorted(r.code for r in rows)  # each exactly once
    assert flaky.calls == 3 + 6
    assert max(r.attempts for r in rows) > 1


async def test_dead_destination_fails_with_reason_and_others_still_receive(
        make_settings: Callable[..., Settings], db_url: str, sinks: Callable[..., Sink]) -> None:
    live = sinks()
    body = '[delivery]\nmax_attempts = 3\n\n' + WATCHLIST + dest("live", live.url) + dest(
        "dead", "json://127.0.0.1:9/nothing")
    settings = make_settings(body, db_url)
    async with open_runtime(settings) as rt:
        ch = await channel(rt, "news_three", 1003)
        await ingest(rt, ch, [post(i, story(i, ["Казатомпром"])) for i in range(1, 5)])
        await drain(rt)
        rows = await alerts(rt)
    dead = [r for r in rows if r.destination == "dead"]
    assert len(dead) == 4 and all(r.status == outbox.FAILED and r.attempts == 3 for r in dead)
    assert all(r.last_error and "127.0.0.1" in r.last_error for r in dead)
    assert len(live.bodies) == 4 and all(r.status == outbox.SENT for r in rows if r.destination == "live")


async def test_two_workers_on_postgresql_send_each_alert_once(
        make_settings: Callable[..., Settings], pg_url: str, sinks: Callable[..., Sink]) -> None:
    sink = sinks()
    body = '[delivery]\nrate_limit_per_minute = 1000\n\n' + WATCHLIST + dest("hook", sink.url)
    settings = make_settings(body, pg_url)
    async with open_runtime(settings) as rt1, open_runtime(settings) as rt2:
        ch = await channel(rt1, "news_four", 1004)
        await ingest(rt1, ch, [post(i, story(i, ["Сбербанк"])) for i in range(1, 41)])
        # claims race first: many small concurrent claims from two engines never overlap
        claims = await asyncio.gather(*(outbox.claim_due(r.engine, "hook", f"w{k}", limit=3)
                                        for k, r in enumerate([rt1, rt2] * 5)))
        ids = [a.id for c in claims for a in c]
        assert len(ids) == len(set(ids)) == 30
        for k, c in enumerate(claims):
            await outbox.release(rt1.engine, [a.id for a in c], f"w{k}")
        sent = await asyncio.gather(deliver_due(rt1, worker="one"), deliver_due(rt2, worker="two"),
                                    deliver_due(rt1, worker="three"), deliver_due(rt2, worker="four"))
        assert sum(sent) == 40
    assert len(sink.bodies) == 40 and len(set(sink.codes())) == 40


async def test_burst_of_200_at_20_per_minute_arrives_as_digests(
        make_settings: Callable[..., Settings], db_url: str, sinks: Callable[..., Sink]) -> None:
    sink = sinks()
    settings = make_settings(WATCHLIST + dest("hook", sink.url), db_url)
    async with open_runtime(settings) as rt:
        ch = await channel(rt, "news_five", 1005)
        await ingest(rt, ch, [post(i, story(i, ["Росатом"])) for i in range(1, 201)])
        at = datetime.now(UTC)
        assert await deliver_due(rt, at=at) == 200
        codes = {r.code for r in await alerts(rt)}
    assert 1 < len(sink.bodies) <= 20
    assert set(sink.codes()) == codes and len(sink.codes()) == 200  # none lost, none twice
    assert all(t.startswith("Сводка: 200 упоминаний") for t in sink.texts())


async def test_rate_limit_spreads_over_minutes(
        make_settings: Callable[..., Settings], sqlite_url: str, sinks: Callable[..., Sink]) -> None:
    sink = sinks()
    settings = make_settings('[delivery]\nrate_limit_per_minute = 2\n\n' + WATCHLIST + dest("hook", sink.url),
                             sqlite_url)
    async with open_runtime(settings) as rt:
        ch = await channel(rt, "news_rate", 1010)
        await ingest(rt, ch, [post(1, story(1, ["УКТМК"])), post(2, story(2, ["УКТМК"]))])
        at = datetime.now(UTC)
        assert await deliver_due(rt, at=at) == 2  # within the limit: one message each
        await ingest(rt, ch, [post(3, story(3, ["УКТМК"]))])
        assert await deliver_due(rt, at=at + timedelta(seconds=10)) == 0  # allowance used up
        assert await deliver_due(rt, at=at + timedelta(seconds=70)) == 1
    assert len(sink.bodies) == 3


async def test_same_story_in_three_channels_is_one_alert_naming_all(
        make_settings: Callable[..., Settings], db_url: str, sinks: Callable[..., Sink]) -> None:
    sink = sinks()
    settings = make_settings(WATCHLIST + dest("hook", sink.url), db_url)
    text = "Росатом и УКТМК подписали соглашение о поставках оборудования для новой станции."
    async with open_runtime(settings) as rt:
        chans = [await channel(rt, f"chan_{k}", 2000 + n) for n, k in enumerate("abc")]
        for k, ch in enumerate(chans):  # the same story, reposted with other spacing, within the hour
            assert await ingest(rt, ch, [post(10 + k, text.upper() if k == 1 else text, minutes=20 * k)]) == (
                1 if k == 0 else 0)
        assert await deliver_due(rt) == 1
        assert len(sink.bodies) == 1
        body = sink.texts()[0]
        assert "@chan_a" in body and "Также в: @chan_b, @chan_c" in body
        # a fourth channel forwards the story later: a follow-up line, riding on the next message
        d = await channel(rt, "chan_d", 2004)
        origin = ForwardOrigin(channel_id=2000, message_id=10)
        assert await ingest(rt, d, [post(50, "Переслано: " + text, minutes=90, forward=origin)]) == 0
        assert await deliver_due(rt) == 0  # not alone, not yet
        e = await channel(rt, "chan_e", 2005)
        await ingest(rt, e, [post(60, story(60, ["Газпром"]))])
        assert await deliver_due(rt) == 2  # the new alert and the follow-up in one message
        assert len(sink.bodies) == 2 and "также в: @chan_d" in sink.texts()[1]
        rows = await alerts(rt)
    first = rows[0]
    assert first.also_in == ["@chan_b", "@chan_c", "@chan_d"]


async def test_forward_of_alerted_post_does_not_alert_again(
        make_settings: Callable[..., Settings], sqlite_url: str, sinks: Callable[..., Sink]) -> None:
    sink = sinks()
    for on_forwards, expected in ((False, 0), (True, 1)):
        body = f"[delivery]\nalert_on_forwards = {str(on_forwards).lower()}\n\n" + WATCHLIST + dest("h", sink.url)
        settings = make_settings(body, sqlite_url.replace(".db", f"{on_forwards}.db"))
        async with open_runtime(settings) as rt:
            src = await channel(rt, "origin_ch", 3001)
            other = await channel(rt, "other_ch", 3002)
            await ingest(rt, src, [post(5, "Газпром объявил дивиденды")])
            await deliver_due(rt)
            fwd = post(77, "Газпром объявил дивиденды", minutes=5 * 24 * 60,
                       forward=ForwardOrigin(channel_id=3001, message_id=5))
            assert await ingest(rt, other, [fwd]) == expected


async def test_silent_entities_routing_and_operator_destinations(
        make_settings: Callable[..., Settings], db_url: str, sinks: Callable[..., Sink]) -> None:
    everything, gas, ops = sinks(), sinks(), sinks()
    body = (WATCHLIST + dest("all", everything.url) + dest("gas", gas.url, 'entities = ["газпром"]')
            + dest("only_other", everything.url, 'channels = ["@somewhere_else"]')
            + dest("ops", ops.url, "operator = true")
            + '[[channels]]\nusername = "@somewhere_else"\nenabled = false\n')
    settings = make_settings(body, db_url)
    async with open_runtime(settings) as rt:
        ch = await channel(rt, "news_six", 1006)
        assert await ingest(rt, ch, [post(1, "Тишина пришла"), post(2, "Газпром и Росатом"),
                                     post(3, "Росатом один")]) == 3
        rows = await alerts(rt)
        assert {(r.destination, r.status) for r in rows if r.post_id} == {
            ("all", outbox.SILENT), ("all", outbox.PENDING), ("gas", outbox.PENDING)}
        assert [r.entity_ids for r in rows if r.destination == "gas"] == [["газпром"]]
        n = await outbox.enqueue_operator_alert(rt.store, settings, title="Сессия", body="@everyone нет сессии",
                                                key="dead-session")
        assert n == 1
        assert await outbox.enqueue_operator_alert(rt.engine, settings, title="x", body="y", key="dead-session") == 0
        assert await deliver_due(rt) == 4
    assert len(everything.bodies) == 2 and len(gas.bodies) == 1 and len(ops.bodies) == 1
    assert ops.bodies[0]["title"] == "Сессия" and "@everyone" not in ops.bodies[0]["message"]


async def test_quiet_hours_hold_alerts_and_send_one_digest(
        make_settings: Callable[..., Settings], sqlite_url: str, sinks: Callable[..., Sink]) -> None:
    sink = sinks()
    now = datetime.now(UTC)
    start, end = now - timedelta(hours=1), now + timedelta(hours=1)
    quiet = f'quiet_hours = "{start:%H:%M}-{end:%H:%M}"'
    settings = make_settings(WATCHLIST + dest("night", sink.url, quiet), sqlite_url)
    async with open_runtime(settings) as rt:
        ch = await channel(rt, "news_seven", 1007)
        await ingest(rt, ch, [post(i, story(i, ["Росатом"])) for i in range(1, 4)])
        assert await deliver_due(rt, at=now) == 0  # held
        assert sink.bodies == []
        assert await deliver_due(rt, at=end + timedelta(minutes=2)) == 3
    assert len(sink.bodies) == 1 and sink.texts()[0].startswith("Сводка: 3 упоминания,")
    assert len(sink.codes()) == 3


async def test_console_destination_prints(
        make_settings: Callable[..., Settings], sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    settings = make_settings(WATCHLIST + dest("me", "console://"), sqlite_url)
    async with open_runtime(settings) as rt:
        ch = await channel(rt, "news_eight", 1008)
        await ingest(rt, ch, [post(1, "Росатом открыл <b>новый</b> завод")])
        assert await deliver_due(rt) == 1
    out = capsys.readouterr().out
    assert out.startswith("Росатом — @") and "https://t.me/news_eight/1" in out


SECRETS = ("AAFakeBotTokenSECRETxyz", "hunter2pass", "tokEnSecret42", "hooksecret99")


@pytest.fixture
def verbose_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """``-v``: our formatter on the root logger at DEBUG, Apprise's own lines included; the log text."""
    from monitor.logs import setup_logging

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    monkeypatch.setattr(logging.getLogger("apprise"), "propagate", True)
    setup_logging("debug", "text", verbose=1)
    buf = io.StringIO()
    root.handlers[0].setStream(buf)  # type: ignore[attr-defined]
    yield buf
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


async def test_failed_deliveries_never_log_a_secret(
        make_settings: Callable[..., Settings], sqlite_url: str, monkeypatch: pytest.MonkeyPatch,
        verbose_logs: io.StringIO) -> None:
    import apprise.plugins.telegram as tg

    monkeypatch.setattr(tg.NotifyTelegram, "notify_url", "http://127.0.0.1:9/bot")  # a dead Bot API
    body = ('[delivery]\nmax_attempts = 1\n\n' + WATCHLIST
            + dest("bot", "tgram://123456789:AAFakeBotTokenSECRETxyz/-100777")
            + dest("hook", "json://user:hunter2pass@127.0.0.1:9/x/hooksecret99?token=tokEnSecret42"))
    settings = make_settings(body, sqlite_url)
    async with open_runtime(settings) as rt:
        ch = await channel(rt, "news_nine", 1009)
        await ingest(rt, ch, [post(1, story(1, ["Росатом"]))])
        assert await deliver_due(rt) == 0
        rows = await alerts(rt)
    assert {r.destination for r in rows if r.status == outbox.FAILED} == {"bot", "hook"}
    err = verbose_logs.getvalue()
    assert "alert delivery failed" in err and "api.telegram.org" not in err
    assert "url=tgram://***" in err and "url=json://127.0.0.1:9/***" in err
    assert "127.0.0.1:9/bot" in err, "Apprise's own debug lines are logged (and redacted)"
    leaked = [s for s in (*SECRETS, "123456789:") if s in err or any(s in (r.last_error or "") for r in rows)]
    assert not leaked, err


async def test_claims_expire_after_a_crash(make_settings: Callable[..., Settings], db_url: str) -> None:
    settings = make_settings(WATCHLIST + dest("me", "console://"), db_url)
    async with open_runtime(settings) as rt:
        ch = await channel(rt, "news_nine", 1009)
        await ingest(rt, ch, [post(1, "Росатом")])
        at = datetime.now(UTC)
        assert len(await outbox.claim_due(rt.engine, "me", "crashed", at=at)) == 1
        assert await outbox.claim_due(rt.engine, "me", "other", at=at) == []
        assert len(await outbox.claim_due(rt.engine, "me", "other", at=at + outbox.LEASE * 2)) == 1


# --------------------------------------------------------------------------- commands


def _cli(cfg: Path, *args: str) -> Any:
    return CliRunner().invoke(cli, ["--config", str(cfg), *args])


def test_alerts_test_names_each_destination(write_config: Callable[..., Path], sqlite_url: str,
                                            sinks: Callable[..., Sink]) -> None:
    live = sinks()
    cfg = write_config(WATCHLIST + dest("live", live.url, 'format = "html"') + dest("dead", "json://127.0.0.1:9/x"),
                       sqlite_url)
    res = _cli(cfg, "alerts", "test")
    assert res.exit_code == 1, res.output
    lines = res.stdout.strip().splitlines()
    assert lines[0] == "live: ok" and lines[1].startswith("dead: error:")
    assert len(live.bodies) == 1


def test_alerts_list_and_retry(write_config: Callable[..., Path], sqlite_url: str) -> None:
    cfg = write_config('[delivery]\nmax_attempts = 1\n\n' + WATCHLIST + dest("dead", "json://127.0.0.1:9/x"),
                       sqlite_url)

    async def setup() -> str:
        from monitor.config import load_settings

        async with open_runtime(load_settings(cfg)) as rt:
            ch = await channel(rt, "news_ten", 1011)
            await ingest(rt, ch, [post(1, "Росатом"), post(2, "УКТМК и Росатом")])
            await deliver_due(rt)
            return (await alerts(rt))[0].code

    code = asyncio.run(setup())
    res = _cli(cfg, "alerts", "list", "--status", "failed", "--format", "jsonl")
    docs = [json.loads(line) for line in res.stdout.splitlines()]
    assert res.exit_code == 0 and len(docs) == 2
    assert {d["status"] for d in docs} == {"failed"} and docs[0]["channel"] == "@news_ten"
    assert docs[0]["entities"] == ["УКТМК", "Росатом"] or docs[0]["entities"] == ["Росатом", "УКТМК"]
    table = _cli(cfg, "alerts", "list")
    assert f"#{code}" in table.output and "failed" in table.output
    res = _cli(cfg, "alerts", "retry", code)
    assert res.exit_code == 0 and "1 alert(s) due again" in res.output
    assert "pending" in _cli(cfg, "alerts", "list", "--status", "pending").output
    res = _cli(cfg, "alerts", "retry", "--failed")
    assert res.exit_code == 0 and "1 alert(s)" in res.output
    assert _cli(cfg, "alerts", "retry", "zzzzzz").exit_code == 2
    assert _cli(cfg, "alerts", "retry").exit_code == 2



# --------------------------------------------------------------------------- alert codes


def test_codes_are_unique_short_and_never_look_like_old_codes_or_ids() -> None:
    codes = [outbox.code_for_id(i) for i in range(300_000)]
    assert len(set(codes)) == len(codes)  # the hashed 24-bit codes collided after ~2,400 alerts
    assert all(re.fullmatch(r"[a-hjkmnp-s][0-9a-hjkmnp-tv-z]{6}", c) for c in codes)
    # the permutation reaches the top of its 34-bit range and stays a bijection there
    top = [outbox.code_for_id(i) for i in range((1 << 34) - 100_000, 1 << 34)]
    assert len(set(top)) == len(top) and not set(top) & set(codes)
    assert outbox.code_for_id(1 << 34).startswith("z") and len(outbox.code_for_id(1 << 34)) == 8
    # neighbouring ids give unrelated codes: a typo of one code does not name the next alert
    assert sum(a[:4] == b[:4] for a, b in itertools.pairwise(codes)) < 100
    assert outbox.code_for_id(17) == outbox.code_for_id(17)  # stable


async def test_every_alert_gets_a_unique_code_from_its_row(
        make_settings: Callable[..., Settings], db_url: str) -> None:
    settings = make_settings(WATCHLIST + dest("a", "console://") + dest("b", "console://")
                             + dest("ops", "console://", "operator = true"), db_url)
    async with open_runtime(settings) as rt:
        ch = await channel(rt, "news_codes", 1077)
        # 1,500 posts x 2 destinations: more alerts than the old codes survived without a collision
        await ingest(rt, ch, [post(i, story(i, [ENTITIES[i % 5]])) for i in range(1, 1501)])
        added = await outbox.enqueue_operator_alert(rt.engine, settings, title="t", body="b", key="k1")
        assert added == 1
        assert await outbox.enqueue_operator_alert(rt.engine, settings, title="t", body="b", key="k1") == 0
        rows = await alerts(rt)
    assert len(rows) == 3001
    assert all(r.code == outbox.code_for_id(r.id) for r in rows)
    assert len({r.code for r in rows}) == len(rows)


def test_old_codes_keep_working_and_a_shared_old_code_asks_for_the_id(
        write_config: Callable[..., Path], sqlite_url: str) -> None:
    cfg = write_config('[delivery]\nmax_attempts = 1\n\n' + WATCHLIST + dest("dead", "json://127.0.0.1:9/x"),
                       sqlite_url)

    async def setup() -> list[m.Alert]:
        from monitor.config import load_settings

        async with open_runtime(load_settings(cfg)) as rt:
            ch = await channel(rt, "news_old", 1078)
            await ingest(rt, ch, [post(1, "Росатом"), post(2, "УКТМК"), post(3, "Газпром")])
            await deliver_due(rt)
            async with sessionmaker(rt.engine).begin() as s:  # rows made by an older version: hashed codes
                rows = list((await s.execute(select(m.Alert).order_by(m.Alert.id))).scalars())
                rows[0].code, rows[1].code, rows[2].code = "a1b2c3", "0f0f0f", "0f0f0f"
            return await alerts(rt)

    rows = asyncio.run(setup())
    assert [r.status for r in rows] == ["failed"] * 3
    res = _cli(cfg, "alerts", "retry", "#a1b2c3")
    assert res.exit_code == 0 and "1 alert(s) due again" in res.output, res.output
    res = _cli(cfg, "alerts", "retry", "0f0f0f")
    assert res.exit_code == 2 and f"ids {rows[1].id}, {rows[2].id}" in res.output, res.output
    assert "failed" in _cli(cfg, "alerts", "list", "--status", "failed").output  # nothing retried
    res = _cli(cfg, "alerts", "retry", str(rows[2].id))
    assert res.exit_code == 0 and "1 alert(s) due again" in res.output


# --------------------------------------------------------------------------- edits below the baseline


async def test_an_edit_after_the_watch_began_alerts_for_what_it_added(
        make_settings: Callable[..., Settings], db_url: str, sinks: Callable[..., Sink]) -> None:
    from monitor.ingest import AlertRule as Rule

    sink = sinks()
    settings = make_settings(WATCHLIST + dest("a", sink.url), db_url)
    async with open_runtime(settings) as rt:
        ch = await channel(rt, "news_edits", 1090)
        # the first poll: posts 1-3 stored, the baseline set at the newest; none of them alerts
        first = [post(i, story(i, ["Росатом"])) for i in (1, 2, 3)]
        assert (await rt.ingestor.ingest(ch, first, rule=Rule())).alerts == 0
        assert await rt.store.set_baseline(ch.id, 3)
        ch = await rt.store.get_channel(ch.id)
        assert ch.baseline_at is not None and abs(ch.baseline_at - datetime.now(UTC)) < timedelta(minutes=1)
        # re-read unchanged, and an edit made before we watched (seen for the first time now): silent
        stale = Post(message_id=2, date=T0, text=story(2, ["Росатом", "Газпром"]),
                     edit_date=ch.baseline_at - timedelta(minutes=5))
        assert (await rt.ingestor.ingest(ch, [*first[:1], stale], rule=Rule())).alerts == 0
        # an edit made after the baseline adds Сбербанк to post 1: one alert, for Сбербанк only
        fresh = Post(message_id=1, date=T0, text=story(1, ["Росатом", "Сбербанк"]),
                     edit_date=ch.baseline_at + timedelta(minutes=1))
        assert (await rt.ingestor.ingest(ch, [fresh], rule=Rule())).alerts == 1
        assert (await rt.ingestor.ingest(ch, [fresh], rule=Rule())).alerts == 0  # seen again: nothing
        assert await deliver_due(rt) == 1
    [text] = sink.texts()
    assert text.split("\n", 1)[0].startswith("Сбербанк —") and "Росатом" not in text.split("\n", 1)[0]
    assert "t.me/news_edits/1" in text
