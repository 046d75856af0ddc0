"""The watchlist: entity specs compiled into one Aho-Corasick automaton, and the per-post search.

Per post the work is: normalise (C-level scans on clean text), lower-case, one automaton pass, then
boundary and case checks only at the hits. The cost does not grow with the number of entities; all the
morphology was done when the watchlist was compiled (forms.py).
"""

from __future__ import annotations

import bisect
import hashlib
import logging
import os
import pickle
import re
import tempfile
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any, cast

import ahocorasick
import regex

from monitor.matching.forms import (
    LANGUAGES,
    AliasForms,
    alias_forms,
    clear_caches,
    is_place,
    kazakh_forms,
    morph,
    phrase_forms,
)
from monitor.matching.kazakh import KK_FOLD, KK_FOLDED, endings
from monitor.matching.normalize import Normalized, normalize_parts
from monitor.matching.people import split_people

__all__ = [
    "LANGUAGES",
    "MAX_HITS",
    "MAX_TEXT",
    "REGEX_TIMEOUT",
    "EntitySpec",
    "Match",
    "Watchlist",
    "WatchlistError",
    "entity_id",
    "validate_regex",
]

# Bumped whenever compiled output changes, so stale on-disk caches are ignored.
_FORMAT_VERSION = "tgmonitor-watchlist-11"
REGEX_TIMEOUT = 0.05  # seconds per post for one user pattern; a runaway pattern loses that post only
# Work per post is bounded: a post is searched up to MAX_TEXT characters and its first MAX_HITS
# whole-word hits are examined (a Telegram message holds 4,096 characters; an export or a web page
# can hold anything). A post past either bound is matched on its beginning and a warning is logged.
MAX_TEXT = 262_144
MAX_HITS = 20_000

log = logging.getLogger("monitor.matching")

_ALIAS, _EXCLUDE, _CONTEXT, _KAZAKH = 0, 1, 2, 3
# Opening quotes of every style become «, so one quote variant per multiword form suffices.
_QUOTE_FOLD = str.maketrans({'"': "«", "“": "«", "„": "«"})


def _bmp_word_class() -> str:
    """Character-class body of the BMP word characters (``\\w``: letters of any script, digits, "_")."""
    parts: list[str] = []
    for base, stop in ((0, 0xD800), (0xE000, 0x10000)):  # (surrogates cannot be in a str)
        for m in re.finditer(r"\w+", "".join(map(chr, range(base, stop)))):
            lo, hi = base + m.start(), base + m.end() - 1
            parts.append(re.escape(chr(lo)) if lo == hi else f"{re.escape(chr(lo))}-{re.escape(chr(hi))}")
    return "".join(parts)


# Everything that is not a word character (letters of any script, digits, "_") is a boundary. The
# class is spelled out for the BMP, where ``re`` tests it with one table lookup (``[^\\w ]`` tests
# Unicode categories and is half as fast). An astral letter (rare: historic scripts, CJK extensions;
# NFKC has already turned math letters into plain ones) becomes a space in the key too; next to a hit
# it is checked at the hit, so it still continues a word. (Inside an alias it would match any astral
# letter, which no Russian or Kazakh name has.)
_NON_WORD_SUB = re.compile(f"[^ {_bmp_word_class()}]").sub


def _key(form: str) -> str:
    """The automaton key of a surface form: a space on both sides, non-word characters as spaces.

    The text is searched as " " + its key + " ", so a hit starts and ends at a word boundary and the
    many hits of a form inside longer words never reach Python.
    """
    return " " + _NON_WORD_SUB(" ", _fold(form)) + " "


_KK_SEARCH = re.compile(f"[{KK_FOLDED}]").search


def _fold(s: str) -> str:
    """Kazakh letters as the Russian ones typed for them (Тоқаев → Токаев): how keys and texts meet."""
    return s.translate(KK_FOLD) if _KK_SEARCH(s) else s


_CLOSE_QUOTES = frozenset("»\"”“‟›")
_QUOTE_INSIDE = re.compile("[«\"“„‟‹]")


class WatchlistError(ValueError):
    """A watchlist that cannot be compiled; the message names the entity and the problem."""


def entity_id(name: str) -> str:
    """A stable slug for an entity name: lower case, ё→е, runs of non-letters → "-" (Cyrillic kept)."""
    s = unicodedata.normalize("NFKC", name).lower().replace("ё", "е")
    s = re.sub(r"[^\w]+|_", "-", s).strip("-")
    return s or "entity"


@dataclass(frozen=True, slots=True)
class EntitySpec:
    """One watched entity as configured (`[[entities]]`).

    ``surname_alone = False``: a person's surname alone is a mention only with the first name, an
    initial, a title or the full name nearby (for common surnames). ``inside_names = False``: a mention
    inside a longer watched name of another entity (США in «Голос Америки») is not one of this entity.
    """

    name: str
    aliases: tuple[str, ...] = ()
    id: str = ""
    case_sensitive: bool | None = None
    exclude: tuple[str, ...] = ()
    require_any: tuple[str, ...] = ()
    regex: str | None = None
    silent: bool = False
    enabled: bool = True
    surname_alone: bool = True
    inside_names: bool = True

    def __post_init__(self) -> None:
        if not self.id:
            object.__setattr__(self, "id", entity_id(self.name))
        # Lists from TOML arrive as lists; keep the value hashable and immutable.
        for attr in ("aliases", "exclude", "require_any"):
            val = getattr(self, attr)
            if not isinstance(val, tuple):
                object.__setattr__(self, attr, tuple(val))


@dataclass(frozen=True, slots=True)
class Match:
    """One mention: offsets are into the original, unnormalised text."""

    entity_id: str
    entity: str
    start: int
    end: int
    surface: str
    alias: str


def validate_regex(pattern: str) -> str | None:
    """Return what is wrong with a user pattern, or None if it can be used."""
    try:
        compiled = regex.compile(pattern)
    except (regex.error, TypeError, ValueError, OverflowError) as exc:
        return f"invalid regular expression: {exc}"
    try:
        if compiled.fullmatch("", timeout=REGEX_TIMEOUT) is not None:
            return "the pattern matches the empty string, so it would match every post"
    except TimeoutError:
        return "the pattern is too slow even on an empty string"
    return None


@dataclass(slots=True)
class _Alias:
    entity: int
    alias: str
    exact: frozenset[str] | None
    cap_forms: frozenset[str]
    upper_tokens: tuple[str, ...]
    cap_all: bool
    common: bool = False
    adj_forms: Mapping[str, frozenset[tuple[str, str]]] | None = None
    kk_exclude: frozenset[str] = frozenset()
    kk_class: int = 0
    person: _Person | None = None  # a surname alone: the person's names to check around a hit
    full_person: bool = False  # a person's full name: evidence that the person is meant in the post
    latin: bool = False  # English possessive 's joins the surface
    base: str = ""  # the alias as written, lower case (Яндекс in «Яндекс.Новости»)
    one_word: bool = False  # a one-word non-person name (Европа in «Западной Европе» is another place)
    declining: frozenset[int] = frozenset()  # positions of the alias's words that decline
    noun: bool = False  # an ordinary noun (Конгресс): with a genitive plural after it, another name's head
    place: bool = False  # a one-word place name (Грузия, США): in «Путь Грузии» part of another name


