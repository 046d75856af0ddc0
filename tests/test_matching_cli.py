"""`tgmonitor match`: the JSON Lines loop directly, and the command through click's CliRunner."""

from __future__ import annotations

import io
import json
from pathlib import Path

from click.testing import CliRunner

from monitor.cli import main
from monitor.cli.match import explain_text, match_lines
from monitor.matching import EntitySpec, Watchlist

WATCHLIST = """
[[entities]]
name = "Росатом"
aliases = ["Rosatom"]

[[entities]]
name = "Токаев"
aliases = ["Tokayev"]
"""


def _wl() -> Watchlist:
    return Watchlist.compile([EntitySpec("Росатом", ("Rosatom",)), EntitySpec("Токаев", ("Tokayev",))])


def test_match_lines_writes_one_object_per_match_with_original_offsets() -> None:
    text = "Глава Рос\u200bатома встретился с Токаевым."
    lines = [json.dumps({"id": 7, "text": text}, ensure_ascii=False).encode()]
    out, err = io.StringIO(), io.StringIO()
    assert match_lines(_wl(), lines, out, err) == 0
    got = [json.loads(x) for x in out.getvalue().splitlines()]
    assert [g["entity"] for g in got] == ["Росатом", "Токаев"]
    for g in got:
        assert g["id"] == 7 and text[g["start"] : g["end"]] == g["surface"]
        assert set(g) == {"id", "entity", "start", "end", "surface"}
    assert "Рос" in out.getvalue()  # ensure_ascii=False: Cyrillic as is
    assert err.getvalue() == ""


def test_match_lines_reports_malformed_lines_and_goes_on() -> None:
    lines = [
        b'{"id": "a", "text": "Rosatom"}',
        b"not json",
        b"[1, 2]",
        b'{"text": "no id"}',
        b'{"id": 1, "text": 5}',
        b"\xff\xfe",
        b"",
        b'{"id": "b", "text": "Tokayev"}',
    ]
    out, err = io.StringIO(), io.StringIO()
    assert match_lines(_wl(), lines, out, err) == 5
    assert [json.loads(x)["id"] for x in out.getvalue().splitlines()] == ["a", "b"]
    reported = [line.split(":")[0] for line in err.getvalue().splitlines()]
    assert reported == ["line 2", "line 3", "line 4", "line 5", "line 6"]


def test_explain_text_lists_forms_and_translit() -> None:
    text = explain_text(_wl(), "Токаев")
    assert "токаевым" in text and "toqaev" in text and "(id: токаев)" in text


def test_cli_match_file_and_stdin(tmp_path: Path) -> None:
    wl = tmp_path / "w.toml"
    wl.write_text(WATCHLIST, encoding="utf-8")
    posts = tmp_path / "posts.jsonl"
    posts.write_text(
        '{"id": "p1", "text": "Акции Росатома выросли"}\nbroken\n{"id": "p2", "text": "Tokayev"}\n',
        encoding="utf-8",
    )
    runner = CliRunner()
    res = runner.invoke(main, ["match", "--watchlist", str(wl), str(posts)])
    assert res.exit_code == 0, res.output
    rows = [json.loads(x) for x in res.stdout.splitlines() if x.startswith("{")]
    assert rows == [
        {"id": "p1", "entity": "Росатом", "start": 6, "end": 14, "surface": "Росатома"},
        {"id": "p2", "entity": "Токаев", "start": 0, "end": 7, "surface": "Tokayev"},
    ]
    assert "line 2:" in res.stderr
    res = runner.invoke(main, ["match", "--watchlist", str(wl)], input='{"id": 1, "text": "Rosatom"}\n')
    assert res.exit_code == 0 and '"entity": "Росатом"' in res.stdout


def test_cli_explain_and_bad_watchlist(tmp_path: Path) -> None:
    wl = tmp_path / "w.toml"
    wl.write_text(WATCHLIST, encoding="utf-8")
    runner = CliRunner()
    res = runner.invoke(main, ["match", "--watchlist", str(wl), "--explain", "Росатом"])
    assert res.exit_code == 0 and "росатомом" in res.stdout
    res = runner.invoke(main, ["match", "--watchlist", str(wl), "--explain", "Tokayev"])  # an alias names it too
    assert res.exit_code == 0 and res.stdout.startswith("Токаев (id:") and "токаевым" in res.stdout
    res = runner.invoke(main, ["match", "--watchlist", str(wl), "--explain", "Нет такого"])
    assert res.exit_code == 2 and "name, alias or id" in res.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text('[[entities]]\nname = "X"\nregex = "(unclosed"\n', encoding="utf-8")
    res = runner.invoke(main, ["match", "--watchlist", str(bad)], input="")
    assert res.exit_code == 2 and "regex" in res.stderr and "Traceback" not in res.output


def test_cli_explain_by_language_and_languages_key(tmp_path: Path) -> None:
    wl = tmp_path / "w.toml"
    wl.write_text('[[entities]]\nname = "Олжас Бектенов"\naliases = ["Tokayev", "Тоқаев"]\n', encoding="utf-8")
    runner = CliRunner()
    res = runner.invoke(main, ["match", "--watchlist", str(wl), "--explain", "Олжас Бектенов"])
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert "Russian forms" in out and "Kazakh forms" in out and "English forms" in out
    assert "олжасом бектеновым" in out and "олжас бектеновтің" in out and "тоқаевқа" in out
    assert "tokayev's" in out
    assert "олжас бектеновой" not in out and "олжасу бектеновой" not in out  # no mismatched genders
    # [matching] languages in the watchlist file applies to `match` too
    wl.write_text('[matching]\nlanguages = ["ru"]\n\n[[entities]]\nname = "Тоқаев"\n', encoding="utf-8")
    res = runner.invoke(main, ["match", "--watchlist", str(wl)], input='{"id": 1, "text": "Тоқаевтың Тоқаевым"}\n')
    assert res.exit_code == 0 and [json.loads(x)["surface"] for x in res.stdout.splitlines()] == ["Тоқаевым"]
    wl.write_text('[matching]\nlanguages = ["ru", "de"]\n\n[[entities]]\nname = "Тоқаев"\n', encoding="utf-8")
    res = runner.invoke(main, ["match", "--watchlist", str(wl)], input="")
    assert res.exit_code == 2 and "matching.languages" in res.stderr and "Traceback" not in res.output
