"""Alias → every inflected surface form, computed once when the watchlist is compiled.

Lemmatising each token of every post is slow and loses names pymorphy3 misreads («Токаев» is parsed
as a form of «токай»). Instead each alias is expanded here into all the strings it can appear as;
the matcher then only needs an exact multi-pattern search. How a word is expanded:

* a dictionary lemma (Росатом is not, Кремль and Пекин are): pymorphy3's lexeme;
* an unknown word or a name pymorphy3 misreads: suffix rules by ending (surnames in -ов/-ев/-ин,
  consonant-final nouns, -а/-я/-ия/-ь/-й words); rule-made forms that are ordinary dictionary words
  are dropped (they would fire on ordinary text);
* a multiword name: the agreeing group (adjectives + head noun) is inflected case by case, genitive
  complements, quoted parts, Latin words and abbreviations stay fixed; person names inflect every part;
* hyphenated words get hyphen/space/joined variants; multiword names also get a variant with an
  opening quote before any word (НАК «Казатомпром»);
* an all-caps Cyrillic abbreviation gets lower-case case endings (МИДа, МИДом) and is case-sensitive.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from monitor.matching.kazakh import KK_LETTERS, ending_class, endings
from monitor.matching.normalize import normalize_plain

if TYPE_CHECKING:  # pragma: no cover
    from pymorphy3 import MorphAnalyzer
    from pymorphy3.analyzer import Parse

__all__ = [
    "LANGUAGES", "AliasForms", "alias_forms", "is_place", "kazakh_forms", "morph", "phrase_forms", "split_alias",
    "translit_variants",
]  # fmt: skip

LANGUAGES = ("ru", "kk", "en")  # what ``[matching] languages`` may list; all three by default

CASES = ("nomn", "gent", "datv", "accs", "ablt", "loct")
_CASE_MAP = {"gen1": "gent", "gen2": "gent", "acc2": "accs", "loc1": "loct", "loc2": "loct"}
_PROPER = frozenset({"Name", "Surn", "Patr", "Geox", "Orgn", "Trad", "Abbr", "Init"})
Slot = tuple[str, str]  # (case, number)
SlotForms = dict[Slot, set[str]]

# Quotes that may wrap a name or part of it; stripped from aliases, and the text side maps the
# opening ones to «.
QUOTES = "«»\"“”„‟'‹›"
_QUOTE_RE = re.compile(f"[{re.escape(QUOTES)}]")
_CYR_WORD = re.compile(r"^[\u0400-\u04ff]+(?:-[\u0400-\u04ff]+)*$")
_LATIN_WORD = re.compile(r"^[A-Za-z0-9][A-Za-z0-9&.'\-]*$")
_SIBILANT = frozenset("жшчщц")
_VELAR_SIB = frozenset("гкхжшчщ")
_VOWELS = frozenset("аеиоуыэюяё")
_MASC_SURNAME = re.compile(r"(ов|ев|ин|ын)$")
_FEM_SURNAME = re.compile(r"(ова|ева|ина|ына)$")
_FAMILY = re.compile(r"(ов|ев|ин|ын)ы$")
_ADJ_FEM = re.compile(r"[^аеиоуыэюяё](ая|яя)$")
_INDECLINABLE = re.compile(r"[^аеиоуыэюяё](ых|их)$")
_PERSON = frozenset({"Name", "Surn", "Patr"})

# Lower-case endings an all-caps Cyrillic abbreviation takes in running text (МИДа, МИДу, МИДом, МИДе,
# ВУЗы, ВУЗов). Only for consonant-final ones; the check still requires the capitals of the abbreviation.
_ABBR_ENDINGS = ("а", "у", "ом", "е", "ы", "ов", "ам", "ами", "ах")

_MAX_HYPHEN_VARIANTS = 3  # hyphens per alias that get space/joined variants (3**n growth)
_MAX_TRANSLIT = 8


@lru_cache(maxsize=1)
def morph() -> MorphAnalyzer:
    """The shared pymorphy3 analyser (loaded lazily: only compiling a watchlist needs it)."""
    import logging

    import pymorphy3

    # pymorphy3 logs every dictionary load at INFO; that is noise on every CLI run.
    logging.getLogger("pymorphy3").setLevel(logging.WARNING)
    return pymorphy3.MorphAnalyzer()


# Word-level analyses are cached while a watchlist compiles: the same adjectives, generic nouns and
# generated forms recur in thousands of names, and pymorphy3's parse and lexeme cost tens of
# microseconds each. ``clear_caches()`` drops them once the watchlist is built. The caches holding
# paradigms are small LRUs: most names are seen once, and keeping every paradigm of 10,000 names would
# add tens of MB to the peak memory of a compile, while the words that recur stay in a small cache.
_CACHE_SIZE = 1 << 16  # booleans and single parses
_SLOTS_CACHE = 1024  # paradigms (dicts of sets of forms)


@lru_cache(maxsize=_SLOTS_CACHE)
def _parse(word: str) -> tuple[Parse, ...]:
    return tuple(morph().parse(word))


@lru_cache(maxsize=_CACHE_SIZE)
def _known(word: str) -> bool:
    return morph().word_is_known(word)


def clear_caches() -> None:
    """Forget the word analyses cached while compiling (they are not needed to match)."""
    for fn in (_parse, _known, _is_ordinary, _lemma_parses, _person_parse, _appositive,
               _noun_slots, _word_slots, _adj_parse, _noun_parse,
               _adj_slots, _is_abbr, _fixed):  # fmt: skip
        fn.cache_clear()
    _TAG_INFO.clear()


@dataclass(slots=True)
class AliasForms:
    """The compiled surface forms of one alias and the case rule that applies to its hits.

    ``forms``: lower-cased, normalised strings to search for. ``cap_forms``: those that are also
    ordinary words, so a hit must start with a capital letter. ``exact``: when not None, a hit's
    normalised text must be one of these strings exactly (abbreviations, ``case_sensitive = true``).
    ``upper_tokens``: abbreviations inside a multiword alias that must appear in capitals.
    ``cap_all``: every hit must start with a capital (multiword names made only of ordinary words).
    ``common``: the alias itself is a short ordinary noun (Мир, Рост): a capital is evidence only in the
    middle of a sentence, or after an opening quote or «#»; not at a sentence start, not in capitals.
    ``adj_forms``: forms (hyphens as spaces) that are also the case forms of the name's own derived
    adjective (Заречинском: the city's instrumental and the adjective's prepositional, «в Заречинском
    районе»), each with the agreement (case, gender) the adjective would have; a hit followed by a word
    agreeing with it is the adjective, not the name.
    ``kk_stems``: lower-case nominatives a Kazakh ending may follow (Тоқаев → Тоқаевтың); the endings of
    class ``kk_class`` (kazakh.py) apply, less ``kk_exclude`` (those that would make a Russian word).
    ``person``: (first name, surname) in lower case when the alias is a person's name; ``first_forms``
    and ``surname_forms`` are their inflected forms (the matcher checks initials and patronymics with
    them), ``gender`` the person's ("masc", "femn" or None). ``latin``: a Latin-script alias (English
    possessives: Tokayev's). ``noun``: the alias is an ordinary noun
    with no reading as a name (Конгресс, Интернет). ``declining``: positions of the words that decline
    (Астана in «Эйр Астана»; not Америки in «Голос Америки»).
    """

    alias: str
    forms: set[str] = field(default_factory=set)
    cap_forms: set[str] = field(default_factory=set)
    exact: set[str] | None = None
    upper_tokens: tuple[str, ...] = ()
    cap_all: bool = False
    translit: set[str] = field(default_factory=set)
    common: bool = False
    adj_forms: dict[str, frozenset[tuple[str, str]]] = field(default_factory=dict)
    kk_stems: set[str] = field(default_factory=set)
    kk_class: int | None = None
    kk_exclude: frozenset[str] = frozenset()
    person: tuple[str, str] | None = None
    gender: str | None = None
    first_forms: frozenset[str] = frozenset()
    surname_forms: frozenset[str] = frozenset()
    latin: bool = False
    declining: frozenset[int] = frozenset({0})
    noun: bool = False


def split_alias(alias: str) -> tuple[list[str], list[bool]]:
    """Split an alias into words, noting which were inside quotes (quoted names never inflect)."""
    words: list[str] = []
    quoted: list[bool] = []
    inside = False
    for raw in normalize_plain(alias).split():
        opens = raw[0] in "«\"“„'‹"
        if opens:
            inside = True
        word = _QUOTE_RE.sub("", raw).strip()
        if word:
            words.append(word)
            quoted.append(inside)
        if raw[-1] in "»\"”'›" and (len(raw) > 1 or not opens):
            inside = False
    return words, quoted


@lru_cache(maxsize=_CACHE_SIZE)
def _is_abbr(word: str) -> bool:
    letters = [c for c in word if c.isalpha()]
    return len(letters) >= 2 and all(c.isupper() for c in letters)


def _is_cyr(word: str) -> bool:
    return bool(_CYR_WORD.match(word.lower()))


@lru_cache(maxsize=_CACHE_SIZE)
def _is_ordinary(word: str) -> bool:
    """True if ``word`` (lower case) is a dictionary word with a reading that is not a proper noun."""
    if not _known(word):
        return False
    return any(not (_PROPER & p.tag.grammemes) for p in _parse(word))


def _case(tag_case: str | None) -> str | None:
    if tag_case is None:
        return None
    c = _CASE_MAP.get(tag_case, tag_case)
    return c if c in CASES else None


_TagInfo = tuple[str | None, str | None, str, str | None, str | None, str | None, bool]
_TAG_INFO: dict[str, _TagInfo] = {}


def _tag_info(tag: object) -> _TagInfo:
    """(POS, case, number, gender, tense, voice, superlative/comparative) of a tag, as plain strings.

    pymorphy3's tag attributes are descriptors returning checked string subclasses, costly in the
    lexeme loops below; there are only a few hundred distinct tags, so each is read once.
    """
    key = str(tag)
    info = _TAG_INFO.get(key)
    if info is None:

        def plain(g: object) -> str | None:
            return None if g is None else str(g)

        t: Any = tag
        info = (
            plain(t.POS), _case(plain(t.case)), plain(t.number) or "sing", plain(t.gender), plain(t.tense),
            plain(t.voice), "Supr" in t.grammemes or "Cmp2" in t.grammemes,
        )  # fmt: skip
        _TAG_INFO[key] = info
    return info


def _lexeme_slots(p: Parse, gender: str | None = None) -> SlotForms:
    """Forms of a parse's lexeme keyed by (case, number); adjectives filtered to ``gender``."""
    out: SlotForms = {}
    pos, _c, _n, _g, tense, voice, own_degree = _tag_info(p.tag)
    adjective = pos in ("ADJF", "PRTF")
    # A superlative alias (Высшая аудиторская палата: «высший» is filed under «высокий») keeps its
    # own forms: same degree, same stem.
    stem = p.word.replace("ё", "е")[:-2] if own_degree else ""
    for f in p.lexeme:
        f_pos, case, number, f_gender, f_tense, f_voice, degree = _tag_info(f.tag)
        if f_pos != pos or degree != own_degree or (stem and not f.word.replace("ё", "е").startswith(stem)):
            continue
        # A participle's lexeme holds every participle of the verb; keep the alias's own one.
        if pos == "PRTF" and (f_tense != tense or f_voice != voice):
            continue
        if case is None:
            continue
        if adjective and number == "sing" and gender and f_gender and f_gender != gender:
            continue
        out.setdefault((case, number), set()).add(f.word.replace("ё", "е"))
    return out


