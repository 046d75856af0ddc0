"""The matching keys of the configuration (issue 14): ``[matching] languages`` and the per-entity
``surname_alone`` and ``inside_names``, read, validated and carried into the compiled watchlist."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.config import ConfigError, load_settings, load_watchlist
from monitor.runtime import compile_watchlist


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        load_settings(path)
    return exc.value.problems


def test_defaults(write_config) -> None:
    s = load_settings(write_config('[[entities]]\nname = "Олжас Бектенов"\n'))
    assert s.matching.languages == ("ru", "kk", "en")
    assert s.entities[0].surname_alone is True and s.entities[0].inside_names is True


def test_keys_reach_the_watchlist(write_config) -> None:
    path = write_config(
        '[matching]\nlanguages = ["ru", "kk", "ru"]\n\n'
        '[[entities]]\nname = "Александр Белов"\naliases = ["Белов"]\nsurname_alone = false\n\n'
        '[[entities]]\nname = "Казахстан"\ninside_names = false\n\n'
        '[[entities]]\nname = "Национальный банк Казахстана"\n'
    )
    s = load_settings(path)
    assert s.matching.languages == ("ru", "kk")
    assert [e.surname_alone for e in load_watchlist(path)] == [False, True, True]
    wl = compile_watchlist(s)
    assert wl.find("Белов сказал. Беловқа хат") == []  # the surname alone is not enough here
    assert [m.surface for m in wl.find("Министр Белов сказал. Беловқа хат")] == ["Белов", "Беловқа"]
    assert [m.entity for m in wl.find("Национальный банк Казахстана")] == ["Национальный банк Казахстана"]
    assert wl.find("Tokayev's") == []  # no English forms without "en" (and no such entity)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ('[matching]\nlanguages = ["ru", "de"]\n', "unknown language 'de'"),
        ("[matching]\nlanguages = []\n", "at least one language"),
        ('[matching]\nlanguages = "ru"\n', "list of strings"),
        ('[[entities]]\nname = "X"\nsurname_alone = "no"\n', "surname_alone"),
        ('[[entities]]\nname = "X"\ninside_names = 1\n', "inside_names"),
    ],
)
def test_bad_values_are_named(write_config, body: str, fragment: str) -> None:
    found = problems(write_config(body))
    assert len(found) == 1 and fragment in found[0], found