@dataclass(frozen=True, slots=True)
class _Person:
    """What a surname-alone alias needs to tell its person from another one of the same surname."""

    first_forms: frozenset[str]  # forms of the person's first names (lower case, Kazakh letters folded)
    initials: frozenset[str]  # their first letters, upper case
    evidence_only: bool  # the bare surname is no mention: it needs a first name, initial, title
    others: frozenset[str] = frozenset()  # first-name forms of other persons of the surname (Алла Бут)
    gender: str | None = None  # "masc"/"femn" when all the person's names agree: «Бут рассказала» is a woman


@dataclass(slots=True)
class _Entity:
    spec: EntitySpec
    require_entities: tuple[int, ...] = ()
    has_context: bool = False
    excludes: bool = False
    pattern: Any = None  # compiled regex.Pattern


class Watchlist:
    """Compiled entities; ``find`` returns their mentions in a text."""

    entities: Mapping[str, EntitySpec]

    def __init__(
        self, entities: list[_Entity], aliases: list[_Alias], automaton: Any, languages: tuple[str, ...] = LANGUAGES
    ) -> None:
        self._entities = entities
        self._languages = languages
        self._aliases = aliases
        self._automaton = automaton
        self._iter = automaton.iter if len(automaton) else None
        self._regex_entities = tuple(i for i, e in enumerate(entities) if e.pattern is not None)
        self._needs_post = any(e.require_entities or e.has_context or e.excludes for e in entities)
        self.entities = MappingProxyType({e.spec.id: e.spec for e in entities})

    # ---- compile ---------------------------------------------------------------------------------

    @classmethod
    def compile(
        cls, specs: Iterable[EntitySpec], *, cache_dir: Path | None = None, languages: Iterable[str] = LANGUAGES
    ) -> Watchlist:
        """Compile specs into a watchlist; raise WatchlistError on a bad spec.

        ``languages`` (``[matching] languages``): "ru" Russian inflection, "kk" Kazakh endings, "en"
        English possessives and romanisations. With ``cache_dir`` the compiled watchlist is pickled
        there, keyed by a hash of the specs, the languages and the compiler version, and reused on the
        next start (compiling 10,000 entities takes seconds).
        """
        langs = tuple(dict.fromkeys(languages))
        specs = [s for s in specs if s.enabled]
        problems = []
        unknown = [x for x in langs if x not in LANGUAGES]
        if unknown:
            problems.append(f"languages: unknown {', '.join(map(repr, unknown))} (known: {', '.join(LANGUAGES)})")
        seen: dict[str, str] = {}
        for s in specs:
            if s.id in seen:
                problems.append(f"entity {s.name!r}: id {s.id!r} is also used by {seen[s.id]!r}")
            seen[s.id] = s.name
            if s.regex is not None:
                err = validate_regex(s.regex)
                if err:
                    problems.append(f"entity {s.name!r}: regex {s.regex!r}: {err}")
            if not s.name.strip():
                problems.append("an entity has an empty name")
        if problems:
            raise WatchlistError("; ".join(problems))
        key = None
        if cache_dir is not None:
            key = hashlib.sha256(repr((_FORMAT_VERSION, _dict_version(), langs, specs)).encode()).hexdigest()
            cached = _load_cache(cache_dir, key)
            if cached is not None:
                return cached
        try:
            wl = cls._build(specs, langs)
        finally:
            clear_caches()  # the word analyses are only needed while compiling
        if cache_dir is not None and key is not None:
            _save_cache(cache_dir, key, wl)
        return wl

    @classmethod
    def _build(cls, specs: list[EntitySpec], languages: tuple[str, ...] = LANGUAGES) -> Watchlist:
        entities = [_Entity(spec=s) for s in specs]
        by_ref: dict[str, int] = {}
        for i, s in enumerate(specs):
            by_ref.setdefault(s.id, i)
            by_ref.setdefault(s.name.casefold(), i)
        aliases: list[_Alias] = []
        # Payload per key: (length of the hit, targets). A target is (kind, index, entity, rule): kind
        # _ALIAS with the alias index, or _EXCLUDE/_CONTEXT with the entity index; rule 1 when the alias
        # has a rule to check at the hit, 0 when any whole-word hit is a match. A _KAZAKH key is a name
        # open on the right (a Kazakh ending follows); its length is stored negated. Keys go straight
        # into the automaton (no table of 60,000 strings at the peak of a big compile), and equal
        # payloads are shared: most forms of an alias have the same one.
        automaton = ahocorasick.Automaton()
        get, add_word = automaton.get, automaton.add_word
        shared: dict[Any, Any] = {}
        intern = shared.setdefault

        def add(form: str, kind: int, idx: int, first: str = "") -> None:
            if not form:
                return
            if kind == _KAZAKH:
                # the name and the first letter of an ending: other longer words never reach Python
                key = _key(form)[:-1] + first
                target = (kind, idx, aliases[idx].entity, _rule_bits(aliases[idx]) | _CASE)
            else:
                key = _key(form)
                if kind == _ALIAS:
                    target = (kind, idx, aliases[idx].entity, _rule_bits(aliases[idx]))
                else:
                    target = (kind, idx, idx, 0)
            cur = get(key, None)
            if cur is None:
                targets: tuple[tuple[int, int, int, int], ...] = (target,)
            elif target in cur[1]:
                return
            else:
                targets = (*cur[1], target)
            targets = intern(targets, targets)
            length = len(key) - 2
            payload = (-length if kind == _KAZAKH else length, targets)
            add_word(key, intern(payload, payload))

        def add_alias(ei: int, s: EntitySpec, alias: str, af: AliasForms, person: _Person | None) -> None:
            ai = len(aliases)
            aliases.append(
                _Alias(
                    entity=ei,
                    alias=alias,
                    exact=frozenset(map(_fold, af.exact)) if af.exact is not None else None,
                    cap_forms=frozenset(map(_fold, af.cap_forms)),
                    upper_tokens=af.upper_tokens,
                    cap_all=af.cap_all,
                    # Context words (require_any) already tell the name from the noun.
                    common=af.common and not s.require_any,
                    adj_forms={_fold(k): v for k, v in af.adj_forms.items()} or None,
                    kk_exclude=af.kk_exclude,
                    kk_class=af.kk_class or 0,
                    person=person,
                    full_person=af.person is not None,
                    latin=af.latin and "en" in languages,
                    base=_fold(" ".join(af.alias.split()).lower()),
                    one_word=len(af.alias.split()) == 1 and af.exact is None and person is None and not af.latin,
                    declining=af.declining,
                    noun=af.noun,
                    place=person is None and af.person is None and is_place(af.alias),
                )
            )
            for f in af.forms:
                add(f, _ALIAS, ai)
            if af.kk_class is not None:
                for stem in af.kk_stems:
                    for first in _KK_FIRST_FOLDED[af.kk_class]:
                        add(stem, _KAZAKH, ai, first)

        for ei, (ent, s) in enumerate(zip(entities, specs, strict=True)):
            names = [s.name, *s.aliases]
            # Not kept after use: the forms of 10,000 aliases are tens of MB, and a repeated alias is
            # cheap to recompute from the cached word analyses.
            compiled = [
                (alias, alias_forms(alias, case_sensitive=s.case_sensitive, languages=languages))
                for alias in dict.fromkeys(a for a in names if a.strip())
            ]
            people, strangers = split_people(s.name, [(alias, af) for alias, af in compiled if af.person is not None])
            if strangers:
                # An alias naming another person of the surname (Алла Бут under Виктор Бут) is not
                # matched; its first name before the surname marks that other person instead.
                drop = {alias for alias, _af in strangers}
                compiled = [(alias, af) for alias, af in compiled if alias not in drop]
            person: _Person | None = None
            surnames: dict[str, str] = {}
            sur_forms: dict[str, set[str]] = {}
            if people:
                firsts = frozenset(_fold(f) for _a, af in people for f in af.first_forms)
                initials = frozenset(_fold(af.person[0][0]).upper() for _a, af in people if af.person)
                others = frozenset(_fold(f) for _a, af in strangers for f in af.first_forms) - firsts
                genders = {af.gender for _a, af in people}
                gender = genders.pop() if len(genders) == 1 else None
                person = _Person(firsts, initials, evidence_only=not s.surname_alone, others=others, gender=gender)
                for alias, af in people:
                    assert af.person is not None
                    surnames.setdefault(_fold(af.person[1]), alias)
                    sur_forms.setdefault(_fold(af.person[1]), set()).update(af.surname_forms)
            listed = set()
            for alias, af in compiled:
                own = None
                one = _fold(alias.strip().lower().replace("ё", "е"))
                if person is not None and " " not in one and one in surnames:
                    own = person
                    listed.add(one)
                    _person_surname(af, sur_forms[one])
                add_alias(ei, s, alias, af, own)
            if person is not None:
                # A surname the user did not list alone still finds its person with an initial, a
                # patronymic, a title or the full name nearby (О. Бектенов, Олжас Абаевич Бектенов).
                quiet = _Person(
                    person.first_forms, person.initials, evidence_only=True, others=person.others, gender=person.gender
                )
                for sur, full in surnames.items():
                    if sur in listed:
                        continue
                    written = full.split()[-1]
                    af = alias_forms(written, case_sensitive=s.case_sensitive, languages=languages)
                    _person_surname(af, sur_forms[sur])
                    add_alias(ei, s, full, af, quiet)
            for phrase in s.exclude:
                ent.excludes = True
                for f in phrase_forms(phrase):
                    add(f, _EXCLUDE, ei)
            req: list[int] = []
            for item in s.require_any:
                ref = by_ref.get(item) if item in by_ref else by_ref.get(item.casefold())
                if ref is not None and ref != ei:
                    req.append(ref)
                else:
                    ent.has_context = True
                    for f in phrase_forms(item):
                        add(f, _CONTEXT, ei)
            ent.require_entities = tuple(req)
            if s.regex is not None:
                # Run on the normalised text (ё→е, homoglyphs folded), so fold ё in the pattern too.
                ent.pattern = regex.compile(s.regex.replace("ё", "е").replace("Ё", "Е"))
        shared.clear()
        if len(automaton):
            automaton.make_automaton()
        return cls(entities, aliases, automaton, languages)

    # ---- pickling (the on-disk cache) -----------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        pats = [(e.spec.regex if e.pattern is not None else None) for e in self._entities]
        ents = [
            _Entity(e.spec, e.require_entities, e.has_context, e.excludes, None)
            for e in self._entities
        ]
        return {
            "entities": ents, "aliases": self._aliases, "automaton": self._automaton, "patterns": pats,
            "languages": self._languages,
        }  # fmt: skip

    def __setstate__(self, state: dict[str, Any]) -> None:
        ents: list[_Entity] = state["entities"]
        for e, p in zip(ents, state["patterns"], strict=True):
            if p is not None:
                e.pattern = regex.compile(p.replace("ё", "е").replace("Ё", "Е"))
        Watchlist.__init__(self, ents, state["aliases"], state["automaton"], state["languages"])

    # ---- search ------------------------------------------------------------------------------------

    def find(self, text: str) -> list[Match]:
        """All mentions of enabled entities in ``text``, sorted by start (silent ones included).

        Applies word boundaries, case rules, the context rules (a name inside a dotted or hyphenated
        compound, another person of the same surname, another place named by an adjective before the
        name), ``exclude`` vetoes and ``require_any`` context, and drops a mention lying inside a
        longer one of the same entity. At most MAX_TEXT characters and MAX_HITS hits of a post are
        examined.
        """
        if not text:
            return []
        if len(text) > MAX_TEXT:
            log.warning("matching: a post of %d characters is matched on its first %d only", len(text), MAX_TEXT)
            text = text[:MAX_TEXT]
        norm, low, edits = normalize_parts(text)
        if "қ" in low or "ғ" in low or "ң" in low or "һ" in low:  # (four C scans beat one regex scan)
            low = low.translate(KK_FOLD)
        cands: list[tuple[int, int, int, int]] = []  # start, end, entity, alias (-1 = regex)
        excl: list[tuple[int, int, int]] | None = None
        ctx: set[int] | None = None
        people: _People | None = None
        quotes: list[int] | None = None  # positions of the post's quote marks, once a place is hit
        quoted: set[tuple[int, int, int, int]] | None = None  # places inside a quoted name of something
        if self._iter is not None:
            # The automaton runs over " " + the text with every non-word character made a space + " ",
            # and every key has a space on both sides: hits are whole words only (a Kazakh key is open
            # on the right, and the ending is checked here). The map keeps the length, so offsets are
            # shared with ``norm`` and ``low``.
            aliases = self._aliases
            size = len(low)
            hits = 0
            for e, (length, targets) in self._iter(f" {_NON_WORD_SUB(' ', low)} "):
                hits += 1
                if hits > MAX_HITS:
                    log.warning("matching: a post with more than %d hits is matched on its first %d",
                                MAX_HITS, MAX_HITS)
                    break
                if length < 0:
                    # a name followed by a letter an ending of its class starts with
                    end = e - 1
                    start = end + length
                else:
                    # key[i + 1] is low[i]; the closing space of the hit is key[e], i.e. low[e - 1].
                    end = e - 1
                    start = end - length
                if (start and low[start - 1] > "\uffff" and low[start - 1].isalnum()) or (
                    end < size and low[end] > "\uffff" and low[end].isalnum()
                ):
                    continue  # an astral letter continues the word
                for kind, idx, ent, rule in targets:
                    if kind == _ALIAS or kind == _KAZAKH:
                        a = aliases[idx]
                        stop = end
                        if kind == _KAZAKH:
                            stop = _WORD_END(low, end).end()
                            ending = norm[end:stop].lower()
                            if ending in a.kk_exclude or ending not in endings(a.kk_class):
                                continue
                        elif (end < size and norm[end] in ".-") or (start and norm[start - 1] == "."):
                            if _joined(a, norm, low, start, end, size):
                                continue  # Яндекс in «Яндекс.Новости», .РФ, интернет-магазин
                        if not rule:
                            cands.append((start, stop, ent, idx))
                            continue
                        if rule & _CASE and not _case_ok(a, norm, low, start, end, text, edits):
                            continue
                        if (
                            rule & _PLACE and start > 2 and norm[start - 1] == " " and norm[start - 2] in _ADJ_LAST
                            and _other_place(norm, low, start, end)
                        ):
                            continue  # Западная Европа, Южная Америка: another place
                        if rule & _QUOTED:
                            if quotes is None:
                                quotes = [m.start() for m in _QUOTE_MARK.finditer(norm)]
                            if quotes and _in_quoted_name(norm, quotes, start, stop):
                                if quoted is None:
                                    quoted = set()
                                quoted.add((start, stop, ent, idx))
                        if not rule & _PERSON:
                            cands.append((start, stop, ent, idx))
                            continue
                        if a.person is not None:
                            if people is None:
                                people = _People()
                            span = people.check(a, ent, norm, low, start, stop, len(cands))
                            if span is None:
                                continue
                            start_, stop = span
                            cands.append((start_, stop, ent, idx))
                            continue
                        if a.full_person:
                            if people is None:
                                people = _People()
                            people.evidence.add(ent)
                        if a.latin and stop < size and norm[stop] in "'’" and low[stop + 1 : stop + 2] == "s" and (
                            stop + 2 >= size or not low[stop + 2].isalnum()
                        ):
                            stop += 2  # Tokayev's
                        cands.append((start, stop, ent, idx))
                    elif kind == _EXCLUDE:
                        if excl is None:
                            excl = []
                        excl.append((start, end, idx))
                    else:
                        if ctx is None:
                            ctx = set()
                        ctx.add(idx)
        if people is not None and people.bare:
            cands = people.settle(cands)
        if quoted:
            # A place inside a quoted name of something else («Путь Грузии», «Нафтогаз Украины») is
            # no mention of the place, unless that name is watched too (then _emit's rule for names
            # inside names decides, as for «Голос Америки»).
            cands = [
                c for c in cands
                if c not in quoted or any(d[2] != c[2] and d[0] <= c[0] and c[1] <= d[1] for d in cands)
            ]  # fmt: skip
        if self._regex_entities:
            self._run_regexes(norm, cands)
        if not cands:
            return []
        if "/" in low:
            # A name inside a link (https://kaspi.kz/shop, t.me/…) is an address, not a mention.
            urls = [m.span() for m in _URL.finditer(low)]
            if urls:
                cands = [c for c in cands if not any(s <= c[0] < e for s, e in urls)]
                if not cands:
                    return []
        if self._needs_post:
            cands = self._apply_rules(cands, excl or [], ctx or set())
            if not cands:
                return []
        return self._emit(text, norm, edits, cands)

    def _run_regexes(self, norm: str, cands: list[tuple[int, int, int, int]]) -> None:
        for ei in self._regex_entities:
            pat = self._entities[ei].pattern
            try:
                for m in pat.finditer(norm, timeout=REGEX_TIMEOUT):
                    if m.end() > m.start():
                        cands.append((m.start(), m.end(), ei, -1))
            except TimeoutError:
                continue  # the post goes on without this pattern rather than hanging the service

    def _apply_rules(
        self, cands: list[tuple[int, int, int, int]], excl: list[tuple[int, int, int]], ctx: set[int]
    ) -> list[tuple[int, int, int, int]]:
        ents = self._entities
        if excl:
            cands = [
                c for c in cands
                if not any(ei == c[2] and s <= c[0] and c[1] <= e for s, e, ei in excl)
            ]  # fmt: skip
        found = {c[2] for c in cands}
        keep = []
        for c in cands:
            ent = ents[c[2]]
            if ent.require_entities or ent.has_context:
                if not (c[2] in ctx or any(r in found for r in ent.require_entities)):
                    continue
            keep.append(c)
        return keep

    def _emit(
        self, text: str, norm: str, edits: tuple[tuple[int, int, int, int], ...], cands: list[tuple[int, int, int, int]]
    ) -> list[Match]:
        """Matches from candidate spans: duplicates and mentions inside a longer one of the same entity dropped.

        One sort and one pass (n log n): the candidates are ordered by start and then longest first,
        so a candidate lies inside an earlier, longer one of its entity exactly when that entity's
        furthest end so far reaches past it. A watched name inside another watched name (США in
        «Голос Америки», Москва in «Эхо Москвы») is a mention of both.
        """
        if len(cands) > 1:
            cands.sort(key=_cand_order)
        out: list[Match] = []
        n = Normalized(text, norm, norm, edits) if edits else None
        size = len(norm)
        entities = self._entities
        reach: dict[int, int] = {}  # entity -> the furthest end of its spans so far
        top = (-1, -1, -1, -1)  # the furthest-reaching span so far, of any entity
        for s, e, ei, ai in cands:
            if reach.get(ei, -1) >= e:
                # Same span again, or inside a longer mention of the same entity (Токаев inside
                # «Касым-Жомарт Токаев», Казахстан inside its own «Республика Казахстан»).
                continue
            if top[1] >= e and top[2] != ei and self._inside(norm, s, top, ei):
                continue
            reach[ei] = e
            if e > top[1]:
                top = (s, e, ei, ai)
            spec = entities[ei].spec
            # A form with an opening quote inside (НАК «Казатомпром) ends before the closing one;
            # include it so the surface is the whole name as written.
            if e < size and norm[e] in _CLOSE_QUOTES and _QUOTE_INSIDE.search(norm, s, e):
                e += 1
            os_, oe = n.span(s, e) if n is not None else (s, e)
            alias = self._aliases[ai].alias if ai >= 0 else "regex"
            out.append(Match(spec.id, spec.name, os_, oe, text[os_:oe], alias))
        return out

    def _inside(self, norm: str, s: int, outer: tuple[int, int, int, int], ei: int) -> bool:
        """Whether a span starting at ``s`` inside ``outer`` (another entity's) is part of that name only.

        A watched name that is a fixed part of a longer watched name (США in «Голос Америки», «Конгресс
        США»; Москва in «Эхо Москвы») is a mention of its own; one the longer name declines as its own
        word (Астана in «Эйр Астаны») or a person's name (Назарбаева in «Дарига Назарбаева») is not.
        """
        if not self._entities[ei].spec.inside_names:
            return True
        if outer[3] < 0:
            return False  # inside a user pattern's match: the pattern says nothing about words
        a = self._aliases[outer[3]]
        if a.full_person or a.person is not None:
            return True
        word = norm.count(" ", outer[0], s)
        return word in a.declining

    # ---- introspection -----------------------------------------------------------------------------

    def explain(self, name_or_id: str) -> dict[str, list[str]]:
        """Alias → every surface form it matches (Russian, Kazakh, English) for one entity."""
        return {
            alias: sorted(set().union(*by_lang.values())) for alias, by_lang in self.explain_forms(name_or_id).items()
        }

    def explain_forms(self, name_or_id: str) -> dict[str, dict[str, list[str]]]:
        """Alias → language ("ru", "kk", "en") → the forms generated for it; "regex" for a user pattern.

        "ru" holds the alias's own forms (its inflection, hyphen and quote variants), "kk" the Kazakh
        forms (the name followed by each ending), "en" possessives and romanisation variants.
        """
        found = next((e for e in self._entities if e.spec.id == name_or_id), None)
        if found is None:
            key = name_or_id.casefold()
            found = next(
                (e for e in self._entities if e.spec.name.casefold() == key or entity_id(name_or_id) == e.spec.id),
                None,
            )
        if found is None:  # an alias names its entity too, as in every command's --entity
            found = next((e for e in self._entities if any(a.casefold() == key for a in e.spec.aliases)), None)
        if found is None:
            raise KeyError(name_or_id)
        # Recomputed on demand rather than kept: the forms of 10,000 entities would cost tens of MB.
        spec = found.spec
        out: dict[str, dict[str, list[str]]] = {}
        for alias in dict.fromkeys(a for a in (spec.name, *spec.aliases) if a.strip()):
            af = alias_forms(alias, case_sensitive=spec.case_sensitive, languages=self._languages)
            en = set(af.translit)
            if af.latin and "en" in self._languages:
                en |= {f + "'s" for f in af.forms}
            langs = {"ru": sorted(af.forms - af.translit), "kk": sorted(kazakh_forms(af)), "en": sorted(en)}
            out[alias] = {k: v for k, v in langs.items() if v}
        if spec.regex is not None:
            out["regex"] = {"regex": [spec.regex]}
        return out

    @property
    def pattern_count(self) -> int:
        """Number of distinct surface forms in the automaton."""
        return len(self._automaton)


