"""One person per entity: which of an entity's full-name aliases name another person of its surname.

A person entity is one person. An alias that gives the entity's surname with another first name
(«Оливер Кан» under «Наото Кан», «Алла Бут» under «Виктор Бут») names somebody else: the watchlist does
not match it for the entity, ``config check`` and ``match`` warn about it, and the matcher treats that
first name before the surname as "another person of the surname". Spellings of one first name
(Беньямин/Биньямин, Нурсултан/Нұрсұлтан, Джо/Джозеф, Билл/Уильям) are the same person.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from monitor.matching.forms import AliasForms, alias_forms, clear_caches

__all__ = ["other_person_aliases", "other_persons", "same_given_name", "same_surname", "split_people"]

# Comparing names only: Kazakh letters as the Russian ones typed for them, and the letters that
# transcriptions swap (й/и, ы/и, э/е, y/i) made one.
_NAME_FOLD = str.maketrans({
    "ә": "а", "ғ": "г", "қ": "к", "ң": "н", "ө": "о", "ұ": "у", "ү": "у", "һ": "х", "і": "и", "ё": "е",
    "й": "и", "ы": "и", "э": "е", "ь": None, "ъ": None, "-": None, " ": None, "y": "i",
})  # fmt: skip

# Short and full forms of one first name that no spelling rule relates (Билл is Уильям Клинтон).
_VARIANT_GROUPS = (
    ("уильям", "вильям", "уильиам", "билл", "билли"), ("роберт", "боб", "бобби"), ("ричард", "дик"),
    ("джеймс", "джим", "джимми"), ("эдвард", "тед", "тедди", "эд"), ("элизабет", "лиз", "бетти"),
    ("маргарет", "мэгги", "пегги"), ("кэтрин", "кейт", "кэти"), ("иосиф", "осип"),
    ("александр", "саша", "шура"), ("александра", "саша"), ("алексей", "леша", "алеша"),
    ("владимир", "вова", "володя"), ("дмитрий", "дима", "митя"), ("михаил", "миша"),
    ("николай", "коля"), ("сергей", "сережа"), ("евгений", "женя"), ("евгения", "женя"),
    ("анатолий", "толя"), ("екатерина", "катя"), ("елена", "лена"), ("мария", "маша"),
    ("татьяна", "таня"), ("наталья", "наталия", "наташа"), ("ольга", "оля"), ("анна", "аня"),
    ("william", "bill", "billy"), ("robert", "bob", "bobby"), ("richard", "dick"), ("james", "jim"),
    ("edward", "ted", "ed"), ("elizabeth", "liz", "beth"),
)  # fmt: skip


_DOUBLE = re.compile(r"(.)\1+")


def _key(name: str) -> str:
    # (zh/j and kh/h are one letter in two romanisations; doubled letters are spelt single as often)
    k = name.lower().translate(_NAME_FOLD).replace("zh", "j").replace("kh", "h")
    return _DOUBLE.sub(r"\1", k)


_CANON: dict[str, frozenset[str]] = {}
for _group in _VARIANT_GROUPS:
    for _n in _group:
        _CANON[_key(_n)] = _CANON.get(_key(_n), frozenset()) | {_key(x) for x in _group}


def _distance(a: str, b: str, limit: int) -> int:
    """Levenshtein distance of ``a`` and ``b``, or ``limit + 1`` once it is known to exceed ``limit``."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        if min(cur) > limit:
            return limit + 1
        prev = cur
    return prev[-1]


def same_given_name(a: str, b: str) -> bool:
    """Whether two first names (any case) are spellings of one name.

    Equal after folding Kazakh letters and й/и, ы/и, э/е (Нұрсұлтан, Нурсултан); a known short form
    (Билл/Уильям, Саша/Александр); one a prefix of the other of at least three letters (Джо/Джозеф,
    Алекс/Александр); or the same first letter and one edit apart (two for names of seven letters or
    more: Беньямин/Биньямин, Kassym-Jomart/Kasym-Zhomart).
    """
    x, y = _key(a), _key(b)
    if x == y:
        return True
    if not x or not y:
        return False
    if y in _CANON.get(x, ()):
        return True
    if x[0] != y[0]:
        return False
    if min(len(x), len(y)) >= 3 and (x.startswith(y) or y.startswith(x)):
        return True
    limit = 2 if max(len(x), len(y)) >= 7 else 1
    return _distance(x, y, limit) <= limit


