"""Kazakh and English forms of watched names, and ``[matching] languages`` (issue 14)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from test_matching import load_corpus

from monitor.matching import EntitySpec, Watchlist, WatchlistError
from monitor.matching.kazakh import K, N, R, V, ending_class, endings

HERE = Path(__file__).parent


def _found(wl: Watchlist, text: str) -> list[tuple[str, str]]:
    return [(m.entity, m.surface) for m in wl.find(text)]


def test_kazakh_corpus_precision_and_recall() -> None:
    """112 Kazakh posts labelled by hand before the matcher ran on them (overlap scoring, as factru-eval)."""
    data = tomllib.loads((HERE / "matching_corpus_kk.toml").read_text(encoding="utf-8"))
    wl = Watchlist.compile(EntitySpec(e["name"], tuple(e.get("aliases", ()))) for e in data["entities"])
    items = load_corpus(HERE / "matching_corpus_kk.txt")
    assert len(items) >= 100
    tp = fp = found = total = 0
    problems = []
    for text, expected in items:
        total += len(expected)
        hit: set[tuple[str, int, int]] = set()
        for m in wl.find(text):
            assert text[m.start : m.end] == m.surface
            over = {x for x in expected if x[0] == m.entity and x[1] < m.end and m.start < x[2]}
            if over:
                tp += 1
                hit |= over
            else:
                fp += 1
                problems.append(f"FP {m.entity} {m.surface!r} in {text!r}")
        found += len(hit)
        problems += [f"FN {x[0]} {text[x[1]:x[2]]!r} in {text!r}" for x in expected - hit]
    precision, recall = tp / max(1, tp + fp), found / max(1, total)
    print(f"\nmatching Kazakh corpus: {len(items)} texts, {total} mentions: precision={precision:.3f} "
          f"recall={recall:.3f} (tp={tp} fp={fp} found={found})")
    assert precision >= 0.98 and recall >= 0.98, problems


@pytest.mark.parametrize(
    ("alias", "text", "surface"),
    [
        ("Тоқаев", "Тоқаевтың жарлығы", "Тоқаевтың"),  # genitive after a voiceless sound
        ("Тоқаев", "Тоқаевқа хат жолданды", "Тоқаевқа"),  # dative
        ("Тоқаев", "Тоқаевпен кездесу", "Тоқаевпен"),  # instrumental
        ("Тоқаев", "Тоқаевты қолдады", "Тоқаевты"),  # accusative
        ("Өскемен", "Өскеменде жаңбыр", "Өскеменде"),  # locative after a nasal
        ("Өскемен", "Өскеменнен шықты", "Өскеменнен"),  # ablative after a nasal
        ("Өскемен", "Өскемендегі зауыт", "Өскемендегі"),  # locative + attributive -гі
        ("Астана", "Астананың әкімі", "Астананың"),  # after a vowel
        ("Астана", "Астанасының жоспары", "Астанасының"),  # possessive + genitive
        ("Ресей", "Ресейдің министрі", "Ресейдің"),  # after й
        ("Алматы", "Алматылардың", "Алматылардың"),  # plural + genitive
        ("Қазақстан", "Қазақстанымызда", "Қазақстанымызда"),  # 1st person plural possessive + locative
        ("Касым-Жомарт Токаев", "Қасым-Жомарт Тоқаевтың Жолдауы", "Қасым-Жомарт Тоқаевтың"),  # multiword
    ],
)
def test_kazakh_endings(alias: str, text: str, surface: str) -> None:
    assert _found(Watchlist.compile([EntitySpec(alias)]), text) == [(alias, surface)]


def test_kazakh_consonants_fold_both_ways_and_vowels_do_not() -> None:
    wl = Watchlist.compile([EntitySpec("Токаев"), EntitySpec("Ақорда"), EntitySpec("Өскемен")])
    assert _found(wl, "Тоқаевтың сөзі, Акорда") == [("Токаев", "Тоқаевтың"), ("Ақорда", "Акорда")]
    assert _found(wl, "Оскемен") == []  # a Kazakh vowel written with a Russian one is another spelling


def test_kazakh_endings_need_their_kazakh_letters_and_make_no_russian_words() -> None:
    wl = Watchlist.compile([EntitySpec("Белов"), EntitySpec("Мир")])
    assert _found(wl, "деревня Беловка") == []  # a village, not the dative «Беловқа»
    assert _found(wl, "Беловқа хат") == [("Белов", "Беловқа")]
    assert _found(wl, "Мирны были его намерения") == []  # «мирны» is Russian; «-ны» is not taken after Мир
    assert _found(wl, "Қазақстандық спортшылар, алматылық жастар") == []  # adjectives, demonyms


def test_ending_classes() -> None:
    assert ending_class("астана") == V and ending_class("ресей") == R and ending_class("өскемен") == N
    assert ending_class("тоқаев") == K and ending_class("кремль") == 2  # л (the soft sign is skipped)
    assert {"тың", "қа", "пен", "ты", "та", "тан", "тағы"} <= endings(K)
    assert "ның" in endings(V) and "ның" not in endings(K)


def test_english_possessives() -> None:
    wl = Watchlist.compile([EntitySpec("Токаев", ("Tokayev",)), EntitySpec("Rosatom")])
    assert _found(wl, "Tokayev's decree and Rosatom’s plant") == [("Токаев", "Tokayev's"), ("Rosatom", "Rosatom’s")]
    assert _found(wl, "Tokaev's visit") == [("Токаев", "Tokaev's")]  # a romanisation variant too


def test_languages() -> None:
    specs = [EntitySpec("Токаев", ("Tokayev",))]
    only_ru = Watchlist.compile(specs, languages=["ru"])
    assert _found(only_ru, "Токаевым, Тоқаевтың, Tokaev") == [("Токаев", "Токаевым")]
    assert _found(only_ru, "Tokayev's") == [("Токаев", "Tokayev")]  # the word, without the 's
    only_kk = Watchlist.compile(specs, languages=["kk"])
    assert _found(only_kk, "Токаеву, Тоқаевтың") == [("Токаев", "Тоқаевтың")]
    explained = Watchlist.compile(specs).explain_forms("Токаев")
    assert set(explained["Токаев"]) == {"ru", "kk"} and "токаевтың" in explained["Токаев"]["kk"]
    assert "tokayev's" in explained["Tokayev"]["en"] and "tokaev" in explained["Tokayev"]["en"]
    assert "kk" not in only_ru.explain_forms("Токаев")["Токаев"]
    with pytest.raises(WatchlistError, match="unknown 'de'"):
        Watchlist.compile(specs, languages=["ru", "de"])


def test_cache_is_keyed_by_languages(tmp_path: Path) -> None:
    specs = [EntitySpec("Тоқаев")]
    Watchlist.compile(specs, cache_dir=tmp_path)
    ru = Watchlist.compile(specs, cache_dir=tmp_path, languages=("ru",))
    assert _found(ru, "Тоқаевтың") == []
    assert _found(Watchlist.compile(specs, cache_dir=tmp_path), "Тоқаевтың") == [("Тоқаев", "Тоқаевтың")]