def _person_surname(af: AliasForms, forms: set[str]) -> None:
    """Keep, of a surname alias's forms, the singular ones of its person's gender.

    The surname of «Нурсултан Назарбаев» alone is Назарбаев, Назарбаева, Назарбаеву …, not Назарбаевой
    (Дарига Назарбаева), and not Назарбаевы, Назарбаевых (a family).
    """
    if not forms or af.exact is not None:
        return
    keep = {v for f in forms for v in _hyphen_forms(f)}
    af.forms = {f for f in af.forms if f in keep} | {af.alias.strip().lower().replace("ё", "е")}
    if af.kk_class is not None:
        # Nor the Kazakh plural (Тоқаевтар, Тоқаевтардың): a family too. The bare possessive -ы spells
        # the Russian plural (Ямадаевы), and a person's surname takes no possessive in the press.
        af.kk_exclude = af.kk_exclude | {e for e in endings(af.kk_class) if e.startswith(_KK_PLURAL) or e == "ы"}


_KK_PLURAL = ("лар", "лер", "дар", "дер", "тар", "тер")  # the Kazakh plural, first of stacked endings


def _hyphen_forms(form: str) -> set[str]:
    return {form, form.replace("-", " "), form.replace("-", "")}


def _cand_order(c: tuple[int, int, int, int]) -> tuple[int, int, int]:
    return (c[0], -c[1], c[2])