# A woman's form of a Russian-type surname and the man's (Назарбаева, Назарбаев): one family name.
_FEMININE = (("ская", "ский"), ("цкая", "цкий"), ("ова", "ов"), ("ева", "ев"), ("ина", "ин"), ("ына", "ын"))


def _surname_key(name: str) -> str:
    k = name.lower().replace("ё", "е")
    for fem, masc in _FEMININE:
        if k.endswith(fem) and len(k) > len(fem) + 1:
            k = k[: -len(fem)] + masc
            break
    return _key(k)


def same_surname(a: str, b: str) -> bool:
    """Whether two surnames (any case) are one family name: equal, or the woman's and the man's form."""
    return _surname_key(a) == _surname_key(b)


def _other(af: AliasForms, own: AliasForms) -> bool:
    """Whether a person alias names another person than the entity's own person (same surname)."""
    assert af.person is not None and own.person is not None
    if not same_surname(af.person[1], own.person[1]):
        return False  # another surname altogether (a maiden name, a pseudonym): the user's call
    if not same_given_name(af.person[0], own.person[0]):
        return True
    # One-letter-apart names of two genders are two people (Юлий and Юлия Ким, Александр and Александра).
    return _key(af.person[0]) != _key(own.person[0]) and None not in (af.gender, own.gender) and af.gender != own.gender


def split_people(
    name: str, people: Sequence[tuple[str, AliasForms]]
) -> tuple[list[tuple[str, AliasForms]], list[tuple[str, AliasForms]]]:
    """(the entity's own person aliases, aliases naming another person of its surname).

    The own person is the entity's name when that is a person's name, else its first person alias.
    """
    if len(people) < 2:
        return list(people), []
    own = next((af for alias, af in people if alias.strip() == name.strip()), people[0][1])
    mine: list[tuple[str, AliasForms]] = []
    others: list[tuple[str, AliasForms]] = []
    for alias, af in people:
        (others if af is not own and _other(af, own) else mine).append((alias, af))
    return mine, others


def other_person_aliases(name: str, aliases: Iterable[str]) -> list[tuple[str, str]]:
    """(alias, the entity's own person name) for every alias naming another person of the surname.

    Cheap for the usual watchlist: the names are analysed only when two of them end in one surname.
    """
    names = list(dict.fromkeys(a.strip() for a in (name, *aliases) if a.strip()))
    by_last: dict[str, list[str]] = {}
    for n in names:
        words = n.split()
        if 2 <= len(words) <= 4:
            by_last.setdefault(_surname_key(words[-1]), []).append(n)
    if all(len(v) < 2 for v in by_last.values()):
        return []
    people = []
    for n in names:
        if 2 <= len(n.split()) <= 4:
            af = alias_forms(n)
            if af.person is not None:
                people.append((n, af))
    mine, others = split_people(name.strip(), people)
    if not others:
        return []
    own = next((a for a, _ in mine if a == name.strip()), mine[0][0])
    return [(alias, own) for alias, _ in others]


def other_persons(entities: Iterable[tuple[str, Sequence[str]]]) -> list[tuple[int, str, str, str]]:
    """(entity index, entity name, alias, own person name) for every alias naming another person.

    ``entities`` are (name, aliases) pairs; this is what ``config check`` and ``match`` warn about.
    """
    out = [
        (i, name, alias, own)
        for i, (name, aliases) in enumerate(entities)
        for alias, own in other_person_aliases(name, aliases)
    ]
    clear_caches()  # the word analyses are only needed for this check
    return out
