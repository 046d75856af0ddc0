"""Issue 14 follow-up rules: an entity that is a person is one person, a surname's plural is a family,
a place inside a quoted name of something else is not the place. Sentences are our own."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from monitor.cli import main
from monitor.matching import EntitySpec, Watchlist
from monitor.matching.people import other_person_aliases, same_given_name, same_surname


def _found(wl: Watchlist, text: str) -> list[tuple[str, str]]:
    return [(m.entity, m.surface) for m in wl.find(text)]


# ---- rule 1: one person per entity ---------------------------------------------------------------------


def test_an_alias_with_another_first_name_is_another_person() -> None:
    wl = Watchlist.compile([EntitySpec("Пётр Гаранин", ("Гаранин", "Андрей Гаранин"))])
    assert _found(wl, "Андрей Гаранин возглавил завод.") == []
    assert _found(wl, "Андрея Гаранина назначили директором.") == []
    # the post names only the other person: its bare surnames are him too
    assert _found(wl, "Андрей Гаранин возглавил завод. Гаранин обещал рост.") == []
    assert _found(wl, "Гаранин обещал рост.") == [("Пётр Гаранин", "Гаранин")]
    assert _found(wl, "Пётр Гаранин и его брат Андрей Гаранин. Гаранин молчит.") == [
        ("Пётр Гаранин", "Пётр Гаранин"), ("Пётр Гаранин", "Гаранин")
    ]
    # a first name the dictionary does not know is still the listed other person, in any form or a typo
    wl = Watchlist.compile([EntitySpec("Тимур Досжанов", ("Досжанов", "Ерлан Досжанов"))])
    assert _found(wl, "брат Ерлана Досжанова") == []
    assert _found(wl, "брат Ерланы Досжанова") == []
    assert _found(wl, "Тимур Досжанов и брат Ерлана Досжанова") == [("Тимур Досжанов", "Тимур Досжанов")]


def test_the_entity_is_its_first_person_alias_when_its_name_is_no_persons() -> None:
    wl = Watchlist.compile([EntitySpec("Гаранин", ("Пётр Гаранин", "Андрей Гаранин"))])
    assert _found(wl, "Пётр Гаранин приехал, Андрей Гаранин нет.") == [("Гаранин", "Пётр Гаранин")]
    assert other_person_aliases("Гаранин", ("Пётр Гаранин", "Андрей Гаранин")) == [("Андрей Гаранин", "Пётр Гаранин")]


@pytest.mark.parametrize(
    ("name", "alias"),
    [
        ("Беньямин Нетаньяху", "Биньямин Нетаньяху"),  # one letter
        ("Нурсултан Назарбаев", "Нұрсұлтан Назарбаев"),  # Kazakh letters
        ("Касым-Жомарт Токаев", "Қасым-Жомарт Тоқаев"),
        ("Уильям Клинтон", "Билл Клинтон"),  # a known short form
        ("Джозеф Байден", "Джо Байден"),  # a short form that is a prefix
        ("Мухаммед Салах", "Мохаммед Салах"),
    ],
)
def test_spellings_of_one_first_name_are_the_same_person(name: str, alias: str) -> None:
    assert other_person_aliases(name, (alias,)) == []
    surname = name.split()[-1]
    wl = Watchlist.compile([EntitySpec(name, (alias, surname))])
    assert [m.surface for m in wl.find(f"Вчера {alias} выступил.")] == [alias]


def test_name_comparisons() -> None:
    assert same_given_name("Kassym-Jomart", "Kasym-Zhomart") and same_given_name("Алекс", "Александр")
    assert not same_given_name("Алла", "Виктор") and not same_given_name("Иван", "Илья")
    assert same_surname("Назарбаев", "Назарбаева") and same_surname("Достоевский", "Достоевская")
    assert not same_surname("Иванов", "Ивановский")
    # one letter apart but two genders: two people
    assert other_person_aliases("Юлий Ким", ("Юлия Ким",)) == [("Юлия Ким", "Юлий Ким")]
    assert other_person_aliases("Нурсултан Назарбаев", ("Дарига Назарбаева", "Назарбаев")) == [
        ("Дарига Назарбаева", "Нурсултан Назарбаев")
    ]
    assert other_person_aliases("Росатом", ("Rosatom", "госкорпорация «Росатом»")) == []


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "watch.toml"
    path.write_text(
        '[[entities]]\nname = "Пётр Гаранин"\naliases = ["Гаранин", "Андрей Гаранин"]\n\n'
        '[[entities]]\nname = "Росатом"\n\n'
        '[[entities]]\nname = "Беньямин Нетаньяху"\naliases = ["Биньямин Нетаньяху"]\n',
        encoding="utf-8",
    )
    return path


def test_config_check_and_match_warn_once_per_other_person_alias(tmp_path: Path) -> None:
    path = _config(tmp_path)
    runner = CliRunner()
    res = runner.invoke(main, ["--config", str(path), "config", "check"])
    assert res.exit_code == 0, res.output
    warnings = [x for x in res.stderr.splitlines() if x.startswith("warning:")]
    assert warnings == [
        f"warning: {path}: entities[0].aliases: «Андрей Гаранин» names another person than «Пётр Гаранин» "
        "(same surname, another first name), so it is not matched for «Пётр Гаранин»; "
        "make «Андрей Гаранин» an entity of its own"
    ]
    res = runner.invoke(main, ["match", "--watchlist", str(path)],
                        input='{"id": 1, "text": "Андрей Гаранин и Пётр Гаранин"}\n')
    assert res.exit_code == 0, res.output
    assert [x for x in res.stderr.splitlines() if x.startswith("warning:")] == warnings
    assert '"surface": "Пётр Гаранин"' in res.stdout and "Андрей" not in res.stdout


# ---- rule 2: a surname's plural is a family ------------------------------------------------------------


def test_a_surnames_plural_names_a_family_not_the_person() -> None:
    wl = Watchlist.compile([
        EntitySpec("Пётр Гаранин", ("Гаранин",)), EntitySpec("Айгерим Ахметова", ("Ахметова",)),
        EntitySpec("Олжас Бектенов"), EntitySpec("Касым-Жомарт Токаев", ("Токаев",)),
    ])
    for text in ("Дом братьев Гараниных сгорел.", "Гаранины переехали в Омск.", "с Гараниными",
                 "у сестёр Ахметовых", "Ахметовы", "О. Бектеновы", "Тоқаевтар", "Тоқаевтардың ауылы"):
        assert _found(wl, text) == [], text
    # the singular, in every case, stays the person (Гараниным is also the instrumental singular)
    assert [m.surface for m in wl.find("с Гараниным, Гаранину, Ахметовой; Тоқаевтың, Тоқаевқа")] == [
        "Гараниным", "Гаранину", "Ахметовой", "Тоқаевтың", "Тоқаевқа"
    ]


def test_a_plural_the_user_lists_is_matched() -> None:
    wl = Watchlist.compile([EntitySpec("Пётр Гаранин", ("Гаранин", "Гаранины"))])
    assert [m.surface for m in wl.find("Дом братьев Гараниных. Гаранины уехали, с Гараниными связи нет.")] == [
        "Гараниных", "Гаранины", "Гараниными"
    ]


def test_plural_only_names_of_places_and_organisations_are_unaffected() -> None:
    wl = Watchlist.compile([EntitySpec("Ведомости"), EntitySpec("Соединённые Штаты"), EntitySpec("Курилы")])
    assert [m.surface for m in wl.find("по данным Ведомостей, с Соединёнными Штатами о Курилах")] == [
        "Ведомостей", "Соединёнными Штатами", "Курилах"
    ]


def test_a_verb_of_the_other_gender_after_a_bare_surname_is_another_person() -> None:
    wl = Watchlist.compile([EntitySpec("Пётр Гаранин", ("Гаранин",)), EntitySpec("Айгерим Ахметова", ("Ахметова",))])
    assert _found(wl, "Гаранин рассказал о планах.") == [("Пётр Гаранин", "Гаранин")]
    assert _found(wl, "Ахметова заявила о росте.") == [("Айгерим Ахметова", "Ахметова")]
    # Гаранин here is a woman (his wife, say): the verb agrees with her, not with the entity
    assert _found(wl, "Пётр Гаранин в суде. Гаранин рассказала, что ждёт его.") == [("Пётр Гаранин", "Пётр Гаранин")]
    # only a nominative is the verb's subject
    assert _found(wl, "Пресс-служба Гаранина сообщила о визите.") == [("Пётр Гаранин", "Гаранина")]
    assert _found(wl, "Гаранин заявили") == [("Пётр Гаранин", "Гаранин")]  # a plural says nothing


# ---- rule 3: a place inside a quoted name of something else ---------------------------------------------


def _places() -> Watchlist:
    return Watchlist.compile([
        EntitySpec("Казахстан"), EntitySpec("Грузия"), EntitySpec("Москва"), EntitySpec("США", ("Америка",)),
        EntitySpec("Голос Америки"), EntitySpec("Газпром"), EntitySpec("Эхо Москвы", inside_names=True),
    ])


@pytest.mark.parametrize(
    "text",
    [
        "Лидер движения «Свободная Грузия» выступил на митинге.",
        "Журнал «Вокруг Казахстана» вышел в новом формате.",
        "Телеканал \"Грузия Сегодня\" сменил владельца.",
        "Фонд «Казахстан Халкына» собрал средства.",
        "на заводе „Москва Сталь“ сократили смены",
    ],
)
def test_a_place_inside_a_quoted_name_of_something_else_is_not_the_place(text: str) -> None:
    assert _found(_places(), text) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # a quoted name that is exactly the watched one
        ("Компания «Газпром» и город «Москва» в рекламе.", [("Газпром", "Газпром"), ("Москва", "Москва")]),
        # a quotation: a verb, sentence punctuation or many words in the quotes
        ("«Грузия выбрала Европу», — сказал он.", [("Грузия", "Грузия")]),
        ("Он сказал: «Мы поддерживаем Казахстан».", [("Казахстан", "Казахстан")]),
        ("«Москва, как всегда, далеко»", [("Москва", "Москва")]),
        # outside the quotes
        ("В Грузии партия «Свободная страна» победила.", [("Грузия", "Грузии")]),
        ("«Свободная страна» победила в Грузии.", [("Грузия", "Грузии")]),
        # the quoted name is watched too: a name inside a watched name counts (inside_names)
        ("Эфир «Эха Москвы» прервали.", [("Эхо Москвы", "Эха Москвы"), ("Москва", "Москвы")]),
        ("Русская служба «Голоса Америки» сообщила.", [("Голос Америки", "Голоса Америки"), ("США", "Америки")]),
    ],
)
def test_quoted_places_that_stay_mentions(text: str, expected: list[tuple[str, str]]) -> None:
    assert _found(_places(), text) == expected


def test_only_places_are_dropped_inside_quoted_names() -> None:
    wl = Watchlist.compile([EntitySpec("Газпром"), EntitySpec("Пётр Гаранин", ("Гаранин",))])
    assert _found(wl, "«Газпром нефть» отчиталась, фонд «Наследие Гаранина» тоже.") == [
        ("Газпром", "Газпром"), ("Пётр Гаранин", "Гаранина")
    ]