_CASE, _PLACE, _PERSON, _QUOTED = 1, 2, 4, 8  # rule bits of a target: which checks its hits need


def _rule_bits(a: _Alias) -> int:
    """Which checks hits of the alias need beyond a whole-word hit (0 for most: any hit is a match)."""
    bits = 0
    if a.exact is not None or a.cap_all or a.adj_forms is not None or a.cap_forms or a.upper_tokens:
        bits |= _CASE
    if a.one_word:
        bits |= _PLACE
    if a.person is not None or a.full_person or a.latin:
        bits |= _PERSON
    if a.place:
        bits |= _QUOTED
    return bits


def _case_ok(
    a: _Alias, norm: str, low: str, start: int, end: int, text: str, edits: tuple[tuple[int, int, int, int], ...]
) -> bool:
    """The alias's case rule, applied to the hit in the case-preserving normalised text."""
    if a.exact is not None:
        hit = norm[start:end]
        if hit in a.exact:
            return True
        return hit.translate(_QUOTE_FOLD) in a.exact
    if a.cap_all and not norm[start].isupper():
        return False
    if a.cap_forms and low[start:end] in a.cap_forms:
        if not norm[start].isupper():
            return False
        if a.common:
            # Judged on the original text: normalisation has made line breaks spaces.
            span = Normalized(text, norm, norm, edits).span(start, end) if edits else (start, end)
            if not _capital_is_evidence(text, *span):
                return False
    if a.adj_forms is not None and _is_own_adjective(a.adj_forms, low, start, end):
        return False
    if a.cap_forms and low[start:end] in a.cap_forms:
        if a.noun and low[start:end] != a.base and _genitive_follows(low, end):
            return False  # the head of another name: «Конгресса профсоюзов», «Союза писателей»
    if a.upper_tokens:
        hit = norm[start:end]
        return all(t in hit for t in a.upper_tokens)
    return True


