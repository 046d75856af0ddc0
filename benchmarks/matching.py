"""Matcher throughput, build time and memory for watchlists of 10, 1,000 and 10,000 entities.

    uv run python benchmarks/matching.py [--tokens 1000000] [--runs 3] [--sizes 10,1000,10000]

The corpus is generated here (no downloads): Russian news-like paragraphs built from pymorphy3's
inflected forms of a few hundred common words, with numbers, Latin words, quotes, hashtags, emoji and
mentions of real watchlist names sprinkled in. Each watchlist size runs in its own subprocess so that
its build time and peak RSS are its own. Tokens are counted as ``[^\\W_]+(?:[-'’][^\\W_]+)*``.
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


def run_one(size: int, n_tokens: int, runs: int) -> dict[str, float]:
    """Build a watchlist of ``size`` entities and time matching over the corpus (in this process)."""
    corpus = make_corpus(n_tokens)
    tokens = sum(len(TOKEN.findall(p)) for p in corpus)
    specs = make_watchlist(size)
    t0 = time.perf_counter()
    wl = Watchlist.compile(specs)
    build = time.perf_counter() - t0
    patterns = wl.pattern_count
    times = []
    hits = 0
    for _ in range(runs):
        gc.collect()
        gc.disable()
        t0 = time.perf_counter()
        hits = 0
        for p in corpus:
            hits += len(wl.find(p))
        times.append(time.perf_counter() - t0)
        gc.enable()
    med = statistics.median(times)
    # Peak RSS of build + matching (what the service holds); the cache round trip below pickles the
    # automaton and would add a transient copy.
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    del wl
    with tempfile.TemporaryDirectory() as tmp:
        Watchlist.compile(specs, cache_dir=Path(tmp))
        t0 = time.perf_counter()
        Watchlist.compile(specs, cache_dir=Path(tmp))
        cached = time.perf_counter() - t0
    return {
        "entities": size, "patterns": patterns, "tokens": tokens, "paragraphs": len(corpus),
        "tok_s": tokens / med, "par_s": len(corpus) / med, "build_s": build, "cached_build_s": cached,
        "rss_mb": rss_mb, "hits": hits,
    }  # fmt: skip


def main() -> None:
    """Run every size in a subprocess and print one line each plus the verdict on the targets."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--sizes", default="10,1000,10000")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one is not None:
        print(json.dumps(run_one(args.one, args.tokens, args.runs)))
        return
    results = []
    for size in (int(s) for s in args.sizes.split(",")):
        proc = subprocess.run(
            [sys.executable, __file__, "--one", str(size), "--tokens", str(args.tokens), "--runs", str(args.runs)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        results.append(r)
        print(
            f"N={r['entities']:>6,} entities ({r['patterns']:>7,} patterns): "
            f"{r['tok_s']:>12,.0f} tokens/s {r['par_s']:>10,.0f} paragraphs/s | "
            f"build {r['build_s']:.2f} s (cached {r['cached_build_s']:.2f} s) | peak RSS {r['rss_mb']:.0f} MB | "
            f"{r['tokens']:,} tokens, {r['paragraphs']:,} paragraphs, {r['hits']:,} matches",
            flush=True,
        )
    by = {r["entities"]: r for r in results}
    if 10 in by and 10000 in by:
        big, small = by[10000], by[10]
        print(f"10k/10 throughput ratio: {big['tok_s'] / small['tok_s']:.2f} (target ≥ 0.5); "
              f"10k: {big['tok_s'] / 1e6:.2f} M tokens/s (target ≥ 1.5), build {big['build_s']:.1f} s "
              f"(target ≤ 10), RSS {big['rss_mb']:.0f} MB (target ≤ 150)")


if __name__ == "__main__":
    main()