@lru_cache(maxsize=_CACHE_SIZE)
def _person_parse(word: str) -> Parse | None:
    """A dictionary reading of ``word`` as the nominative of a first name, surname or patronymic."""
    if not _known(word):
        return None
    for p in _parse(word):
        if _PERSON & p.tag.grammemes and p.tag.case == "nomn" and p.tag.number == "sing":
            return p
    return None


def _person_slots(p: Parse) -> SlotForms:
    """The paradigm of a person-name reading: singular forms of its gender, and the plural."""
    out: SlotForms = {}
    gender = str(p.tag.gender) if p.tag.gender else None
    for f in p.lexeme:
        _pos, case, number, f_gender, _t, _v, _d = _tag_info(f.tag)
        if case is None or (number == "sing" and gender not in (None, "ms-f") and f_gender not in (gender, "ms-f")):
            continue
        form = f.word.replace("ё", "е")
        out.setdefault((case, number), set()).add(form)
        if case == "ablt" and number == "sing" and form.endswith("ой"):
            out[(case, number)].add(form[:-1] + "ю")  # the older instrumental: Беловою
    return out


@lru_cache(maxsize=_SLOTS_CACHE)
def _lemma_parses(word: str) -> tuple[Parse, ...]:
    """Dictionary readings whose lemma is ``word`` itself (so the lexeme is the alias's own)."""
    if not _known(word):
        return ()
    return tuple(p for p in _parse(word) if p.normal_form.replace("ё", "е") == word and p.tag.POS == "NOUN")