# Links: a scheme, www. or t.me/, or a dotted host followed by a path.
_URL = re.compile(r"(?:[a-z][a-z0-9+.-]*://|www\.|t\.me/)\S+|(?<![\w.])[\w-]+(?:\.[\w-]+)+/\S*")
_OPENERS = frozenset("«\"“„‘'‹#")
_SENTENCE_END = frozenset(".!?…\n\r\u2028\u2029")
_NEXT_WORD = re.compile(r"[ \t\u00a0]+([^\W\d_]+(?:-[^\W\d_]+)?)")


def _orig(text: str, norm: str, edits: tuple[tuple[int, int, int, int], ...], start: int, end: int) -> tuple[int, int]:
    return Normalized(text, norm, norm, edits).span(start, end) if edits else (start, end)


_NEXT_LOWER = re.compile(r" ([а-яё]+)")


def _genitive_follows(low: str, end: int) -> bool:
    """Whether the next word is a noun that can only be a genitive plural (Конгресса профсоюзов)."""
    m = _NEXT_LOWER.match(low, end)
    return m is not None and _only_genitive(m.group(1))


@lru_cache(maxsize=4096)
def _only_genitive(word: str) -> bool:
    parses = morph().parse(word)
    nouns = [p for p in parses if p.score >= 0.05]
    return bool(nouns) and all(
        p.tag.POS == "NOUN" and str(p.tag.case) in ("gent", "gen2") and p.tag.number == "plur" for p in nouns
    )


