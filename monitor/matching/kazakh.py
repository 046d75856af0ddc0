"""Kazakh word forms of a name: the endings that follow it, and the letters folded to match Russian spellings.

Kazakh is agglutinative: a name takes its endings unchanged after it (Тоқаев → Тоқаевтың, Тоқаевқа,
Тоқаевпен; Өскемен → Өскеменде; Астана → Астанадағы), stacked as plural + possessive + case. Which
variant of an ending follows depends on the last sound of the name (vowel; the sonorants р й у; л; the
nasals м н ң; з ж; a voiceless or final voiced stop) and on vowel harmony (back а о ұ ы, front ә е ө ү
і). Harmony is not decided here: loanwords and Russian-type surnames break it in the press (банктің,
Медведевке, Тоқаевқа), so both variants are accepted; the consonant class is what keeps the set small.

The matcher does not store every form: a name's nominative is put in the automaton open on the right
(«тоқаев» followed by more letters), and the rest of the word is looked up in the ending set of the
name's class. The ending is checked on the text as written (not letter-folded), so a Kazakh ending
needs its Kazakh letters: «Беловка» (a village) is not a dative of Белов, «Беловқа» is.

Letter folding (:data:`KK_FOLD`) maps the consonants Kazakh adds to Cyrillic to the Russian letters
they are spelled with in Russian (қ→к, ғ→г, ң→н, һ→х). The automaton sees folded text and folded keys,
so «Тоқаев» in a post meets the alias «Токаев» and the reverse.
"""

from __future__ import annotations

import itertools
from functools import lru_cache

__all__ = ["KK_FOLD", "KK_FOLDED", "KK_LETTERS", "ending_class", "endings", "kk_fold"]

KK_LETTERS = "әғқңөұүһіӘҒҚҢӨҰҮҺІ"
# Only the consonants are folded: Russian spells them the same way (Тоқаев is Токаев, Ақорда is
# Акорда), while a Kazakh vowel spelled with a Russian one is another spelling of the name (Оскемен
# for Өскемен), which a user adds as an alias if wanted.
KK_FOLDED = "ғқңһҒҚҢҺ"
KK_FOLD = str.maketrans(KK_FOLDED, "гкнхГКНХ")

_VOWELS = frozenset("аәеёиоөуұүыіэюя")
# Consonant classes of the last sound of a stem.
V, R, L, N, Z, K = range(6)  # vowel; р й у; л; м н ң; з ж; voiceless (and final б в г д ғ)
_CLASS_OF = {**{c: R for c in "рйу"}, "л": L, **{c: N for c in "мнң"}, **{c: Z for c in "зж"}}


def ending_class(stem: str) -> int | None:
    """The class of a (lower-case) stem's last sound, or None when it ends in no letter."""
    s = stem.rstrip("ьъ")
    if not s or not s[-1].isalpha():
        return None
    c = s[-1]
    if c in _VOWELS and c != "у":
        return V
    if c == "у" and len(s) > 1 and s[-2] not in _VOWELS:
        return V  # «у» after a consonant is a vowel (Ақтау has it after a vowel: a sonorant)
    return _CLASS_OF.get(c, K)


# Case endings by class, back and front variants side by side.
_GEN = {V: ("ның", "нің"), N: ("ның", "нің"), R: ("дың", "дің"), L: ("дың", "дің"), Z: ("дың", "дің"),
        K: ("тың", "тің")}  # fmt: skip
_DAT = {V: ("ға", "ге"), R: ("ға", "ге"), L: ("ға", "ге"), N: ("ға", "ге"), Z: ("ға", "ге"), K: ("қа", "ке")}
_LOC = {V: ("да", "де"), R: ("да", "де"), L: ("да", "де"), N: ("да", "де"), Z: ("да", "де"), K: ("та", "те")}
_ABL = {V: ("дан", "ден"), R: ("дан", "ден"), L: ("дан", "ден"), N: ("нан", "нен"), Z: ("дан", "ден"),
        K: ("тан", "тен")}  # fmt: skip
_ACC = {V: ("ны", "ні"), R: ("ды", "ді"), L: ("ды", "ді"), N: ("ды", "ді"), Z: ("ды", "ді"), K: ("ты", "ті")}
_INS = {V: ("мен",), R: ("мен",), L: ("мен",), N: ("мен",), Z: ("бен", "мен"), K: ("пен",)}
_PLU = {V: ("лар", "лер"), R: ("лар", "лер"), L: ("дар", "дер"), N: ("дар", "дер"), Z: ("дар", "дер"),
        K: ("тар", "тер")}  # fmt: skip
_POSS = {V: ("сы", "сі")}  # after a consonant: ы / і
# Endings after the 3rd-person possessive (Астанасының, Астанасына, Астанасында, Астанасын ...).
_AFTER_POSS = ("ның", "нің", "на", "не", "нда", "нде", "нан", "нен", "н", "мен", "ндағы", "ндегі")


def _cases(cls: int) -> list[str]:
    out = [*_GEN[cls], *_DAT[cls], *_LOC[cls], *_ABL[cls], *_ACC[cls], *_INS[cls]]
    # Locative + -ғы/-гі, the attributive "in X": Астанадағы, Өскемендегі, Шымкенттегі.
    out += [_LOC[cls][0] + "ғы", _LOC[cls][1] + "гі"]
    return out


@lru_cache(maxsize=8)
def endings(cls: int) -> frozenset[str]:
    """Every ending (stacked plural + possessive + case, both harmonies) that may follow a stem of ``cls``."""
    out: set[str] = set(_cases(cls))
    poss = _POSS.get(cls, ("ы", "і"))
    plural = _PLU[cls]
    out.update(poss)
    out.update(p + a for p, a in itertools.product(poss, _AFTER_POSS))
    # 1st/2nd person possessives (Қазақстаным, Қазақстанымыз, Қазақстаның), alone or with a case
    # ending (Қазақстанымызда); the case follows the possessive's last sound.
    for own in (("м",) if cls == V else ("ым", "ім")) + (("мыз", "міз") if cls == V else ("ымыз", "іміз")):
        out.add(own)
        out.update(own + e for e in _cases(ending_class(own) or K))
    for pl in plural:
        out.add(pl)
        # after -лар/-дар/-тар the stem ends in р: that class's cases; then the possessive -ы/-і
        out.update(pl + e for e in _cases(R))
        for p in ("ы", "і"):
            out.add(pl + p)
            out.update(pl + p + a for a in _AFTER_POSS)
    return frozenset(out)


def kk_fold(text: str) -> str:
    """Fold Kazakh letters to the Russian letters typed in their place (same length)."""
    return text.translate(KK_FOLD)