def _rule_slots(word: str, *, surname: bool, gender: str | None = None) -> SlotForms:
    """Suffix-rule paradigm for an unknown noun or name (lower case).

    ``gender`` ("masc"/"femn") keeps only that gender's singular of a Russian-type surname (the
    surname of «Олжас Бектенов» has no «Бектеновой»); None keeps both.
    """
    out: SlotForms = {}

    def add(case: str, number: str, *forms: str) -> None:
        out.setdefault((case, number), set()).update(forms)

    def add_surname_plural(stem: str) -> None:
        # Russian-type surnames share one plural for both genders: Беловы, Беловых, Беловым, Беловыми.
        add("nomn", "plur", stem + "ы")
        add("gent", "plur", stem + "ых")
        add("datv", "plur", stem + "ым")
        add("accs", "plur", stem + "ых")
        add("ablt", "plur", stem + "ыми")
        add("loct", "plur", stem + "ых")

    last = word[-1]
    if surname and len(word) > 5 and _FAMILY.search(word):
        # A family written as a plural (Ямадаевы, when a user lists it): Ямадаевых, Ямадаевым, Ямадаевыми.
        add_surname_plural(word[:-1])
        return out
    if surname and len(word) > 4 and _FEM_SURNAME.search(word):
        # Feminine Russian-type surnames decline like adjectives: Белова, Беловой, Белову, Беловою.
        s = word[:-1]
        add("nomn", "sing", word)
        add("gent", "sing", s + "ой")
        add("datv", "sing", s + "ой")
        add("accs", "sing", s + "у")
        add("ablt", "sing", s + "ой", s + "ою")
        add("loct", "sing", s + "ой")
        add_surname_plural(s)
        if word.endswith(("ина", "ына")):
            # -ина is also a plain noun ending (Медина, Мединой, Медине): generate both.
            noun = _rule_slots(word, surname=False)
            return _merge(out, noun)
        return out
    if surname and len(word) > 4 and _ADJ_FEM.search(word):
        # Adjectival feminine surnames (Дворецкая, Жуковская): Дворецкой, Дворецкую, Дворецкою.
        stem = word[:-2]
        soft = word.endswith("яя")
        y = "и" if (soft or stem[-1] in _VELAR_SIB) else "ы"
        o = "е" if soft else "о"
        add("nomn", "sing", word)
        for c in ("gent", "datv", "loct"):
            add(c, "sing", stem + o + "й")
        add("accs", "sing", stem + ("юю" if soft else "ую"))
        add("ablt", "sing", stem + o + "й", stem + o + "ю")
        add("nomn", "plur", stem + y + "е")
        add("gent", "plur", stem + y + "х")
        add("datv", "plur", stem + y + "м")
        add("accs", "plur", stem + y + "х")
        add("ablt", "plur", stem + y + "ми")
        add("loct", "plur", stem + y + "х")
        return out
    if surname and len(word) > 4 and _INDECLINABLE.search(word):
        # Surnames in -ых/-их (Черных, Долгих) do not decline.
        for c in CASES:
            add(c, "sing", word)
        return out
    if surname and _MASC_SURNAME.search(word):
        # Russian-type surnames: masculine and feminine singular, common plural.
        if gender != "femn":
            add("nomn", "sing", word)
            add("gent", "sing", word + "а")
            add("datv", "sing", word + "у")
            add("accs", "sing", word + "а")
            add("ablt", "sing", word + "ым")
            add("loct", "sing", word + "е")
        if gender != "masc":
            add("nomn", "sing", word + "а")
            add("gent", "sing", word + "ой")
            add("datv", "sing", word + "ой")
            add("accs", "sing", word + "у")
            add("ablt", "sing", word + "ой")
            add("loct", "sing", word + "ой")
        add_surname_plural(word)
        if word.endswith(("ин", "ын")):
            # Foreign names in -ин decline as plain nouns (Цзиньпином, Мартином), Russian surnames
            # as possessives (Путиным): generate both.
            return _merge(out, _rule_slots(word, surname=False))
        return out
    if re.search(r"(ый|ий|ой)$", word) and len(word) > 4:
        stem = word[:-2]
        soft = word.endswith("ий") and word[-3] not in _VELAR_SIB
        y = "и" if (soft or word[-3] in _VELAR_SIB) else "ы"
        o = "е" if soft else "о"
        add("nomn", "sing", word, stem + "ая", stem + ("яя" if soft else "ая"))
        add("gent", "sing", stem + o + "го", stem + o + "й")
        add("datv", "sing", stem + o + "му", stem + o + "й")
        add("accs", "sing", word, stem + o + "го", stem + "ую", stem + "юю")
        add("ablt", "sing", stem + y + "м", stem + o + "й")
        add("loct", "sing", stem + o + "м", stem + o + "й")
        add("nomn", "plur", stem + y + "е")
        add("gent", "plur", stem + y + "х")
        add("datv", "plur", stem + y + "м")
        add("accs", "plur", stem + y + "х", stem + y + "е")
        add("ablt", "plur", stem + y + "ми")
        add("loct", "plur", stem + y + "х")
        return out
    if word.endswith("ия"):
        s = word[:-1]
        add("nomn", "sing", word)
        add("gent", "sing", s + "и")
        add("datv", "sing", s + "и")
        add("accs", "sing", s + "ю")
        add("ablt", "sing", s + "ей", s + "ею")
        add("loct", "sing", s + "и")
        return out
    if last in "ая" and len(word) > 2:
        s = word[:-1]
        hard = last == "а"
        i = "и" if (not hard or s[-1] in _VELAR_SIB) else "ы"
        add("nomn", "sing", word)
        add("gent", "sing", s + i)
        add("datv", "sing", s + "е")
        add("accs", "sing", s + ("у" if hard else "ю"))
        add("ablt", "sing", s + ("ой" if hard else "ей"), s + ("ою" if hard else "ею"), s + "ей")
        add("loct", "sing", s + "е")
        add("nomn", "plur", s + i)
        add("gent", "plur", s if hard else s + "ь")
        add("datv", "plur", s + ("ам" if hard else "ям"))
        add("accs", "plur", s + i)
        add("ablt", "plur", s + ("ами" if hard else "ями"))
        add("loct", "plur", s + ("ах" if hard else "ях"))
        return out
    if last in "йь" and len(word) > 2:
        s = word[:-1]
        add("nomn", "sing", word)
        add("gent", "sing", s + "я", s + "и")
        add("datv", "sing", s + "ю", s + "и")
        add("accs", "sing", word, s + "я")
        add("ablt", "sing", s + "ем", s + "ём".replace("ё", "е"), s + "ью")
        add("loct", "sing", s + "е", s + "и")
        add("nomn", "plur", s + "и")
        add("gent", "plur", s + "ей", s + "ев")
        add("datv", "plur", s + "ям")
        add("accs", "plur", s + "и")
        add("ablt", "plur", s + "ями")
        add("loct", "plur", s + "ях")
        return out
    if last in _VOWELS or not last.isalpha():
        # Vowel-final foreign names (Алматы, Актау, Токио) do not decline.
        for c in CASES:
            add(c, "sing", word)
        return out
    # Consonant-final masculine noun (Росатом, Цзиньпин, Казатомпром).
    sib = last in _SIBILANT
    add("nomn", "sing", word)
    add("gent", "sing", word + "а")
    add("datv", "sing", word + "у")
    add("accs", "sing", word, word + "а")
    add("ablt", "sing", word + "ом", *((word + "ем",) if sib else ()))
    add("loct", "sing", word + "е")
    add("nomn", "plur", word + ("и" if last in _VELAR_SIB else "ы"))
    add("gent", "plur", word + ("ей" if last in "жшчщ" else "ев" if last == "ц" else "ов"))
    add("datv", "plur", word + "ам")
    add("accs", "plur", word + ("и" if last in _VELAR_SIB else "ы"))
    add("ablt", "plur", word + "ами")
    add("loct", "plur", word + "ах")
    return out


