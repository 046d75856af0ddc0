"""The ``[[entities]]`` watchlist reader: one :class:`~monitor.matching.EntitySpec` per table.

A new per-entity key goes into ``ENTITY_KEYS`` (key -> example) and ``read_entities`` (and the field into
``EntitySpec`` in :mod:`monitor.matching`).
"""

from __future__ import annotations

from typing import Any

from monitor.config.errors import Checker
from monitor.matching import EntitySpec, validate_regex
from monitor.matching.people import other_persons

ENTITY_KEYS = {
    "name": 'name = "Росатом"', "aliases": 'aliases = ["Rosatom", "госкорпорация Росатом"]',
    "id": 'id = "rosatom"', "case_sensitive": "case_sensitive = true",
    "exclude": 'exclude = ["Мир во всём мире"]', "require_any": 'require_any = ["банк", "карта"]',
    "regex": r"regex = 'Росатом\w*'", "silent": "silent = true", "enabled": "enabled = false",
    "surname_alone": "surname_alone = false", "inside_names": "inside_names = false",
}


def read_entities(chk: Checker, raw: Any) -> tuple[EntitySpec, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        chk.fail("entities", "must be an array of tables", '[[entities]]\nname = "Росатом"')
        return ()
    out: list[EntitySpec] = []
    seen: dict[str, str] = {}
    for i, e in enumerate(raw):
        p = f"entities[{i}]"
        if not isinstance(e, dict):
            chk.table(e, p, ENTITY_KEYS)
            continue
        e = chk.table(e, p, ENTITY_KEYS)
        name = chk.get(e, "name", f"{p}.name", str, None, ENTITY_KEYS["name"])
        if not name or not name.strip():
            if "name" not in e:
                chk.fail(f"{p}.name", "is required", ENTITY_KEYS["name"])
            elif name is not None:
                chk.fail(f"{p}.name", "must not be empty", ENTITY_KEYS["name"])
            continue
        regex = chk.get(e, "regex", f"{p}.regex", str, None, ENTITY_KEYS["regex"])
        if regex is not None:
            err = validate_regex(regex)
            if err:
                chk.fail(f"{p}.regex", f"is not a valid pattern: {err}", ENTITY_KEYS["regex"])
                regex = None
        cs = chk.get(e, "case_sensitive", f"{p}.case_sensitive", bool, None, "case_sensitive = true")
        spec = EntitySpec(
            name=name.strip(),
            aliases=tuple(a for a in chk.str_list(e, "aliases", f"{p}.aliases", ENTITY_KEYS["aliases"])
                          if a.strip()),
            id=chk.get(e, "id", f"{p}.id", str, "", ENTITY_KEYS["id"]),
            case_sensitive=cs,
            exclude=chk.str_list(e, "exclude", f"{p}.exclude", ENTITY_KEYS["exclude"]),
            require_any=chk.str_list(e, "require_any", f"{p}.require_any", ENTITY_KEYS["require_any"]),
            regex=regex,
            silent=chk.get(e, "silent", f"{p}.silent", bool, False, "silent = true"),
            enabled=chk.get(e, "enabled", f"{p}.enabled", bool, True, "enabled = false"),
            surname_alone=chk.get(e, "surname_alone", f"{p}.surname_alone", bool, True, "surname_alone = false"),
            inside_names=chk.get(e, "inside_names", f"{p}.inside_names", bool, True, "inside_names = false"),
        )
        if spec.id in seen:
            chk.fail(f"{p}.id", f"'{spec.id}' is used by {seen[spec.id]} too; ids must be unique",
                     f'id = "{spec.id}-2"')
            continue
        seen[spec.id] = p
        out.append(spec)
    return tuple(out)


def entity_warnings(specs: tuple[EntitySpec, ...] | list[EntitySpec], source: str) -> list[str]:
    """One line per doubtful but usable watchlist entry (``config check`` and ``match`` print them).

    An alias naming another person of the entity's surname («Алла Бут» under «Виктор Бут») is not
    matched for the entity: an entity that is a person is one person.
    """
    return [
        f"{source}: entities[{i}].aliases: «{alias}» names another person than «{own}» (same surname, "
        f"another first name), so it is not matched for «{name}»; make «{alias}» an entity of its own"
        for i, name, alias, own in other_persons((s.name, s.aliases if s.enabled else ()) for s in specs)
    ]