def _capital_is_evidence(text: str, start: int, end: int, *, quotes: bool = True) -> bool:
    """Whether the capital of a hit marks a name: not at a sentence start, not in all-caps text.

    Used for aliases that are ordinary nouns (Мир, Рост): «Мир меняется», «МИР НА ПОРОГЕ…» are the
    noun; «карты «Мир»», «#Мир», «банк Рост» the name.
    """
    if start and text[start - 1] in _OPENERS:
        if quotes or text[start - 1] == "#":
            return True
        start -= 1  # an opening quote starts a quotation, which starts a sentence: look before it
    if end - start > 1 and text[start:end].isupper():
        return False
    i = start - 1
    while i >= 0:
        c = text[i]
        if c in _SENTENCE_END:
            return False
        if c.isalnum() or c in _IN_SENTENCE:
            return True
        i -= 1  # spaces, dashes, bullets, emoji: look further back
    return False  # the start of the text


_IN_SENTENCE = frozenset(",;:()[]«»\"“”„'‘’/&%+=<>@#№$€₸")

# always a match (maybe an empty one), never None
_WORD_END = cast("Callable[[str, int], re.Match[str]]", re.compile(r"[^\W_]*").match)
_ALL_ENDINGS = frozenset().union(*(endings(c) for c in range(6)))
# The first letters of each class's endings as the automaton sees them (Kazakh consonants folded).
_KK_FIRST_FOLDED = tuple("".join(sorted({_fold(e[0]) for e in endings(c)})) for c in range(6))


def _joined(a: _Alias, norm: str, low: str, start: int, end: int, size: int) -> bool:
    """Whether a hit is part of a dotted or hyphenated compound rather than the name itself.

    «Яндекс.Новости», «екатеринбург.рф», «0.facebook.com», «.РФ» are other names (a product, a web
    address); «Интернет-трансляция», «Москва-река» are other words. A capitalised second part
    (Росатом-Казахстан, Россия-НАТО), a number (Казахстан-2050) or a Kazakh ending after a hyphen
    (ЕАЭС-ке) leaves the name a mention.
    """
    if start and norm[start - 1] == ".":
        if start == 1:
            return True
        c = norm[start - 2]
        if c.isspace() or c.isdigit() or (c.isascii() and c.isalpha()):
            return True
    if end + 1 < size and norm[end + 1].isalpha():
        c = norm[end]
        if c == ".":
            # a dot and a lower-case letter is an address; a capital after the name as written, a
            # product (Яндекс.Новости); an inflected form before a capital is a missing space
            return norm[end + 1].islower() or low[start:end] == a.base
        if c == "-" and norm[end + 1].islower() and a.exact is None:
            tail = _WORD_END(low, end + 1).end()
            return norm[end + 1 : tail].lower() not in _ALL_ENDINGS
    return False


# A capitalised adjective right before a hit (Западной, Южную, Нижний): maybe another place's name.
_ADJ_ENDINGS = (
    "ая", "яя", "ой", "ей", "ий", "ый", "ую", "юю", "ое", "ее", "ом", "ем", "ым", "им", "ых", "их", "ые", "ие",
)  # fmt: skip
_ADJ_LAST = frozenset(e[-1] for e in _ADJ_ENDINGS)
_PREV_ADJ = re.compile(r"[А-ЯЁ][а-яё]+(?:-[а-яё]+)*")
_DIRECTIONS = ("северн", "южн", "западн", "восточн", "центральн", "северо-", "юго-", "нижн", "верхн")


def _other_place(norm: str, low: str, start: int, end: int) -> bool:
    """Whether a capitalised adjective agreeing with the hit makes it another name (Западная Европа).

    Северная Европа, Южная Америка, Восточный Иерусалим, Нижний Новгород name other places than
    Европа, Америка, Иерусалим, Новгород. At a sentence start a capital says nothing, so there only
    the compass and upper/lower adjectives count.
    """
    if start < 3 or norm[start - 1] != " " or norm[start - 2] not in _ADJ_LAST:
        return False
    ws = norm.rfind(" ", max(0, start - 40), start - 1) + 1
    word = norm[ws : start - 1]
    if not word[:1].isupper() or not word.endswith(_ADJ_ENDINGS) or not _PREV_ADJ.fullmatch(word):
        return False
    adj = word.lower()
    i = ws - 1
    if i >= 0 and norm[i] in _OPENERS:
        return False  # a quoted name (партия «Единая Россия») mentions the place it names
    while i >= 0 and norm[i] in " (":
        i -= 1
    if (i < 0 or norm[i] in _SENTENCE_END) and not adj.startswith(_DIRECTIONS):
        return False
    return _adj_agrees(adj, low[start:end])


@lru_cache(maxsize=4096)
def _adj_agrees(adj: str, noun: str) -> bool:
    """Whether ``adj`` is an adjective that can agree with ``noun`` (a form of the name)."""
    a = {_agreement(p.tag) for p in morph().parse(adj) if p.tag.POS in ("ADJF", "PRTF") and p.tag.case}
    if not a:
        return False
    n = {_agreement(p.tag) for p in morph().parse(noun) if p.tag.POS == "NOUN" and p.tag.case}
    if not n:
        return True  # a name the dictionary does not know: the capitalised adjective is enough
    return bool(a & n) or any(x[0] == y[0] and "ms-f" in (x[1], y[1]) for x in a for y in n)


_CASE_NAMES = {"loc2": "loct", "loc1": "loct", "gen2": "gent", "acc2": "accs", "gen1": "gent"}


def _agreement(tag: Any) -> tuple[str, str]:
    case = _CASE_NAMES.get(str(tag.case), str(tag.case))
    return case, (str(tag.gender) if tag.number == "sing" else "plur")


_QUOTE_MARK = re.compile("[«»„“”\"]")
_QUOTE_OPEN = frozenset("«„“\"")
_QUOTE_CLOSE = frozenset("»“”\"")
_NAME_TOKEN = re.compile(r"\w+")
_NOT_IN_NAMES = re.compile(r"[,;:!?—–]|\.\s")  # punctuation of a quoted sentence, not of a name
_QUOTED_NAME_WORDS = 5  # more words than this in quotes make a quotation, not a name