@lru_cache(maxsize=_SLOTS_CACHE)
def _fixed(word: str) -> SlotForms:
    return {(c, n): {word} for c in CASES for n in ("sing", "plur")}


def _merge(a: SlotForms, b: SlotForms) -> SlotForms:
    out = {k: set(v) for k, v in a.items()}
    for k, v in b.items():
        out.setdefault(k, set()).update(v)
    return out


@lru_cache(maxsize=_SLOTS_CACHE)
def _noun_slots(word: str, *, capitalised: bool) -> tuple[SlotForms, set[str]]:
    """Slots for one (lower-case, unhyphenated) noun or name; also returns its own lexeme's forms.

    Cached: callers must not modify the result (this holds for ``_word_slots`` and ``_adj_slots`` too).
    """
    lemmas = _lemma_parses(word)
    person = _person_parse(word) if capitalised else None
    if person is not None and not any(_PERSON & p.tag.grammemes for p in lemmas):
        # A capitalised name whose dictionary lemma is another word (Белова ~ Белов, Путина ~ Путин,
        # besides «путина» the fishing season): the name's own paradigm, its gender only.
        slots: SlotForms = _person_slots(person)
        return slots, set().union(*slots.values())
    if lemmas:
        slots = {}
        for p in lemmas:
            slots = _merge(slots, _lexeme_slots(p))
        own = set().union(*slots.values()) if slots else set()
        if (
            capitalised
            and _MASC_SURNAME.search(word)
            and not any({"Surn", "Geox", "Orgn"} & p.tag.grammemes for p in lemmas)
        ):
            # Spelled like a Russian surname but known only as something else (Карин: an
            # indeclinable female first name): the surname's forms too (Карина, Кариным).
            slots = _merge(slots, _rule_slots(word, surname=True))
        return slots, own
    plural = _plural_only(word)
    if plural is not None:
        # A name that is a plural (Ведомости, Известия, Штаты, Курилы): its plural paradigm
        # (Ведомостей, Штатами), not a singular made up by the rules.
        slots = {k: v for k, v in _lexeme_slots(plural).items() if k[1] == "plur"}
        if slots:
            return slots, set().union(*slots.values())
    rules = _rule_slots(word, surname=capitalised)
    # Rule-made forms that are ordinary words would fire on ordinary text (Кака → «какой»): drop them,
    # except the name's own derived adjective (Каменогорском), which a check at the hit tells apart.
    for key in list(rules):
        rules[key] = {
            f for f in rules[key] if f == word or not _is_ordinary(f) or _own_adjective_only(f, word)
        }
    return rules, set()


