"""Text normalisation for matching, with a map back to offsets in the original text.

The matcher searches a normalised copy of each post; alerts must quote the post as it was, so every
normalised position maps back to the original. Normalisation is done in two layers:

1. *Edits* that change the length of the text (NFKC expansions, deleted invisible characters and
   combining marks, collapsed whitespace runs). They are found with one C-level regex scan; clean text
   has none and costs one scan. Each edit records ``orig[a:b] -> replacement``; offsets between edits
   shift linearly, so the map is a short list instead of one integer per character.
2. *Same-length* replacements (ё→е, hyphen look-alikes, Latin/Cyrillic homoglyphs inside mixed-script
   words). They never move offsets, so they cost the map nothing.

Speed: ``normalize_parts`` (the matcher's entry) first runs one gate scan (``_GATE``). Clean text
costs that scan, a double-space and a ё test and ``lower()``, with no edits. Otherwise
``_normalize_full`` scans once more for every special character and runs only the steps that have
work (a post with line breaks and emoji: the whitespace step, and removing the variation selectors).
``_normalize_stepwise`` is the plain reference both must agree with (tests/test_matching.py).
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_right
from collections.abc import Callable
from functools import lru_cache

__all__ = [
    "CYR_TO_LAT",
    "LAT_TO_CYR",
    "Normalized",
    "fold_homoglyphs",
    "is_word_char",
    "normalize",
    "normalize_parts",
    "normalize_plain",
]

# Invisible format characters: ZWSP/ZWNJ/ZWJ, LRM/RLM, bidi embeddings and isolates, word joiner and
# the invisible operators, BOM, soft hyphen, Mongolian vowel separator, variation selectors, tag
# characters. Deleting them is what lets «Газ\u200bпром» be found; they carry no meaning for matching.
_INVISIBLE_BMP = (
    "\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    "\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0"
)
_INVISIBLE = _INVISIBLE_BMP + "\U000e0000-\U000e007f\U000e0100-\U000e01ef"
# Combining marks left after NFKC (stress accents: «Роса́том»). NFKC composes й and ё first, so they
# survive; the accent on an already-composed letter has nowhere to go and is dropped.
_COMBINING = "\u0300-\u036f\u0483-\u0489\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f"


# Blocks holding every letter/digit NFKC changes (computed over all of Unicode; a test checks it).
# A class of a few ranges is scanned much faster than the exact class, so it serves as the gate.
_NFKC_BLOCKS = (
    (0x00AA, 0x00AA), (0x00B5, 0x00B5), (0x00BA, 0x00BA), (0x0132, 0x017F), (0x01C4, 0x01F3),
    (0x02B0, 0x02E4), (0x0374, 0x037A),
    (0x03D0, 0x03F9), (0x0587, 0x0587), (0x0675, 0x0678), (0x0958, 0x095F), (0x09DC, 0x09DF),
    (0x0A33, 0x0A5E), (0x0B5C, 0x0B5D), (0x0E33, 0x0E33), (0x0EB3, 0x0EDD), (0x0F43, 0x0F69),
    (0x10FC, 0x10FC), (0x1D2C, 0x1DBF), (0x1E9A, 0x1E9B), (0x1F71, 0x1FFB), (0x2071, 0x209C),
    (0x2102, 0x217F), (0x2C7C, 0x2C7D), (0x2D6F, 0x2D6F), (0x3038, 0x303A), (0x309F, 0x309F),
    (0x30FF, 0x318E), (0xA69C, 0xA69D), (0xA770, 0xA770), (0xA7F2, 0xA7F9), (0xAB5C, 0xAB69),
    (0xF900, 0xFDFB), (0xFE70, 0xFFDC), (0x10781, 0x107BA), (0x1D400, 0x1D7FF), (0x1EE00, 0x1EEBB),
    (0x1FBF0, 0x1FBF9), (0x2F800, 0x2FA1D),
)  # fmt: skip


def _nfkc_letter_class() -> str:
    """Character-class body of the letters and digits that NFKC changes (fullwidth, math bold, ligatures).

    Only letters and digits matter for names; punctuation NFKC would change («…», «№», «²») is left
    alone so that ordinary posts keep the fast path. Scanning for these with one C-level character
    class is what keeps clean text cheap.
    """
    ranges: list[tuple[int, int]] = []
    for lo, hi in _NFKC_BLOCKS:
        for cp in range(lo, hi + 1):
            ch = chr(cp)
            if 0xD800 <= cp <= 0xDFFF or unicodedata.category(ch)[0] not in "LN":
                continue
            if unicodedata.category(ch) == "No" or unicodedata.is_normalized("NFKC", ch):
                continue
            if ranges and ranges[-1][1] == cp - 1:
                ranges[-1] = (ranges[-1][0], cp)
            else:
                ranges.append((cp, cp))
    parts = []
    for lo, hi in ranges:
        parts.append(re.escape(chr(lo)) if lo == hi else f"{re.escape(chr(lo))}-{re.escape(chr(hi))}")
    return "".join(parts)


def _class_body(ranges: list[tuple[int, int]]) -> str:
    return "".join(re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in ranges)


def _runs(pred: Callable[[str], bool], lo: int, hi: int) -> list[tuple[int, int]]:
    """Ranges of code points in [lo, hi) for which ``pred(chr(cp))`` holds (surrogates skipped)."""
    out: list[tuple[int, int]] = []
    for cp in range(lo, hi):
        if 0xD800 <= cp <= 0xDFFF or not pred(chr(cp)):
            continue
        if out and out[-1][1] == cp - 1:
            out[-1] = (out[-1][0], cp)
        else:
            out.append((cp, cp))
    return out


# Each kind of length-changing span has its own single-class pattern: a lone character class is
# scanned at C speed, an alternation of classes is several times slower.
_INV_COMB = re.compile(rf"[{_INVISIBLE}{_COMBINING}]+")
_NFKC_LETTERS = re.compile(rf"[{_nfkc_letter_class()}]+")
# Classes are spelled out as BMP ranges, which ``re`` tests with one table lookup per character
# (``\\s`` tests Unicode properties, and astral ranges are tested one by one for every character:
# both several times slower). Astral characters, emoji among them, enter by one range and a
# lookbehind keeps the right ones.
_NFKC_GATE = re.compile(
    f"[{_class_body([b for b in _NFKC_BLOCKS if b[1] <= 0xFFFF])}\U00010000-\U0010ffff]"
    f"(?:(?<=[{_class_body([b for b in _NFKC_BLOCKS if b[1] <= 0xFFFF])}])"
    f"|(?<=[{_class_body([b for b in _NFKC_BLOCKS if b[0] > 0xFFFF])}]))"
)
_WS = _class_body(_runs(str.isspace, 0, 0x3001))  # (no whitespace after U+3000)
_WS_RUN = re.compile(f"[{_WS}][{_WS}]+")
_ACCENTS = re.compile("[\u0300-\u036f\u0483-\u0489]")
_WS_ONE = re.compile(f"[{_class_body(_runs(lambda c: c.isspace() and c != ' ', 0, 0x3001))}]")
_DELETE = re.compile(rf"[{_INVISIBLE}{_COMBINING}]+")
_SPACES = re.compile(r"\s+")

# Hyphen look-alikes become "-" so «титано‐магниевый» (U+2010) meets the alias; dashes (– —) are
# punctuation between words and stay as they are.
_HYPHENS = str.maketrans({"\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2212": "-", "\ufe63": "-"})
_HYPHEN_CHARS = "\u2010\u2011\u2012\u2212\ufe63"

# Latin ↔ Cyrillic letters that look the same. Only applied inside words that mix the two scripts,
# so real Latin names (CNNC, Telf) and real Cyrillic words are never touched.
LAT_TO_CYR: dict[str, str] = {
    "A": "А", "B": "В", "C": "С", "E": "Е", "H": "Н", "K": "К", "M": "М", "O": "О", "P": "Р",
    "T": "Т", "X": "Х", "Y": "У", "a": "а", "c": "с", "e": "е", "o": "о", "p": "р", "x": "х",
    "y": "у", "k": "к", "i": "і", "I": "І", "u": "и", "n": "п", "r": "г", "m": "т",
}  # fmt: skip
CYR_TO_LAT: dict[str, str] = {
    "А": "A", "В": "B", "С": "C", "Е": "E", "Н": "H", "К": "K", "М": "M", "О": "O", "Р": "P",
    "Т": "T", "Х": "X", "У": "Y", "а": "a", "с": "c", "е": "e", "о": "o", "р": "p", "х": "x",
    "у": "y", "к": "k", "і": "i", "І": "I", "ѕ": "s", "ј": "j",
}  # fmt: skip
# Lower-case u/n/r/m → и/п/г/т are lookalikes only in cursive; they are folded only when the word
# cannot become single-script otherwise (see fold_homoglyphs), never on their own.
_WEAK_LAT = frozenset("unrm")
_LAT_TO_CYR_T = str.maketrans(LAT_TO_CYR)
_CYR_TO_LAT_T = str.maketrans(CYR_TO_LAT)
_LATIN_RUN = re.compile(r"[A-Za-z]+")


# The one gate of the fast path: a character some step of ``normalize`` would change. Non-printable
# characters of the BMP (whitespace other than the plain space, control and format characters),
# invisible characters and combining marks, the blocks holding NFKC-changed letters, hyphen
# look-alikes, a variation selector right after a word character (after an emoji it is harmless), and
# a Latin letter touching a Cyrillic one (a mixed-script word). The pattern starts with one character
# class, so ``re`` scans for its first character at C speed and tries the conditions only there. ё,
# double spaces and lower-casing are cheaper as plain ``str`` operations. Text with no hit is already
# normal (a test checks that the fast and the full path agree).
_VS = "\ufe00-\ufe0f"
_NON_PRINTABLE_BMP = _class_body(_runs(lambda c: not c.isprintable(), 0, 0x10000))
_GATE_BMP = (
    _NON_PRINTABLE_BMP + _INVISIBLE_BMP.replace(_VS, "") + _COMBINING + _HYPHEN_CHARS
    + _class_body([b for b in _NFKC_BLOCKS if b[1] <= 0xFFFF])
)  # fmt: skip
# Astral characters the steps change (tag characters, supplementary variation selectors, math and other
# NFKC letters); emoji are astral too and must not leave the fast path, so the first class takes every
# astral character with one range (a class with many astral ranges is scanned several times slower) and
# the condition sorts them out.
_GATE_ASTRAL = "\U000e0000-\U000e007f" + _class_body([b for b in _NFKC_BLOCKS if b[0] > 0xFFFF])
_GATE = re.compile(
    f"[{_GATE_BMP}{_VS}A-Za-z\U00010000-\U0010ffff]"
    f"(?:(?<=[{_GATE_BMP}])|(?<=[{_GATE_ASTRAL}])|(?<=\\w[{_VS}\U000e0100-\U000e01ef])"
    f"|(?<=[\u0400-\u04ff][A-Za-z])|(?<=[A-Za-z])(?=[\u0400-\u04ff]))"
)
# One invisible character or combining mark. ``_INV_COMB`` says the same, but its astral ranges make
# ``re`` test every character against a list of ranges; here the first class takes all astral
# characters with one range and the condition keeps the right ones (emoji are astral and common).
_INV_COMB_BMP = _INVISIBLE_BMP + _COMBINING
_INV_COMB_ONE = re.compile(
    f"[{_INV_COMB_BMP}\U00010000-\U0010ffff](?:(?<=[{_INV_COMB_BMP}])|(?<=[\U000e0000-\U000e007f\U000e0100-\U000e01ef]))"
)
_HYPHEN_SEARCH = re.compile(f"[{_HYPHEN_CHARS}]").search
# The gate's characters, variation selectors included wherever they are: what ``_normalize_full``
# scans for to learn which steps have work.
_SPECIAL = re.compile(
    f"[{_GATE_BMP}{_VS}A-Za-z\U00010000-\U0010ffff]"
    f"(?:(?<=[{_GATE_BMP}{_VS}])|(?<=[{_GATE_ASTRAL}\U000e0100-\U000e01ef])"
    f"|(?<=[\u0400-\u04ff][A-Za-z])|(?<=[A-Za-z])(?=[\u0400-\u04ff]))"
)
_VS_SEARCH = re.compile(f"[{_VS}\U000e0100-\U000e01ef]").search
# A Latin letter touching a Cyrillic one: the only place homoglyph folding has work to do.
_MIXED = re.compile("[A-Za-z](?:(?<=[\u0400-\u04ff].)|(?=[\u0400-\u04ff]))")


def _is_cyr(ch: str) -> bool:
    return "\u0400" <= ch <= "\u04ff"


def _is_lat(ch: str) -> bool:
    return ("a" <= ch <= "z") or ("A" <= ch <= "Z")


def _fold_word(word: str) -> str:
    """Fold one mixed-script word to a single script, preferring a result with no foreign letters."""
    lat = [c for c in word if _is_lat(c)]
    cyr = [c for c in word if _is_cyr(c)]
    # Strong look-alikes only first; the weak cursive ones (u, n, r, m) only as a last resort.
    can_cyr = all(c in LAT_TO_CYR and c not in _WEAK_LAT for c in lat)
    can_lat = all(c in CYR_TO_LAT for c in cyr)
    if can_cyr and (not can_lat or len(cyr) >= len(lat)):
        return word.translate(_LAT_TO_CYR_T)
    if can_lat:
        return word.translate(_CYR_TO_LAT_T)
    if all(c in LAT_TO_CYR for c in lat):
        return word.translate(_LAT_TO_CYR_T)
    # Neither script can absorb the other: fold the look-alikes towards the majority script.
    if len(cyr) >= len(lat):
        return "".join(LAT_TO_CYR.get(c, c) if c not in _WEAK_LAT else c for c in word)
    return word.translate(_CYR_TO_LAT_T)


def fold_homoglyphs(text: str) -> str:
    """Fold Latin/Cyrillic look-alike letters inside mixed-script words; length is preserved."""
    if text.isascii() or _MIXED.search(text) is None:
        return text
    pieces: list[str] | None = None
    pos = 0
    n = len(text)
    # Latin runs are few in Russian text and an ASCII class is scanned fast; a mixed word is a Latin
    # run touching a Cyrillic letter.
    for m in _LATIN_RUN.finditer(text):
        a, b = m.span()
        if a < pos:
            continue
        if not ((a > 0 and "\u0400" <= text[a - 1] <= "\u04ff") or (b < n and "\u0400" <= text[b] <= "\u04ff")):
            continue
        while a > pos and text[a - 1].isalnum():
            a -= 1
        while b < n and text[b].isalnum():
            b += 1
        if pieces is None:
            pieces = []
        pieces.append(text[pos:a])
        pieces.append(_fold_word(text[a:b]))
        pos = b
    if pieces is None:
        return text
    pieces.append(text[pos:])
    return "".join(pieces)


def is_word_char(ch: str) -> bool:
    """True for characters that continue a word: letters (any script, Kazakh included), digits, "_"."""
    return ch.isalnum() or ch == "_"


@lru_cache(maxsize=4096)
def _clean(span: str) -> str:
    """Replacement for one special span: NFKC, then drop invisibles and marks, whitespace → one space."""
    out = unicodedata.normalize("NFKC", span)
    out = _DELETE.sub("", out)
    if out and (out.isspace() or " " in out or not out.isprintable()):
        out = _SPACES.sub(" ", out)
    return out


class Normalized:
    """A normalised text plus what is needed to map its offsets back to the original.

    ``text`` keeps case (the case rules look at it); ``lower`` is ``text.lower()`` with the same
    length, used for the automaton. ``edits`` is a sorted tuple of ``(norm_start, norm_len,
    orig_start, orig_end)``: the normalised characters ``[norm_start, norm_start + norm_len)`` stand
    for ``original[orig_start:orig_end]``. (A plain slotted class: it is built once per post, and a
    frozen dataclass's __init__ costs more than the rest of the fast path.)
    """

    __slots__ = ("_keys", "edits", "lower", "original", "text")

    def __init__(
        self, original: str, text: str, lower: str, edits: tuple[tuple[int, int, int, int], ...] = ()
    ) -> None:
        self.original = original
        self.text = text
        self.lower = lower
        self.edits = edits
        self._keys = tuple(e[0] for e in edits) if edits else ()

    def _edit_at(self, i: int) -> tuple[int, int, int, int] | None:
        # The last edit starting at or before i; later ones cannot affect position i.
        k = bisect_right(self._keys, i) - 1
        return self.edits[k] if k >= 0 else None

    def orig_start(self, i: int) -> int:
        """Original offset of the normalised character at ``i``."""
        e = self._edit_at(i) if self.edits else None
        if e is None:
            return i
        ns, nl, os_, oe = e
        return os_ if i < ns + nl else oe + (i - ns - nl)

    def orig_end(self, j: int) -> int:
        """Original offset just after the normalised character at ``j - 1``."""
        e = self._edit_at(j - 1) if self.edits and j > 0 else None
        if e is None:
            return j
        ns, nl, _os, oe = e
        return oe if j - 1 < ns + nl else oe + (j - ns - nl)

    def span(self, start: int, end: int) -> tuple[int, int]:
        """Map a normalised ``[start, end)`` to the original text."""
        return self.orig_start(start), self.orig_end(end)


def normalize(text: str) -> Normalized:
    """Normalise ``text`` for matching and keep an offset map back to it.

    Steps: NFKC for letters and digits (fullwidth, math alphanumerics, ligatures), removal of
    zero-width/invisible characters, soft hyphens and stray combining marks, whitespace runs → one
    space, ё→е, hyphen look-alikes → "-", homoglyph folding inside mixed-script words, and a
    lower-cased copy of the same length. Clean text (no hit of one C-level gate scan) costs that scan,
    a ё test and ``lower()``; every step of the full path is gated by a C-level test of its own.
    """
    norm, low, edits = normalize_parts(text)
    return Normalized(text, norm, low, edits)


def normalize_parts(text: str) -> tuple[str, str, tuple[tuple[int, int, int, int], ...]]:
    """``(text, lower, edits)`` of ``normalize(text)`` without building the object (the matcher's hot path)."""
    if "  " in text:
        return _normalize_full(text)
    hit = _GATE.search(text)
    if hit is not None:
        return _normalize_full(text, hit.start())
    # Nothing but ё can change: the offsets are the original ones, no edits to record.
    low = text.lower()
    if "ё" in low:
        low = low.replace("ё", "е")
        text = text.replace("ё", "е").replace("Ё", "Е")
    if len(low) != len(text):
        low = "".join(c.lower()[:1] or c for c in text)
    return text, low, ()


def _normalize_stepwise(text: str) -> tuple[str, str, tuple[tuple[int, int, int, int], ...]]:
    """The reference: every step on its own, each behind its own C-level test (tests compare against it)."""
    edits: list[tuple[int, int, int, int]] = []
    norm = text
    if text.isascii():
        if not text.isprintable() or "  " in text:
            if _WS_RUN.search(text):
                norm = _apply_edits(text, [m.span() for m in _WS_RUN.finditer(text)], edits)
            norm = _WS_ONE.sub(" ", norm)
    else:
        spans: list[tuple[int, int]] = []
        printable = text.isprintable()
        # Invisible format characters are non-printable; stress marks are printable, so they get
        # their own narrow gate (a variation selector after an emoji is harmless and left alone).
        if not printable or _ACCENTS.search(text):
            spans.extend(_inv_comb_spans(text))
        if (
            not unicodedata.is_normalized("NFKC", text)
            # «…» and «№» are the usual reasons a Russian post is not NFKC; they are not letters.
            and not unicodedata.is_normalized("NFKC", text.replace("…", "").replace("№", ""))
            and _NFKC_GATE.search(text)
        ):
            spans.extend(m.span() for m in _NFKC_LETTERS.finditer(text))
        if not printable or "  " in text:
            spans.extend(m.span() for m in _WS_RUN.finditer(text))
        if spans:
            spans.sort(key=_first)
            norm = _apply_edits(text, spans, edits)
        if not printable:
            norm = _WS_ONE.sub(" ", norm)
        if "ё" in norm or "Ё" in norm:
            norm = norm.replace("ё", "е").replace("Ё", "Е")
        if _HYPHEN_SEARCH(norm):
            norm = norm.translate(_HYPHENS)
        norm = fold_homoglyphs(norm)
    low = norm.lower()
    if len(low) != len(norm):
        # A handful of characters lower-case to two (İ); keep one so offsets stay shared.
        low = "".join(c.lower()[:1] or c for c in norm)
    return norm, low, tuple(edits) if edits else ()


def _normalize_full(text: str, start: int = 0) -> tuple[str, str, tuple[tuple[int, int, int, int], ...]]:
    """Text the gate stopped: one scan says which steps have work, and only those run.

    Same output as ``_normalize_stepwise``; a post with line breaks and emoji (most Telegram posts)
    then costs a few scans instead of a dozen. ``start`` is where the gate stopped: before it only a
    variation selector after a non-word character (an emoji) can be special.
    """
    if text.isascii():
        return _normalize_stepwise(text)
    kinds = _K_INV if start and _VS_SEARCH(text, 0, start) else 0
    ws_at: list[int] = []
    ws_chars: set[str] = set()
    for m in _SPECIAL.finditer(text, start):
        c = m.group()
        k = _kind(c)
        kinds |= k
        if k & _K_WS:
            ws_at.append(m.start())
            ws_chars.add(c)
    edits: list[tuple[int, int, int, int]] = []
    norm = text
    spans: list[tuple[int, int]] = []
    if kinds & _K_INV and (not text.isprintable() or _ACCENTS.search(text)):
        spans.extend(_inv_comb_spans(text))
    if kinds & _K_NFKC:
        spans.extend(m.span() for m in _NFKC_LETTERS.finditer(text))
    if "  " in text:
        spans.extend(m.span() for m in _WS_RUN.finditer(text))
    elif ws_at:
        # No double space: every whitespace run of two or more holds one of the characters found.
        n = len(text)
        end = -1
        for i in ws_at:
            if i < end:
                continue
            a, end = i, i + 1
            while a > 0 and text[a - 1].isspace():
                a -= 1
            while end < n and text[end].isspace():
                end += 1
            if end - a >= 2:
                spans.append((a, end))
    if spans:
        spans.sort(key=_first)
        norm = _apply_edits(text, spans, edits)
    for c in ws_chars:
        norm = norm.replace(c, " ")
    if "ё" in norm or "Ё" in norm:
        norm = norm.replace("ё", "е").replace("Ё", "Е")
    if kinds & _K_HYPHEN:
        norm = norm.translate(_HYPHENS)
    if kinds & _K_LATIN or spans:
        # (deleting an invisible character or NFKC can bring a Latin letter next to a Cyrillic one)
        norm = fold_homoglyphs(norm)
    low = norm.lower()
    if len(low) != len(norm):
        low = "".join(c.lower()[:1] or c for c in norm)
    return norm, low, tuple(edits) if edits else ()


_K_WS, _K_INV, _K_NFKC, _K_HYPHEN, _K_LATIN = 1, 2, 4, 8, 16


@lru_cache(maxsize=1024)
def _kind(c: str) -> int:
    """Which steps of the normalisation a character found by ``_SPECIAL`` asks for (bit set)."""
    cp = ord(c)
    k = 0
    if c.isspace():
        k |= _K_WS
    if _INV_COMB.match(c):
        k |= _K_INV
    if any(lo <= cp <= hi for lo, hi in _NFKC_BLOCKS):
        k |= _K_NFKC
    if c in _HYPHEN_CHARS:
        k |= _K_HYPHEN
    if c.isascii() and c.isalpha():
        k |= _K_LATIN
    return k


def _first(span: tuple[int, int]) -> int:
    return span[0]


def _inv_comb_spans(text: str) -> list[tuple[int, int]]:
    """Runs of invisible characters and combining marks (what ``_INV_COMB.finditer`` finds, faster)."""
    spans: list[tuple[int, int]] = []
    for m in _INV_COMB_ONE.finditer(text):
        a, b = m.span()
        if spans and spans[-1][1] == a:
            spans[-1] = (spans[-1][0], b)
        else:
            spans.append((a, b))
    return spans


def _apply_edits(text: str, spans: list[tuple[int, int]], edits: list[tuple[int, int, int, int]]) -> str:
    """Replace the given special spans of ``text`` (sorted); record the edits (see Normalized)."""
    pieces: list[str] = []
    pos = 0
    npos = 0
    for a, b in spans:
        if a < pos:
            continue  # overlaps a span already replaced (adjacent kinds)
        span = text[a:b]
        if span[0] in _COMBINING_SET and a > pos and not text[a - 1].isspace():
            # A combining mark composes with the letter before it (и + ̆ → й): re-normalise both.
            a -= 1
            span = text[a:b]
        rep = _clean(span)
        if a > pos:
            pieces.append(text[pos:a])
            npos += a - pos
        pieces.append(rep)
        if len(rep) != b - a:
            # Same-length replacements keep the linear map; only length changes need an edit.
            edits.append((npos, len(rep), a, b))
        npos += len(rep)
        pos = b
    if not pieces:
        return text
    pieces.append(text[pos:])
    return "".join(pieces)


_COMBINING_SET = frozenset(
    chr(c)
    for lo, hi in ((0x300, 0x36F), (0x483, 0x489), (0x1AB0, 0x1AFF), (0x1DC0, 0x1DFF), (0x20D0, 0x20FF),
                   (0xFE20, 0xFE2F))
    for c in range(lo, hi + 1)
)


def normalize_plain(text: str) -> str:
    """The case-preserving normalised text only (for aliases and phrases at compile time)."""
    return normalize(text).text
