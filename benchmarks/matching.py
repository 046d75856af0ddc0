"""Matcher throughput, build time and memory for watchlists of 10, 1,000 and 10,000 entities.

    uv run python benchmarks/matching.py [--tokens 1000000] [--runs 5] [--sizes 10,1000,10000] [--profile]

The corpus is generated here (no downloads): Russian news-like paragraphs built from pymorphy3's
inflected forms of a few hundred common words, with numbers, Latin words, quotes, hashtags, emoji and
mentions of real watchlist names sprinkled in. Each watchlist size runs in its own subprocess so that
its build time and peak RSS are its own. Tokens are counted as ``[^\\W_]+(?:[-'’][^\\W_]+)*``.
All times are CPU time of the measuring process (``time.process_time``), best and median of several
passes, so other jobs on a shared machine do not distort them; the build's wall time is shown too.
The same text is also timed as Telegram posts (1-5 paragraphs joined by line breaks), the shape the
service sees; line breaks send a post through the full normalisation.
Targets (issue 3): ≥ 1.5 M tokens/s at 10,000 entities and ≥ half the 10-entity figure; build ≤ 10 s;
≤ 150 MB RSS.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor.matching import EntitySpec, Watchlist

TOKEN = re.compile(r"[^\W_]+(?:[-'’][^\W_]+)*")

NOUNS = (
    "правительство год рынок цена компания банк страна город проект рост закон решение министр президент "
    "депутат бюджет налог экономика инфляция ставка кредит завод добыча нефть газ уран уголь металл "
    "экспорт импорт сделка акция инвестор биржа доллар тенге рубль неделя месяц день время человек "
    "вопрос работа система программа развитие область район столица житель школа больница дорога "
    "транспорт поезд самолёт аэропорт граница таможня санкция соглашение договор встреча визит "
    "переговоры заявление пресс-служба источник эксперт аналитик прогноз данные отчёт прибыль убыток "
    "выручка доля рынок сотрудник зарплата пенсия пособие суд дело приговор полиция прокуратура "
    "министерство ведомство агентство комитет совет парламент сенат выборы партия мир война энергетика "
    "электростанция строительство жильё квартира ипотека вклад депозит тариф услуга связь интернет "
    "телефон приложение платформа сеть магазин продукт урожай зерно пшеница мясо молоко вода погода"
).split()
ADJS = (
    "новый крупный государственный национальный местный российский казахстанский китайский "
    "европейский международный финансовый экономический промышленный энергетический налоговый "
    "региональный городской южный северный западный восточный главный последний первый важный "
    "высокий низкий средний большой малый частный общий социальный политический"
).split()
VERBS = (
    "заявить сообщить отметить подписать принять объявить увеличить снизить сократить вырасти упасть "
    "начать завершить открыть закрыть построить получить выделить обсудить провести подготовить "
    "утвердить одобрить запустить продать купить планировать рассчитывать ожидать предложить"
).split()
FUNC = (
    "и в на с по о к у за из от до при для что как это также уже ещё не но а или же бы то этот его их "
    "который где когда после более около свыше почти только"
).split()
LATIN = "IT ESG IPO LNG GDP online Tesla Apple Reuters Bloomberg Forbes ChatGPT Telegram".split()
EMOJI = ["🔥", "⚡️", "📈", "📉", "❗️", "👉", "🇰🇿"]

REAL = [
    EntitySpec("Росатом", ("Rosatom",)),
    EntitySpec("Токаев", ("Касым-Жомарт Токаев", "Tokayev")),
    EntitySpec("Усть-Каменогорский титано-магниевый комбинат", ("УКТМК",)),
    EntitySpec("CNNC"),
    EntitySpec("Telf AG"),
    EntitySpec("Казхром"),
    EntitySpec("Ivanhoe Mines"),
    EntitySpec("Астана"),
    EntitySpec("Мир"),
    EntitySpec("ЕРГ"),
    EntitySpec("Объединённая авиастроительная корпорация"),
    EntitySpec("Казатомпром", ("Kazatomprom",)),
]
MENTIONS = [
    "Росатома", "Росатом", "Токаев", "Токаева", "Токаевым", "УКТМК", "CNNC", "Telf AG", "Казхромом",
    "Ivanhoe Mines", "Астане", "Астаны", "Казатомпром", "«Казатомпрома»", "#Росатом",
    "Усть-Каменогорского титано-магниевого комбината",
]  # fmt: skip

SYLL = (
    "ка ла ма на ра та са ба да за ко ло мо но ро то со бо до зо ки ли ми ни ри ти си ви ду ру ту "
    "хан бек тай нур ар ер ул ан ек"
).split()
LAT_SYLL = "ka lo mi ne ru to sa be di zo ar el on ix ur ta ve no".split()
GENERIC = "комбинат холдинг завод банк фонд центр союз трест концерн альянс".split()
LAT_SUFFIX = "Holdings AG Group Mining Capital Resources Energy Partners".split()


def _forms(morph: object, words: list[str], adjectives: bool = False) -> list[str]:
    out: list[str] = []
    for w in words:
        p = morph.parse(w)[0]  # type: ignore[attr-defined]
        out.extend(f.word for f in p.lexeme if not adjectives or f.tag.POS == "ADJF")
    return out


def make_corpus(n_tokens: int, seed: int = 7) -> list[str]:
    """Paragraphs of realistic vocabulary totalling at least ``n_tokens`` tokens."""
    from monitor.matching.forms import morph

    m = morph()
    rng = random.Random(seed)
    nouns, adjs, verbs = _forms(m, NOUNS), _forms(m, ADJS, True), _forms(m, VERBS)
    paragraphs: list[str] = []
    total = 0
    while total < n_tokens:
        sentences = []
        for _ in range(rng.randint(1, 3)):
            words: list[str] = []
            for _ in range(rng.randint(6, 16)):
                r = rng.random()
                if r < 0.30:
                    words.append(rng.choice(FUNC))
                elif r < 0.62:
                    words.append(rng.choice(nouns))
                elif r < 0.80:
                    words.append(rng.choice(adjs))
                elif r < 0.92:
                    words.append(rng.choice(verbs))
                elif r < 0.96:
                    words.append(str(rng.randint(1, 2025)) + rng.choice(["", "%", " млрд", " тыс."]))
                elif r < 0.985:
                    words.append(rng.choice(LATIN))
                else:
                    words.append(rng.choice(MENTIONS))
            if rng.random() < 0.2:
                words.insert(rng.randrange(len(words)), "«" + rng.choice(nouns).capitalize() + "»")
            s = " ".join(words)
            s = s[0].upper() + s[1:] + rng.choice([".", ".", ".", "!", "?", "…"])
            if rng.random() < 0.3:
                s = rng.choice(EMOJI) + " " + s
            sentences.append(s)
        p = " ".join(sentences)
        if rng.random() < 0.1:
            p += " #" + rng.choice(nouns)
        paragraphs.append(p)
        total += len(TOKEN.findall(p))
    return paragraphs


def make_watchlist(size: int, seed: int = 11) -> list[EntitySpec]:
    """The real entities plus synthetic ones: pseudo-names, adjective + noun, «Name», Latin."""
    if size <= len(REAL):
        return REAL[:size]
    rng = random.Random(seed)
    specs = list(REAL)
    seen = {s.name for s in specs}
    adjs = [a.capitalize() for a in ADJS]

    def pseudo() -> str:
        return "".join(rng.choice(SYLL) for _ in range(rng.randint(2, 4))).capitalize()

    while len(specs) < size:
        r = rng.random()
        if r < 0.40:
            name = pseudo()
        elif r < 0.65:
            name = f"{rng.choice(adjs)} {pseudo().lower()}ский {rng.choice(GENERIC)}"
        elif r < 0.80:
            name = f"Компания «{pseudo()}»"
        else:
            name = "".join(rng.choice(LAT_SYLL) for _ in range(rng.randint(2, 3))).capitalize()
            name += " " + rng.choice(LAT_SUFFIX)
        if name not in seen:
            seen.add(name)
            specs.append(EntitySpec(name))
    return specs


def _cpu() -> float:
    """CPU seconds of this process (user + system): unaffected by other jobs competing for the cores."""
    return time.process_time()


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _profile(label: str, fn: object, top: int = 25) -> None:
    import cProfile
    import io
    import pstats

    prof = cProfile.Profile()
    prof.runcall(fn)  # type: ignore[arg-type]
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(top)
    print(f"---- profile: {label} ----\n{out.getvalue()}", file=sys.stderr)


def make_posts(paragraphs: list[str], seed: int = 5) -> list[str]:
    """Group paragraphs into posts of 1-5 paragraphs separated by one or two line breaks."""
    rng = random.Random(seed)
    posts: list[str] = []
    i = 0
    while i < len(paragraphs):
        k = rng.randint(1, 5)
        posts.append(rng.choice(["\n", "\n\n"]).join(paragraphs[i : i + k]))
        i += k
    return posts


def _time_passes(find: Callable[[str], list[object]], texts: list[str], runs: int) -> tuple[list[float], int]:
    """CPU seconds of each of ``runs`` passes of ``find`` over ``texts`` (GC off), and the match count."""
    times = []
    hits = 0
    for _ in range(runs):
        gc.collect()
        gc.disable()
        c0 = _cpu()
        hits = 0
        for t in texts:
            hits += len(find(t))
        times.append(_cpu() - c0)
        gc.enable()
    return times, hits


def run_one(size: int, n_tokens: int, runs: int, profile: bool = False) -> dict[str, float]:
    """Build a watchlist of ``size`` entities and time matching over the corpus (in this process).

    Everything is timed in CPU seconds of this process, so a machine loaded by other jobs slows the
    wall clock but not the figures; the wall-clock build time is reported alongside. The build runs
    first in a fresh process, so it includes loading pymorphy3 (what a cold start without a cache costs).
    """
    specs = make_watchlist(size)
    gc.collect()
    c0, w0 = _cpu(), time.perf_counter()
    wl = Watchlist.compile(specs)
    build_cpu, build_wall = _cpu() - c0, time.perf_counter() - w0
    patterns = wl.pattern_count
    corpus = make_corpus(n_tokens)
    tokens = sum(len(TOKEN.findall(p)) for p in corpus)
    find = wl.find
    for p in corpus[:2000]:  # warm-up: first-call costs (caches, lazy imports) are not throughput
        find(p)
    times, hits = _time_passes(find, corpus, runs)
    best, med = min(times), statistics.median(times)
    # Peak RSS of build + corpus + matching (what a service compiling its own watchlist holds), read
    # before the posts copy of the corpus is made; the cache round trip below pickles the automaton
    # and would add a transient copy.
    rss_mb = _peak_rss_mb()
    # The same text as Telegram posts: 1-5 paragraphs joined by line breaks. Line breaks (and emoji
    # with a variation selector next to them) send a post through the full normalisation.
    posts = make_posts(corpus)
    post_times, post_hits = _time_passes(find, posts, max(3, runs // 2))
    n_posts = len(posts)
    del posts
    if profile:
        _profile(f"matching, N={size}", lambda: [wl.find(p) for p in corpus])
        _profile(f"build, N={size} (pymorphy3 already loaded)", lambda: Watchlist.compile(specs))
    wl = find = None  # the cached builds below should not share memory with this one
    cached = []
    with tempfile.TemporaryDirectory() as tmp:
        Watchlist.compile(specs, cache_dir=Path(tmp))
        for _ in range(3):
            gc.collect()
            c0 = _cpu()
            Watchlist.compile(specs, cache_dir=Path(tmp))
            cached.append(_cpu() - c0)
    return {
        "entities": size, "patterns": patterns, "tokens": tokens, "paragraphs": len(corpus), "runs": runs,
        "tok_s": tokens / best, "par_s": len(corpus) / best, "tok_s_med": tokens / med,
        "par_s_med": len(corpus) / med, "build_s": build_cpu, "build_wall_s": build_wall,
        "cached_build_s": min(cached), "rss_mb": rss_mb, "hits": hits, "posts": n_posts,
        "post_tok_s": tokens / min(post_times), "post_tok_s_med": tokens / statistics.median(post_times),
        "posts_s": n_posts / min(post_times), "post_hits": post_hits,
    }  # fmt: skip


def main() -> None:
    """Run every size in a subprocess and print one line each plus the verdict on the targets."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=5, help="timed passes over the corpus (best and median shown)")
    ap.add_argument("--sizes", default="10,1000,10000")
    ap.add_argument("--profile", action="store_true", help="also print cProfile tables (matching and build)")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one is not None:
        print(json.dumps(run_one(args.one, args.tokens, args.runs, args.profile)))
        return
    print(f"CPU time of one process (time.process_time), best / median of {args.runs} passes; "
          f"GC off while timing", flush=True)  # fmt: skip
    results = []
    for size in (int(s) for s in args.sizes.split(",")):
        cmd = [sys.executable, __file__, "--one", str(size), "--tokens", str(args.tokens), "--runs", str(args.runs)]
        if args.profile:
            cmd.append("--profile")
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True)
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        results.append(r)
        print(
            f"N={r['entities']:>6,} entities ({r['patterns']:>7,} patterns): "
            f"{r['tok_s']:>11,.0f} tokens/s (median {r['tok_s_med']:>11,.0f}) "
            f"{r['par_s']:>9,.0f} paragraphs/s (median {r['par_s_med']:>9,.0f}) | "
            f"build {r['build_s']:.2f} s CPU ({r['build_wall_s']:.2f} s wall), cached {r['cached_build_s']:.2f} s | "
            f"peak RSS {r['rss_mb']:.0f} MB | {r['tokens']:,} tokens, {r['paragraphs']:,} paragraphs, "
            f"{r['hits']:,} matches",
            flush=True,
        )
        if "posts_s" in r:
            print(
                f"{'':>38}as posts: {r['post_tok_s']:>11,.0f} tokens/s (median {r['post_tok_s_med']:>11,.0f}) "
                f"{r['posts_s']:>9,.0f} posts/s | {r['posts']:,} posts of 1-5 paragraphs with line breaks, "
                f"{r['post_hits']:,} matches",
                flush=True,
            )
    by = {r["entities"]: r for r in results}
    if 10 in by and 10000 in by:
        big, small = by[10000], by[10]
        ok = (
            big["tok_s"] >= 1.5e6 and big["tok_s"] >= small["tok_s"] / 2
            and big["build_s"] <= 10 and big["rss_mb"] <= 150
        )  # fmt: skip
        print(
            f"10k/10 throughput ratio: {big['tok_s'] / small['tok_s']:.2f} (target ≥ 0.5); "
            f"10k: {big['tok_s'] / 1e6:.2f} M tokens/s (target ≥ 1.5), build {big['build_s']:.1f} s "
            f"(target ≤ 10), RSS {big['rss_mb']:.0f} MB (target ≤ 150): {'all met' if ok else 'NOT MET'}"
        )


if __name__ == "__main__":
    main()