@lru_cache(maxsize=_CACHE_SIZE)
def _plural_only(word: str) -> Parse | None:
    """A dictionary reading of ``word`` as a nominative plural noun, when it has no singular reading."""
    if not _known(word):
        return None
    parses = _parse(word)
    plur = [p for p in parses if p.tag.POS == "NOUN" and p.tag.case == "nomn" and p.tag.number == "plur"]
    if not plur or any(p.tag.POS == "NOUN" and p.tag.number == "sing" and p.tag.case == "nomn" for p in parses):
        return None
    return plur[0]


@lru_cache(maxsize=_SLOTS_CACHE)
def _word_slots(word: str, *, capitalised: bool) -> tuple[SlotForms, set[str]]:
    """Slots for one word, hyphenated or not (lower case)."""
    if "-" not in word:
        return _noun_slots(word, capitalised=capitalised)
    # Hyphenated names usually decline only in the last part (Самрук-Казыны, Усть-Каменогорска);
    # some decline in both (Каменска-Уральского), so both are generated.
    head, _, tail = word.rpartition("-")
    tail_slots, _own = _noun_slots(tail, capitalised=capitalised)
    out: SlotForms = {k: {f"{head}-{f}" for f in v} for k, v in tail_slots.items()}
    lemmas = _lemma_parses(word)
    for p in lemmas:
        out = _merge(out, _lexeme_slots(p))
    own = set().union(*out.values()) if lemmas else set()
    if "-" not in head and _lemma_parses(head):
        # Only a head that is itself a declinable dictionary noun (Каменск-Уральский, not Усть-).
        head_slots, _ = _noun_slots(head, capitalised=capitalised)
        for key, forms in tail_slots.items():
            for h in head_slots.get(key, ()):
                out.setdefault(key, set()).update(f"{h}-{t}" for t in forms)
    return out, own


@lru_cache(maxsize=_CACHE_SIZE)
def _adj_parse(word: str) -> Parse | None:
    for p in _parse(word):
        if p.tag.POS in ("ADJF", "PRTF") and p.tag.case == "nomn":
            return p
    return None


@lru_cache(maxsize=_SLOTS_CACHE)
def _adj_slots(word: str, gender: str | None) -> SlotForms | None:
    """The lexeme slots of an adjective or participle agreeing with a head of ``gender`` (cached)."""
    ap = _adj_parse(word)
    return _lexeme_slots(ap, gender) if ap is not None else None


@lru_cache(maxsize=_CACHE_SIZE)
def _noun_parse(word: str) -> Parse | None:
    for p in _parse(word):
        if p.tag.POS == "NOUN" and p.tag.case == "nomn":
            return p
    return None


def _hyphen_variants(form: str, limit: int = _MAX_HYPHEN_VARIANTS) -> set[str]:
    """«титано-магниевый» → itself, «титано магниевый», «титаномагниевый» (per hyphen)."""
    if "-" not in form:
        return {form}
    parts = re.split(r"(-)", form)
    seps = [i for i, p in enumerate(parts) if p == "-"]
    if len(seps) > limit:
        return {form}
    out = set()
    for choice in itertools.product(("-", " ", ""), repeat=len(seps)):
        pieces = list(parts)
        for i, c in zip(seps, choice, strict=True):
            pieces[i] = c
        out.add("".join(pieces))
    return out


def _quote_variants(words: list[str], positions: tuple[int, ...]) -> set[str]:
    """Multiword forms with an opening « before the words at ``positions`` (НАК «Казатомпром»)."""
    out = {" ".join(words)}
    for k in positions:
        out.add(" ".join(words[:k]) + " «" + " ".join(words[k:]))
    return out


def _combine(per_token: list[SlotForms]) -> set[str]:
    keys: set[Slot] = set(per_token[0])
    for s in per_token[1:]:
        keys &= set(s)
    out: set[str] = set()
    for key in keys:
        for combo in itertools.product(*(sorted(s[key]) for s in per_token)):
            out.add(" ".join(combo))
    return out


def _is_name_like(words: list[str]) -> bool:
    """A person-style name: every Cyrillic word capitalised and a name, a surname, or unknown."""
    for w in words:
        if not _is_cyr(w) or not w[0].isupper() or _is_abbr(w):
            return False
        lw = w.lower()
        parses = _parse(lw)
        if any(p.tag.POS in ("ADJF", "PRTF") for p in parses[:1]):
            return False
        # A common noun whose lemma is the word itself (Фонд, Банк) is no name; a word that is only
        # an oblique form of something else (Токаев ~ «токай») still can be.
        lemmas = [p for p in parses if p.normal_form.replace("ё", "е") == lw and p.tag.POS == "NOUN"]
        if (
            _known(lw)
            and lemmas
            and not any({"Name", "Surn", "Patr", "Fixd"} & p.tag.grammemes for p in parses)
        ):
            return False
    return True


@lru_cache(maxsize=_CACHE_SIZE)
def _appositive(word: str) -> bool:
    """Whether a capitalised word after a head noun can be a name in apposition (lower case).

    It can if it has a nominative reading as a name, surname or place, is unknown, or is spelled like
    a surname; a word that is only an oblique form (России, Казахстана) is a complement.
    """
    if not _known(word) or _MASC_SURNAME.search(word) or _FEM_SURNAME.search(word):
        return True  # (Токаев is known only as a form of «токай»)
    proper = _PROPER - {"Abbr", "Init"}
    return any(p.tag.case == "nomn" and proper & p.tag.grammemes for p in _parse(word))


def _is_common_noun(word: str) -> bool:
    """An ordinary noun in the nominative with no reading as a name (мир, рост; not путин, семей)."""
    if not _known(word):
        return False
    parses = _parse(word)
    if any(_PROPER & p.tag.grammemes for p in parses):
        return False
    return any(p.tag.POS == "NOUN" and p.tag.case == "nomn" for p in parses)


def _own_adjective_only(form: str, word: str) -> bool:
    """Whether every ordinary reading of ``form`` is an adjective derived from ``word`` (-ом/-ем only)."""
    if not form.endswith(_ADJ_ENDINGS):
        return False
    stem = word.rstrip("аеиоуыэюяйь")
    for p in _parse(form):
        if _PROPER & p.tag.grammemes:
            continue
        if p.tag.POS not in ("ADJF", "PRTF") or not p.normal_form.replace("ё", "е").startswith(stem):
            return False
    return True