def _in_quoted_name(norm: str, quotes: list[int], start: int, end: int) -> bool:
    """Whether a hit lies inside a quoted name that has other words too («Путь Грузии», «Tele2 Россия»).

    A quoted name that is exactly the hit («Газпром») is the name itself; a quotation (a clause with
    a verb, sentence punctuation, or more than five words: «Россия вернётся», — сказал он) is speech
    that mentions the place.
    """
    i = bisect.bisect_left(quotes, start) - 1
    j = bisect.bisect_left(quotes, end)
    if i < 0 or j >= len(quotes):
        return False
    q, r = quotes[i], quotes[j]
    if r - q > 120 or norm[q] not in _QUOTE_OPEN or norm[r] not in _QUOTE_CLOSE:
        return False
    if norm[q] in "“\"" and q and norm[q - 1].isalnum():
        return False  # a closing quote: the hit is outside
    if norm[r] in "“\"" and r + 1 < len(norm) and norm[r + 1].isalnum():
        return False  # an opening quote after the hit
    inner = norm[q + 1 : r]
    if (not inner[:1].isupper() and not inner[:1].isdigit()) or _NOT_IN_NAMES.search(inner):
        return False
    words = _NAME_TOKEN.findall(inner)
    if len(words) < 2 or len(words) > _QUOTED_NAME_WORDS:
        return False
    hit = set(_NAME_TOKEN.findall(norm[start:end]))
    return any(w not in hit for w in words) and not any(_is_verb(w.lower()) for w in words)


@lru_cache(maxsize=4096)
def _is_verb(word: str) -> bool:
    """Whether a word's likeliest reading is a verb (a quotation rather than a name)."""
    parses = morph().parse(word)
    return bool(parses) and parses[0].tag.POS in ("VERB", "INFN")


# ---- persons -------------------------------------------------------------------------------------------

_EVIDENCE, _BARE, _OTHER = 0, 1, 2
_INIT_BEFORE = re.compile(r"(?<![^\W\d_])([^\W\d_])\.(?:-[^\W\d_]\.)?(?:\s?([^\W\d_])\.)?\s?$")
_INIT_AFTER = re.compile(r"[ \u00a0]([^\W\d_])\.(?:-[^\W\d_]\.)?(?:\s?([^\W\d_])\.)?")
_WORD = re.compile(r"[^\W\d_]+(?:-[^\W\d_]+)*")
_PATRONYMIC = (
    "вич", "вича", "вичу", "вичем", "виче", "вна", "вны", "вне", "вну", "вной", "вною", "ична", "ичны", "ичне",
    "ичну", "ичной", "ич", "ича", "ичу", "ичем", "иче", "улы", "ұлы", "кызы",
)  # fmt: skip
_PARTICLES = frozenset(
    {"ле", "де", "ван", "фон", "дер", "ди", "да", "дель", "ла", "эль", "аль", "бен", "ибн", "ду", "дос"}
)
# Words that stand before a person's surname (a title, an office, a trade): with one of them within
# three words before it, a surname alone is taken to be the person (премьер-министр Японии Н. Кан).
_TITLES = (
    "президент", "премьер", "министр", "вице-", "глава", "главы", "главе", "главу", "главой", "председател",
    "аким", "депутат", "сенатор",
    "губернатор", "мэр", "посол", "генерал", "господин", "госпож", "г-н", "г-жа", "канцлер", "корол", "принц",
    "спикер", "лидер", "прокурор", "генпрокурор", "судь", "директор", "гендиректор", "ректор", "экс-",
    "советник", "помощник", "заместител", "замминистр", "тренер", "наставник", "капитан", "пресс-секретар",
    "сопредседател", "основател", "руководител", "вратар", "гроссмейстер", "шахматист", "астронавт",
    "космонавт", "актер", "актрис", "певиц", "певец", "писател", "поэт", "журналист", "бизнесмен",
    "предпринимател", "олигарх", "банкир", "политолог", "адвокат", "командир", "маршал", "полковник",
    "патриарх", "митрополит", "муфти", "имам", "мистер", "сэр", "леди",
)  # fmt: skip


class _People:
    """Per-post bookkeeping of surname-alone hits: accepted outright, or once the post names the person."""

    __slots__ = ("bare", "evidence", "other")

    def __init__(self) -> None:
        self.evidence: set[int] = set()  # entities whose person is named in the post (full name, initial…)
        self.other: set[int] = set()  # entities whose surname the post gives another person
        self.bare: list[tuple[int, int, bool]] = []  # (candidate index, entity, needs evidence)

    def check(
        self, a: _Alias, ent: int, norm: str, low: str, start: int, end: int, index: int
    ) -> tuple[int, int] | None:
        """The span of a surname hit with its first name or initials, or None for another person."""
        assert a.person is not None
        verdict, s, e = _person_context(a.person, norm, start, end, low[start:end] == a.base)
        if verdict == _OTHER:
            self.other.add(ent)
            return None
        if verdict == _EVIDENCE:
            self.evidence.add(ent)
        else:
            self.bare.append((index, ent, a.person.evidence_only))
        return s, e

    def settle(self, cands: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int]]:
        """Drop bare surnames the post does not tie to the person.

        A bare surname needing evidence (``surname_alone = false``, or a surname the user did not list
        alone) stays when the post names the person anywhere; a listed surname is dropped when the
        post names another person of that surname and never this one (Алла Бут … Бут рассказала).
        """
        drop = {
            i for i, ent, only in self.bare if ent not in self.evidence and (only or ent in self.other)
        }
        return [c for i, c in enumerate(cands) if i not in drop] if drop else cands


def _person_context(p: _Person, norm: str, start: int, end: int, nominative: bool) -> tuple[int, int, int]:
    """(verdict, start, end) for a surname hit: the words around it say which person it is.

    ``nominative``: the hit is the surname as written (it may be the subject of the next word).
    """
    m = _INIT_BEFORE.search(norm, max(0, start - 12), start)
    if m is not None and m.group(1).isupper() and (m.group(2) is None or m.group(2).isupper()):
        if _fold(m.group(1)) in p.initials:
            return _EVIDENCE, m.start(), end
        return _OTHER, start, end
    m = _INIT_AFTER.match(norm, end)
    if m is not None and m.group(1).isupper() and (m.group(2) is None or m.group(2).isupper()):
        if _fold(m.group(1)) in p.initials:
            return _EVIDENCE, start, m.end()
        return _OTHER, start, end
    prev = _prev_word(norm, start)
    if prev is not None and prev[1][0].isupper():
        ws, word = prev
        lw = _fold(word.lower())
        if _same_first(lw, p.first_forms):
            return _EVIDENCE, ws, end
        if p.others and _same_first(lw, p.others):
            return _OTHER, start, end  # a listed other person of the surname (Оливер Кан, Сулимы Ямадаева)
        if lw in _PARTICLES or lw.endswith(_PATRONYMIC):
            # Олжас Абаевич Бектенов; Жан-Мари Ле Пен: the first name is one word further
            prev2 = _prev_word(norm, ws)
            if prev2 is not None and prev2[1][0].isupper():
                l2 = _fold(prev2[1].lower())
                if _same_first(l2, p.first_forms):
                    return _EVIDENCE, start, end  # (the span stays the surname: the name is split)
                if p.others and _same_first(l2, p.others):
                    return _OTHER, start, end
                if _is_first_name(prev2[1]):
                    return _OTHER, start, end
            if lw.endswith(_PATRONYMIC) and _is_patronymic(lw):
                return _OTHER, start, end  # another person's patronymic (Алексеем Николаевичем Толстым)
        elif _is_first_name(word) and not (_opens_sentence(norm, ws) and _is_ordinary_word(word.lower())):
            # Мишель Обама, Владимир Белов, Ахмат-Хаджи Кадыров; not «Роман Толстого …» opening a sentence
            return _OTHER, start, end
    if p.gender is not None and nominative:
        # (only a nominative is a subject: «пресс-служба Кадырова заявила» is the service)
        m = _NEXT_WORD.match(norm, end)
        if m is not None and _past_gender(m.group(1).lower()) not in (None, p.gender):
            return _OTHER, start, end  # «Бут рассказала»: the verb says a woman, the entity is a man
    if _titled(norm, start):
        return _EVIDENCE, start, end
    return _BARE, start, end


