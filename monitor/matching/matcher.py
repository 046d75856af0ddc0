"""The watchlist: entity specs compiled into one Aho-Corasick automaton, and the per-post search.

Per post the work is: normalise (C-level scans on clean text), lower-case, one automaton pass, then
boundary and case checks only at the hits. The cost does not grow with the number of entities; all the
morphology was done when the watchlist was compiled (forms.py).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import tempfile
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

import ahocorasick
import regex

from monitor.matching.forms import alias_forms, clear_caches, morph, phrase_forms
from monitor.matching.normalize import Normalized, normalize_parts

__all__ = [
    "REGEX_TIMEOUT",
    "EntitySpec",
    "Match",
    "Watchlist",
    "WatchlistError",
    "entity_id",
    "validate_regex",
]

# Bumped whenever compiled output changes, so stale on-disk caches are ignored.
_FORMAT_VERSION = "tgmonitor-watchlist-9"
REGEX_TIMEOUT = 0.05  # seconds per post for one user pattern; a runaway pattern loses that post only

_ALIAS, _EXCLUDE, _CONTEXT = 0, 1, 2
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
    return " " + _NON_WORD_SUB(" ", form) + " "


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
    """One watched entity as configured (`[[entities]]`)."""

    name: str
    aliases: tuple[str, ...] = ()
    id: str = ""
    case_sensitive: bool | None = None
    exclude: tuple[str, ...] = ()
    require_any: tuple[str, ...] = ()
    regex: str | None = None
    silent: bool = False
    enabled: bool = True

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

    def __init__(self, entities: list[_Entity], aliases: list[_Alias], automaton: Any) -> None:
        self._entities = entities
        self._aliases = aliases
        self._automaton = automaton
        self._iter = automaton.iter if len(automaton) else None
        self._regex_entities = tuple(i for i, e in enumerate(entities) if e.pattern is not None)
        self._needs_post = any(e.require_entities or e.has_context or e.excludes for e in entities)
        self.entities = MappingProxyType({e.spec.id: e.spec for e in entities})

    # ---- compile ---------------------------------------------------------------------------------

    @classmethod
    def compile(cls, specs: Iterable[EntitySpec], *, cache_dir: Path | None = None) -> Watchlist:
        """Compile specs into a watchlist; raise WatchlistError on a bad spec.

        With ``cache_dir`` the compiled watchlist is pickled there, keyed by a hash of the specs and
        the compiler version, and reused on the next start (compiling 10,000 entities takes seconds).
        """
        specs = [s for s in specs if s.enabled]
        problems = []
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
            key = hashlib.sha256(repr((_FORMAT_VERSION, _dict_version(), specs)).encode()).hexdigest()
            cached = _load_cache(cache_dir, key)
            if cached is not None:
                return cached
        try:
            wl = cls._build(specs)
        finally:
            clear_caches()  # the word analyses are only needed while compiling
        if cache_dir is not None and key is not None:
            _save_cache(cache_dir, key, wl)
        return wl

    @classmethod
    def _build(cls, specs: list[EntitySpec]) -> Watchlist:
        entities = [_Entity(spec=s) for s in specs]
        by_ref: dict[str, int] = {}
        for i, s in enumerate(specs):
            by_ref.setdefault(s.id, i)
            by_ref.setdefault(s.name.casefold(), i)
        aliases: list[_Alias] = []
        # Payload per key: (length of the hit, targets). A target is (kind, index, entity, rule): kind
        # _ALIAS with the alias index, or _EXCLUDE/_CONTEXT with the entity index; rule 1 when the alias
        # has a case rule to check at the hit, 0 when any whole-word hit is a match. Keys go straight
        # into the automaton (no table of 60,000 strings at the peak of a big compile), and equal
        # payloads are shared: most forms of an alias have the same one.
        automaton = ahocorasick.Automaton()
        get, add_word = automaton.get, automaton.add_word
        shared: dict[Any, Any] = {}
        intern = shared.setdefault

        def add(form: str, kind: int, idx: int) -> None:
            if not form:
                return
            key = _key(form)
            if kind == _ALIAS:
                target = (kind, idx, aliases[idx].entity, int(_has_rule(aliases[idx])))
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
            payload = (len(key) - 2, targets)
            add_word(key, intern(payload, payload))

        for ei, (ent, s) in enumerate(zip(entities, specs, strict=True)):
            names = [s.name, *s.aliases]
            for alias in dict.fromkeys(a for a in names if a.strip()):
                # Not kept after use: the forms of 10,000 aliases are tens of MB, and a repeated alias is
                # cheap to recompute from the cached word analyses.
                af = alias_forms(alias, case_sensitive=s.case_sensitive)
                ai = len(aliases)
                aliases.append(
                    _Alias(
                        entity=ei,
                        alias=alias,
                        exact=frozenset(af.exact) if af.exact is not None else None,
                        cap_forms=frozenset(af.cap_forms),
                        upper_tokens=af.upper_tokens,
                        cap_all=af.cap_all,
                        # Context words (require_any) already tell the name from the noun.
                        common=af.common and not s.require_any,
                        adj_forms=af.adj_forms or None,
                    )
                )
                for f in af.forms:
                    add(f, _ALIAS, ai)
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
        return cls(entities, aliases, automaton)

    # ---- pickling (the on-disk cache) -----------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        pats = [(e.spec.regex if e.pattern is not None else None) for e in self._entities]
        ents = [
            _Entity(e.spec, e.require_entities, e.has_context, e.excludes, None)
            for e in self._entities
        ]
        return {"entities": ents, "aliases": self._aliases, "automaton": self._automaton, "patterns": pats}

    def __setstate__(self, state: dict[str, Any]) -> None:
        ents: list[_Entity] = state["entities"]
        for e, p in zip(ents, state["patterns"], strict=True):
            if p is not None:
                e.pattern = regex.compile(p.replace("ё", "е").replace("Ё", "Е"))
        Watchlist.__init__(self, ents, state["aliases"], state["automaton"])

    # ---- search ------------------------------------------------------------------------------------

    def find(self, text: str) -> list[Match]:
        """All mentions of enabled entities in ``text``, sorted by start (silent ones included).

        Applies word boundaries, case rules, ``exclude`` vetoes and ``require_any`` context, and drops
        a mention lying inside a longer one.
        """
        if not text:
            return []
        norm, low, edits = normalize_parts(text)
        cands: list[tuple[int, int, int, int]] = []  # start, end, entity, alias (-1 = regex)
        excl: list[tuple[int, int, int]] | None = None
        ctx: set[int] | None = None
        if self._iter is not None:
            # The automaton runs over " " + the text with every non-word character made a space + " ",
            # and every key has a space on both sides: hits are whole words only. The map keeps the
            # length, so offsets are shared with ``norm`` and ``low``.
            aliases = self._aliases
            size = len(low)
            for e, (length, targets) in self._iter(f" {_NON_WORD_SUB(' ', low)} "):
                # key[i + 1] is low[i]; the closing space of the hit is key[e], i.e. low[e - 1].
                end = e - 1
                start = end - length
                if (start and low[start - 1] > "\uffff" and low[start - 1].isalnum()) or (
                    end < size and low[end] > "\uffff" and low[end].isalnum()
                ):
                    continue  # an astral letter continues the word
                for kind, idx, ent, rule in targets:
                    if kind == _ALIAS:
                        if not rule or _case_ok(aliases[idx], norm, low, start, end, text, edits):
                            cands.append((start, end, ent, idx))
                    elif kind == _EXCLUDE:
                        if excl is None:
                            excl = []
                        excl.append((start, end, idx))
                    else:
                        if ctx is None:
                            ctx = set()
                        ctx.add(idx)
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
        if len(cands) > 1:
            cands.sort(key=_cand_order)
        out: list[Match] = []
        seen: set[tuple[int, int, int]] = set()
        n = Normalized(text, norm, norm, edits) if edits else None
        size = len(norm)
        entities = self._entities
        for i, (s, e, ei, ai) in enumerate(cands):
            if i:
                if (s, e, ei) in seen:
                    continue
                # A mention inside a longer one (Казахстан inside «Национальный банк Казахстана») is
                # part of that name, not a mention of its own.
                nested = False
                for j in range(i - 1, -1, -1):
                    s2, e2 = cands[j][0], cands[j][1]
                    if e2 >= e and (s2, e2) != (s, e):
                        nested = True
                        break
                if nested:
                    continue
            seen.add((s, e, ei))
            spec = entities[ei].spec
            # A form with an opening quote inside (НАК «Казатомпром) ends before the closing one;
            # include it so the surface is the whole name as written.
            if e < size and norm[e] in _CLOSE_QUOTES and _QUOTE_INSIDE.search(norm, s, e):
                e += 1
            os_, oe = n.span(s, e) if n is not None else (s, e)
            alias = self._aliases[ai].alias if ai >= 0 else "regex"
            out.append(Match(spec.id, spec.name, os_, oe, text[os_:oe], alias))
        return out

    # ---- introspection -----------------------------------------------------------------------------

    def explain(self, name_or_id: str) -> dict[str, list[str]]:
        """Alias → its generated surface forms (transliteration variants included) for one entity."""
        found = next((e for e in self._entities if e.spec.id == name_or_id), None)
        if found is None:
            key = name_or_id.casefold()
            found = next(
                (e for e in self._entities if e.spec.name.casefold() == key or entity_id(name_or_id) == e.spec.id),
                None,
            )
        if found is None:
            raise KeyError(name_or_id)
        # Recomputed on demand rather than kept: the forms of 10,000 entities would cost tens of MB.
        spec = found.spec
        out: dict[str, list[str]] = {}
        for alias in dict.fromkeys(a for a in (spec.name, *spec.aliases) if a.strip()):
            out[alias] = sorted(alias_forms(alias, case_sensitive=spec.case_sensitive).forms)
        if spec.regex is not None:
            out["regex"] = [spec.regex]
        return out

    @property
    def pattern_count(self) -> int:
        """Number of distinct surface forms in the automaton."""
        return len(self._automaton)


def _cand_order(c: tuple[int, int, int, int]) -> tuple[int, int, int]:
    return (c[0], -c[1], c[2])


def _has_rule(a: _Alias) -> bool:
    """Whether hits of the alias need ``_case_ok`` (most do not: any whole-word hit is a match)."""
    if a.exact is not None or a.cap_all or a.adj_forms is not None:
        return True
    return bool(a.cap_forms) or bool(a.upper_tokens)


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
    if a.upper_tokens:
        hit = norm[start:end]
        return all(t in hit for t in a.upper_tokens)
    return True


# Links: a scheme, www. or t.me/, or a dotted host followed by a path.
_URL = re.compile(r"(?:[a-z][a-z0-9+.-]*://|www\.|t\.me/)\S+|(?<![\w.])[\w-]+(?:\.[\w-]+)+/\S*")
_OPENERS = frozenset("«\"“„‘'‹#")
_SENTENCE_END = frozenset(".!?…\n\r\u2028\u2029")
_NEXT_WORD = re.compile(r"[ \t\u00a0]+([^\W\d_]+(?:-[^\W\d_]+)?)")


def _capital_is_evidence(text: str, start: int, end: int) -> bool:
    """Whether the capital of a hit marks a name: not at a sentence start, not in all-caps text.

    Used for aliases that are ordinary nouns (Мир, Рост): «Мир меняется», «МИР НА ПОРОГЕ…» are the
    noun; «карты «Мир»», «#Мир», «банк Рост» the name.
    """
    if start and text[start - 1] in _OPENERS:
        return True
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