# Ordinary nouns this short (мир, рост, союз, дом) are the frequent ones, so a capital at a sentence
# start or in an all-caps line says nothing about them; longer ones that name an institution (Кремль,
# Мажилис, Нацбанк) are mostly the name wherever they are capitalised.
_COMMON_MAX = 4

_ADJ_ENDINGS = ("ом", "ем")  # where a noun's instrumental meets its adjective's prepositional


def _adjective_forms(word: str, forms: set[str]) -> dict[str, frozenset[tuple[str, str]]]:
    """Forms of ``word`` that are also forms of an adjective derived from it, with that agreement.

    Only the -ом/-ем endings are parsed (Заречинском, Усть-Каменогорском, Омском): that is where a
    noun in -ск/-цк meets its adjective in -ский/-цкий; parsing every form would slow the compile.
    """
    stem = word.rstrip("аеиоуыэюяйь")
    # The adjective of a -ск/-цк name is the name + «ий» (Омск → омский), so its prepositional is the
    # name's instrumental; other names meet an adjective only where the dictionary says so (Рудный).
    productive = word.endswith(("ск", "цк"))
    out: dict[str, frozenset[tuple[str, str]]] = {}
    for f in forms:
        if not f.endswith(_ADJ_ENDINGS) or " " in f or not (productive or _known(f)):
            continue
        tags = set()
        last = f.rpartition("-")[2]
        for p in _parse(f) or _parse(last):
            if p.tag.POS not in ("ADJF", "PRTF") or p.tag.case is None:
                continue
            lemma = p.normal_form.replace("ё", "е")
            if lemma.startswith(stem) or lemma.startswith(stem.rpartition("-")[2]):
                tags.add((_case(str(p.tag.case)) or "", str(p.tag.gender or p.tag.number)))
        if tags:
            for v in _hyphen_variants(f):
                out[v.replace("-", " ")] = frozenset(tags)
    return out


def _multiword(words: list[str], quoted: list[bool]) -> tuple[set[str], bool, frozenset[int]]:
    """All forms of a multiword alias (lower case), whether it is made of ordinary words only, and the
    positions of the words that decline (the rest, genitive complements and quoted parts, stay fixed)."""
    low = [w.lower() for w in words]
    fixed = [q or not _is_cyr(w) or _is_abbr(w) for w, q in zip(words, quoted, strict=True)]
    per: list[SlotForms] = []
    name_like = _is_name_like([w for w, f in zip(words, fixed, strict=True) if not f]) and not all(fixed)
    extra: set[str] = set()
    if name_like:
        gender = _person_gender([w for w, f in zip(low, fixed, strict=True) if not f])
        last_free = max(i for i, f in enumerate(fixed) if not f)
        for i, (w, f) in enumerate(zip(low, fixed, strict=True)):
            if f:
                per.append(_fixed(w))
            elif i == last_free:
                per.append(_surname_slots(w, gender))
            else:
                per.append(_given_slots(w, gender))
        # A person's plural («Олжасы Бектеновы») is no mention of the person.
        per = [{k: v for k, v in slots.items() if k[1] == "sing"} for slots in per]
        # Only the last word declining is common too: a foreign first part (Эйр Астаны, Си Цзиньпина)
        # or a first name left in the nominative (Олжас Бектенова).
        last = max(i for i, f in enumerate(fixed) if not f)
        if last:
            extra = _combine([per[i] if i == last else _fixed(w) for i, w in enumerate(low)])
        if len(words) == 2 and not any(fixed):
            # Surname first, as in lists and official texts: «Ахметова Айгерим», «Бектенову Олжасу».
            extra |= _combine([per[1], per[0]])
    else:
        # Head = the first noun in the nominative; adjectives before it agree with it; everything
        # after it (genitive complements, appositions) keeps its form.
        # An unknown word before a dictionary noun is a fixed modifier (Халык банк → в Халык банке).
        head = None
        for i, (w, f) in enumerate(zip(low, fixed, strict=True)):
            if not f and i and w in ("и", "или") and _adj_parse(low[i - 1]) is not None:
                fixed[i] = True  # adjectives joined by a conjunction (продовольственная и сельскохозяйственная)
                continue
            if not f and _known(w) and _noun_parse(w) is not None and _adj_parse(w) is None:
                head = i
                break
            if not f and _known(w) and _adj_parse(w) is None:
                break  # a known non-noun, non-adjective word: stop looking
        if head is not None:
            for i in range(head):
                if not fixed[i] and not _known(low[i]) and _adj_parse(low[i]) is None:
                    fixed[i] = True
        else:
            for i, (w, f) in enumerate(zip(low, fixed, strict=True)):
                if f:
                    continue
                if _adj_parse(w) is None:
                    head = i  # no dictionary noun: the first non-adjective word is the head
                    break
        # Names in apposition right after the head agree with it (губернатора Волкова, городе
        # Шымкенте) or stay in the nominative (в городе Шымкент); a genitive complement (банк
        # Казахстана, Банк России) has no nominative reading and stays fixed.
        appos: set[int] = set()
        if head is not None:
            for i in range(head + 1, len(low)):
                if fixed[i] or not words[i][0].isupper() or not _appositive(low[i]):
                    break
                appos.add(i)
        if appos and head is not None and words[head][0].isupper():
            # Capitalised names in a row (Эйр Астана): only the last declines (Эйр Астаны).
            last = max(appos)
            extra = _combine(
                [_word_slots(w, capitalised=True)[0] if i == last else _fixed(w) for i, w in enumerate(low)]
            )
        for i, (w, f) in enumerate(zip(low, fixed, strict=True)):
            if i in appos:
                per.append(_merge(_word_slots(w, capitalised=True)[0], _fixed(w)))
            elif f or head is None or i > head:
                per.append(_fixed(w))
            elif i == head:
                per.append(_word_slots(w, capitalised=words[i][0].isupper())[0])
            else:
                per.append({})  # filled below once the head's gender is known
        if head is not None:
            hp = _noun_parse(low[head])
            gender = hp.tag.gender if hp is not None else "masc"
            for i in range(head):
                if fixed[i]:
                    continue
                adj = _adj_slots(low[i], gender)
                per[i] = adj if adj is not None else _fixed(low[i])
                if adj is not None and "-" in low[i] and not adj.get(("gent", "sing")):
                    per[i] = _fixed(low[i])
        # Plurals of an organisation's full name («Национальные банки Казахстана») are not mentions
        # of it; dropping them halves the patterns of multiword names. A name that is a plural
        # (Соединённые Штаты, Курильские острова) keeps its plural and drops the singular instead.
        number = "sing"
        if head is not None:
            hp = _noun_parse(low[head])
            if hp is not None and hp.tag.number == "plur" and not fixed[head]:
                number = "plur"
        per = [{k: v for k, v in slots.items() if k[1] == number} for slots in per]
    forms = _combine(per) | {" ".join(low)} | extra
    ordinary = all(_is_cyr(w) and not _is_abbr(w) and _is_ordinary(w.lower()) for w in words)
    declining = frozenset(i for i, slots in enumerate(per) if len(set().union(*slots.values()) if slots else ()) > 1)
    if extra and not name_like:
        declining |= {len(words) - 1}
    return forms, ordinary, declining