@lru_cache(maxsize=4096)
def _past_gender(word: str) -> str | None:
    """The gender of a singular past-tense verb (рассказала: "femn", заявил: "masc"), else None."""
    parses = morph().parse(word)
    if not parses or parses[0].tag.POS != "VERB":
        return None
    genders = {str(p.tag.gender) for p in parses if p.tag.POS == "VERB" and p.tag.tense == "past"}
    if len(genders) != 1:
        return None
    g = genders.pop()
    return g if g in ("masc", "femn") else None


def _prev_word(norm: str, pos: int) -> tuple[int, str] | None:
    """(start, word) of the word right before ``pos`` across spaces only, or None."""
    j = pos
    while j > 0 and norm[j - 1] in " \u00a0":
        j -= 1
    if j == pos or j == 0:
        return None
    i = norm.rfind(" ", max(0, j - 40), j) + 1
    m = _WORD.fullmatch(norm, i, j)
    return (i, m.group()) if m is not None else None


def _same_first(word: str, forms: frozenset[str]) -> bool:
    """A form of the person's first name, or a spelling one letter away (Биньямин ~ Беньямин)."""
    if word in forms:
        return True
    if len(word) < 5:
        return False
    return any(f[0] == word[0] and abs(len(f) - len(word)) <= 1 and _one_edit(f, word) for f in forms if len(f) >= 5)


def _one_edit(a: str, b: str) -> bool:
    if len(a) == len(b):
        return sum(x != y for x, y in zip(a, b, strict=True)) <= 1
    if len(a) > len(b):
        a, b = b, a
    i = 0
    while i < len(a) and a[i] == b[i]:
        i += 1
    return a[i:] == b[i + 1 :]


@lru_cache(maxsize=4096)
def _is_first_name(word: str) -> bool:
    """Whether a capitalised word is a first name: the dictionary says so, or it is hyphenated (Жан-Мари)."""
    if word.isupper():
        return False
    parts = word.split("-")
    if len(parts) > 1 and all(x[:1].isupper() for x in parts):
        return True
    # Only the dictionary's word: pymorphy3 guesses a Name reading for many unknown words (Kazakh
    # ones among them: Сарапшылар, Депутаттар).
    low = word.lower()
    return morph().word_is_known(low) and any("Name" in p.tag.grammemes for p in morph().parse(low))


def _opens_sentence(norm: str, i: int) -> bool:
    j = i - 1
    while j >= 0 and norm[j] in " «\"(":
        j -= 1
    return j < 0 or norm[j] in _SENTENCE_END


@lru_cache(maxsize=4096)
def _is_ordinary_word(word: str) -> bool:
    """A dictionary word with a reading that is no name (роман, вера, надежда; not мишель)."""
    return morph().word_is_known(word) and any(
        not ({"Name", "Surn", "Patr", "Geox", "Orgn"} & p.tag.grammemes) for p in morph().parse(word)
    )


@lru_cache(maxsize=4096)
def _is_patronymic(word: str) -> bool:
    return word.endswith(("улы", "ұлы", "кызы")) or any("Patr" in p.tag.grammemes for p in morph().parse(word))


def _titled(norm: str, start: int) -> bool:
    """Whether a title (президент, министр, г-н …) stands within the three words before ``start``."""
    words = norm[max(0, start - 80) : start].lower().split()[-3:]
    return any(w.strip("«»\"(),").startswith(_TITLES) for w in words)


def _is_own_adjective(adj_forms: Mapping[str, frozenset[tuple[str, str]]], low: str, start: int, end: int) -> bool:
    """Whether a hit is the name's derived adjective: the next word agrees with it (Заречинском районе)."""
    tags = adj_forms.get(_NON_WORD_SUB(" ", low[start:end]))
    if not tags:
        return False
    m = _NEXT_WORD.match(low, end)
    return m is not None and _agrees(m.group(1), tags)


_FUNCTION_POS = frozenset({"CONJ", "PREP", "PRCL", "INTJ", "NPRO", "ADVB", "PRED", "NUMR"})


@lru_cache(maxsize=4096)
def _agrees(word: str, tags: frozenset[tuple[str, str]]) -> bool:
    """Whether ``word`` can be a noun, adjective or participle in one of the (case, gender) ``tags``."""
    parses = morph().parse(word)
    if parses and parses[0].tag.POS in _FUNCTION_POS:
        return False  # «и», «в», «не»: a conjunction, preposition or particle is what it mostly is
    for p in parses:
        t = p.tag
        if t.POS not in ("NOUN", "ADJF", "PRTF") or t.case is None or "Fixd" in t.grammemes:
            continue
        case = {"loc2": "loct", "loc1": "loct", "gen2": "gent", "acc2": "accs"}.get(str(t.case), str(t.case))
        if (case, str(t.gender) if t.number == "sing" else "plur") in tags:
            return True
    return False


def _dict_version() -> str:
    try:
        from importlib.metadata import version

        return version("pymorphy3-dicts-ru") + "/" + version("pymorphy3")
    except Exception:  # pragma: no cover - metadata missing in odd installs
        return "unknown"


def _load_cache(cache_dir: Path, key: str) -> Watchlist | None:
    path = Path(cache_dir) / f"watchlist-{key[:32]}.pickle"
    try:
        with path.open("rb") as fh:
            obj = pickle.load(fh)
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError, TypeError, ValueError):
        return None
    return obj if isinstance(obj, Watchlist) else None


def _save_cache(cache_dir: Path, key: str, wl: Watchlist) -> None:
    cache_dir = Path(cache_dir)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        # Write then rename, so a concurrent reader never sees half a file.
        fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=".watchlist-")
        with os.fdopen(fd, "wb") as fh:
            pickle.dump(wl, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, cache_dir / f"watchlist-{key[:32]}.pickle")
    except OSError:
        return  # a cache is an optimisation; failing to write it is not an error