def _person_gender(words: list[str]) -> str | None:
    """The gender of a person's name (lower-case words): the surname's ending, else the first name's."""
    last = words[-1]
    if _FEM_SURNAME.search(last) or _ADJ_FEM.search(last):
        return "femn"
    if _MASC_SURNAME.search(last) or re.search(r"(ский|цкий|ской)$", last):
        return "masc"
    for p in _parse(words[0]) if _known(words[0]) else ():
        if "Name" in p.tag.grammemes and p.tag.gender in ("masc", "femn"):
            return str(p.tag.gender)
    return None


def _surname_slots(word: str, gender: str | None) -> SlotForms:
    """A person's surname (lower case) declined for the person's gender."""
    slots = _word_slots(word, capitalised=True)[0]
    if gender == "femn" and word[-1] not in _VOWELS and not _MASC_SURNAME.search(word):
        return _fixed(word)  # a woman's surname ending in a consonant does not decline (Алла Бут, Аллы Бут)
    if gender is None or "-" in word or (_known(word) and not _MASC_SURNAME.search(word)):
        return slots
    if _MASC_SURNAME.search(word) and not word.endswith(("ин", "ын")) and gender in ("masc", "femn"):
        return _rule_slots(word, surname=True, gender=gender)
    return slots


def _given_slots(word: str, gender: str | None) -> SlotForms:
    """A first name or patronymic (lower case): declined, or fixed when it is a woman's name in a consonant.

    Women's names ending in a consonant do not decline (Айгерим, Гульнар), whatever the rules would make.
    """
    if gender == "femn" and word[-1] not in _VOWELS and not _person_parse(word):
        return _fixed(word)
    return _word_slots(word, capitalised=True)[0]


def _case_like(form: str, alias: str) -> str:
    """Re-apply the alias's capitalisation to a lower-case form, word by word, letter by letter."""
    out = []
    for fw, aw in itertools.zip_longest(form.split(" "), alias.split(" "), fillvalue=""):
        out.append("".join(c.upper() if i < len(aw) and aw[i].isupper() else c for i, c in enumerate(fw)))
    return " ".join(out)


_TRANSLIT_RULES: tuple[tuple[str, str], ...] = (
    ("aye", "ae"), ("aye", "aie"), ("ayev", "aev"), ("yev", "ev"), ("iy", "y"), ("iy", "ii"), ("ii", "iy"),
    ("ye", "e"), ("ya", "ia"), ("yu", "iu"), ("ia", "ya"), ("iu", "yu"), ("kh", "h"), ("kh", "x"),
    ("zh", "j"), ("j", "zh"), ("k", "q"), ("q", "k"), ("ts", "tz"), ("ch", "tch"), ("ks", "x"),
    ("ey", "ei"), ("oy", "oi"), ("ai", "ay"), ("ay", "ai"),
)  # fmt: skip


def translit_variants(alias: str) -> set[str]:
    """Transliteration variants of a Latin name (Tokayev → Tokaev, Toqaev; Dmitriy → Dmitry).

    Russian and Kazakh names have several romanisations in the press; each rule is applied to one
    occurrence at a time and the results are capped, so a name yields a few dozen variants at most.
    """
    base = alias.lower()
    if not re.fullmatch(r"[a-z][a-z' -]{3,}", base) or _is_abbr(alias):
        return set()
    seen = {base}
    frontier = [base]
    for _depth in range(2):
        nxt = []
        for s in frontier:
            for a, b in _TRANSLIT_RULES:
                for m in re.finditer(re.escape(a), s):
                    v = s[: m.start()] + b + s[m.end() :]
                    if v not in seen and len(seen) < _MAX_TRANSLIT:
                        seen.add(v)
                        nxt.append(v)
        frontier = nxt
    seen.discard(base)
    return seen


def alias_forms(
    alias: str, *, case_sensitive: bool | None = None, languages: tuple[str, ...] = LANGUAGES
) -> AliasForms:
    """Compile one alias into its surface forms and case rule (see AliasForms).

    ``languages``: "ru" inflects Russian-style (without it only the alias as written is searched),
    "kk" accepts Kazakh endings after the name, "en" English possessives and romanisation variants.
    """
    words, quoted = split_alias(alias)
    out = AliasForms(alias=alias)
    if not words:
        return out
    ru = "ru" in languages
    display = " ".join(words)
    if len(words) == 1:
        w = words[0]
        lw = w.lower()
        if _is_abbr(w):
            forms = {lw}
            if ru and _is_cyr(w) and lw[-1] not in _VOWELS and "-" not in w:
                forms |= {lw + e for e in _ABBR_ENDINGS}
            out.forms = forms
            if case_sensitive is not False:
                out.exact = {w if f == lw else w + f[len(lw) :] for f in forms}
            return out
        if _is_cyr(w):
            if ru:
                slots, _own = _word_slots(lw, capitalised=w[0].isupper())
                forms = set().union(*slots.values()) if slots else set()
            else:
                forms = set()
            forms.add(lw)
            out.forms = set().union(*(_hyphen_variants(f) for f in forms))
            if w[0].isupper() and case_sensitive is None:
                # Forms that are ordinary words (мир, мира; токаев = of the wine «токай») must be
                # capitalised in the text; so must very short names (Ош vs the interjection).
                short = len(lw) <= 3
                out.cap_forms = {f for f in out.forms if short or _is_ordinary(f.replace(" ", "-"))}
                out.noun = _is_common_noun(lw)
                out.common = len(lw) <= _COMMON_MAX and out.noun
            if ru:
                out.adj_forms = _adjective_forms(lw, out.forms)
            if "kk" in languages:
                _add_kazakh(out, lw, _hyphen_variants(lw))
        else:
            out.forms = {lw}
            out.latin = bool(_LATIN_WORD.match(w))
            if "en" in languages:
                out.translit = translit_variants(w)
                out.forms |= out.translit
            out.forms |= _hyphen_variants(lw)
    else:
        if ru:
            forms, ordinary, out.declining = _multiword(words, quoted)
        else:
            forms = {" ".join(w.lower() for w in words)}
            ordinary = all(_is_cyr(w) and not _is_abbr(w) and _is_ordinary(w.lower()) for w in words)
        # A name is quoted after a generic word (госкорпорация «Росатом», НАК «Казатомпром»): only
        # a capitalised word, or an abbreviation, after the first gets an opening-quote variant.
        positions = tuple(
            k for k in range(1, len(words)) if words[k][0].isupper() and not words[k - 1][0].isupper()
        ) or tuple(k for k in range(1, len(words)) if quoted[k] and not quoted[k - 1])
        variants: set[str] = set()
        for f in forms:
            # Quote variants on the written spelling, hyphen variants on the unquoted one: the
            # product of both would multiply the patterns for little gain.
            if positions and len(f.split(" ")) == len(words):
                variants |= _quote_variants(f.split(" "), positions)
            variants |= _hyphen_variants(f)
        out.forms = variants
        if all(not _is_cyr(w) for w in words):
            out.latin = all(_LATIN_WORD.match(w) for w in words)
            if "en" in languages:
                out.translit = {t for t in translit_variants(display) if " " in t}
                out.forms |= out.translit
        if case_sensitive is None:
            out.upper_tokens = tuple(w for w in words if _is_abbr(w))
            out.cap_all = ordinary and words[0][0].isupper()
        last = words[-1]
        if "kk" in languages and _is_cyr(last) and not _is_abbr(last) and not quoted[-1]:
            low = " ".join(w.lower() for w in words)
            _add_kazakh(out, low, _hyphen_variants(low))
        if ru and len(words) in (2, 3) and _is_name_like(words):
            _add_person(out, [w.lower() for w in words])
    if case_sensitive:
        out.exact = {_case_like(f, display) for f in out.forms}
        out.cap_forms = set()
        out.upper_tokens = ()
        out.cap_all = False
    return out


def _add_kazakh(out: AliasForms, stem: str, stems: set[str]) -> None:
    """Let Kazakh endings follow ``stem`` (lower case): the class of its last sound, minus Russian words."""
    cls = ending_class(stem)
    if cls is None:
        return
    out.kk_stems = set(stems)
    out.kk_class = cls
    last = stem.rpartition(" ")[2].rpartition("-")[2]
    # An ending spelled only with Russian letters may make a Russian word of the stem (Мир + ны =
    # «мирны»): such endings are not accepted after this stem.
    # (word_is_known directly: these one-off words would only crowd the compile's caches)
    known = morph().word_is_known
    out.kk_exclude = frozenset(
        e for e in endings(cls) if e[0] in _RU_FIRST and not (set(e) & _KK_SET) and known(last + e)
        and not _is_name_form(last + e)
    )


_KK_SET = frozenset(KK_LETTERS)
_RU_FIRST = frozenset("абвгдежзийклмнопрстуфхцчшщъыьэюя")


def _is_name_form(word: str) -> bool:
    return all(_PROPER & p.tag.grammemes for p in _parse(word))


def _add_person(out: AliasForms, low: list[str]) -> None:
    """Record a person's first name and surname with their forms (initials, patronymics, other persons)."""
    first, last = low[0], low[-1]
    gender = _person_gender(low)
    out.person = (first, last)
    out.gender = gender
    first_slots = _given_slots(first, gender)
    out.first_forms = frozenset(set().union(*first_slots.values()) | {first}) if first_slots else frozenset({first})
    sur = _surname_slots(last, gender)
    # Singular only: a plural («братьев Ямадаевых», «Ямадаевы») names a family, not the person (a user
    # who wants it lists the plural as an alias of its own).
    out.surname_forms = frozenset(set().union(*(v for k, v in sur.items() if k[1] == "sing")) | {last})


def kazakh_forms(af: AliasForms) -> set[str]:
    """The Kazakh forms an alias matches, spelled out (for ``match --explain``)."""
    if af.kk_class is None:
        return set()
    return {s + e for s in af.kk_stems for e in endings(af.kk_class) - af.kk_exclude}


def is_place(alias: str) -> bool:
    """Whether a one-word alias is a place name: the dictionary knows it with a Geox reading (Грузия, США)."""
    words = alias.split()
    if len(words) != 1:
        return False
    w = words[0].lower().replace("ё", "е")
    return _known(w) and any("Geox" in p.tag.grammemes for p in _parse(w))


def phrase_forms(phrase: str) -> set[str]:
    """Forms of a context or exclude phrase: the same morphology, no case rules."""
    return alias_forms(phrase, case_sensitive=False).forms
