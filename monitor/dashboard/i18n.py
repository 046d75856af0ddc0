"""The dashboard's two interface languages: Russian (the default) and English, chosen from Accept-Language.

Only the interface is translated; post text, channel titles and entity names are shown as stored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

LANGUAGES = ("ru", "en")
DEFAULT = "ru"

# key -> (Russian, English). Placeholders are str.format fields.
_MESSAGES: dict[str, tuple[str, str]] = {
    "app": ("tgmonitor", "tgmonitor"),
    "nav.overview": ("Обзор", "Overview"),
    "nav.mentions": ("Упоминания", "Mentions"),
    "nav.search": ("Поиск", "Search"),
    "nav.entities": ("Объекты", "Entities"),
    "nav.alerts": ("Оповещения", "Alerts"),
    "nav.logout": ("Выйти", "Log out"),
    "login.title": ("Вход", "Log in"),
    "login.token": ("Токен доступа", "Access token"),
    "login.submit": ("Войти", "Log in"),
    "login.hint": ("Токен задан в [web] token или TGMONITOR_WEB_TOKEN.",
                   "The token is set in [web] token or TGMONITOR_WEB_TOKEN."),
    "login.wrong": ("Неверный токен.", "Wrong token."),
    "login.throttled": ("Слишком много попыток; подождите несколько минут.",
                        "Too many attempts; wait a few minutes."),
    "overview.channels": ("Каналы", "Channels"),
    "overview.chart": ("Упоминания по дням за 30 дней: самые частые объекты",
                       "Mentions per day over 30 days: the top entities"),
    "overview.chart_until": ("Упоминания по дням: самые частые объекты, 30 дней до {day} (последнее упоминание)",
                             "Mentions per day: the top entities, 30 days up to {day} (the newest mention)"),
    "overview.no_chart": ("За 30 дней упоминаний нет.", "No mentions in the last 30 days."),
    "overview.incidents": ("Открытые инциденты", "Open incidents"),
    "overview.no_incidents": ("Открытых инцидентов нет.", "No open incidents."),
    "overview.outbox": ("Очередь оповещений", "Alert outbox"),
    "overview.latency": ("Задержка оповещений за 24 часа", "Alert latency over 24 hours"),
    "overview.latency_note": ("от публикации поста до отправки оповещения", "from the post's date to the alert sent"),
    "overview.latency_seen": ("от получения поста до отправки", "from the post received to the alert sent"),
    "overview.no_latency": ("За 24 часа оповещений не отправлено.", "No alert was sent in the last 24 hours."),
    "overview.service": ("Сервис", "Service"),
    "overview.services": ("Процессы сервиса", "Service processes"),
    "overview.no_service": ("ни один процесс tgmonitor run не отметился", "no tgmonitor run process has checked in"),
    "overview.backfills": ("Дозагрузок в очереди", "Backfills queued"),
    "col.channel": ("Канал", "Channel"),
    "col.source": ("Источник", "Source"),
    "col.last_poll": ("Последний опрос", "Last poll"),
    "col.lag": ("Задержка", "Lag"),
    "col.posts": ("Постов", "Posts"),
    "col.status": ("Статус", "Status"),
    "col.lease": ("Аренда", "Lease"),
    "col.account": ("Аккаунт", "Account"),
    "col.last_error": ("Последняя ошибка", "Last error"),
    "col.kind": ("Вид", "Kind"),
    "col.subject": ("Объект", "Subject"),
    "col.since": ("С", "Since"),
    "col.detail": ("Подробности", "Detail"),
    "col.date": ("Дата", "Date"),
    "col.entity": ("Объект", "Entity"),
    "col.mentions": ("Упоминаний", "Mentions"),
    "col.p50": ("Медиана", "Median"),
    "col.p95": ("95-й процентиль", "95th percentile"),
    "col.alerts": ("Оповещений", "Alerts"),
    "col.id": ("ID", "ID"),
    "col.code": ("Код", "Code"),
    "col.destination": ("Получатель", "Destination"),
    "col.attempts": ("Попыток", "Attempts"),
    "col.where": ("Пост", "Post"),
    "col.entities": ("Объекты", "Entities"),
    "col.version": ("Версия", "Version"),
    "col.text": ("Текст", "Text"),
    "never": ("никогда", "never"),
    "not_configured": ("нет в конфигурации", "not configured"),
    "filter.entity": ("Объект", "Entity"),
    "filter.channel": ("Канал", "Channel"),
    "filter.since": ("С", "Since"),
    "filter.until": ("По", "Until"),
    "filter.any": ("все", "all"),
    "filter.apply": ("Показать", "Show"),
    "filter.reset": ("Сбросить", "Reset"),
    "filter.date_hint": ("2025-03-01 или 30d", "2025-03-01 or 30d"),
    "export.csv": ("Скачать CSV", "Download CSV"),
    "export.jsonl": ("Скачать JSON Lines", "Download JSON Lines"),
    "mentions.none": ("Упоминаний не найдено.", "No mentions found."),
    "mentions.also_in": ("Также в", "Also in"),
    "mentions.open": ("Открыть в Telegram", "Open in Telegram"),
    "mentions.versions": ("версии", "versions"),
    "preview": ("в превью ссылки", "in the link preview"),
    "page.next": ("Дальше →", "Older →"),
    "page.first": ("← К началу", "← Newest"),
    "page.prev": ("← Назад", "← Back"),
    "page.more": ("Ещё →", "More →"),
    "search.query": ("Запрос", "Query"),
    "search.submit": ("Искать", "Search"),
    "search.help": ('слова в любой форме, "фраза", -исключение', 'words in any form, "a phrase", -exclusion'),
    "search.none": ("Ничего не найдено.", "Nothing found."),
    "search.empty": ("Введите запрос.", "Type a query."),
    "entities.title": ("Объекты наблюдения", "Watched entities"),
    "entities.none": ("Объектов пока нет.", "No entities yet."),
    "entity.aliases": ("Названия и формы", "Names and forms"),
    "entity.forms": ("форм", "forms"),
    "entity.not_in_config": ("Объекта нет в текущей конфигурации: формы не показаны.",
                             "The entity is not in the current configuration: no forms to show."),
    "entity.chart": ("Упоминания по каналам", "Mentions per channel"),
    "entity.top_channels": ("Главные каналы", "Top channels"),
    "entity.latest": ("Последние упоминания", "Latest mentions"),
    "entity.all_mentions": ("Все упоминания", "All mentions"),
    "entity.per": ("по", "per"),
    "by.day": ("дням", "day"),
    "by.week": ("неделям", "week"),
    "by.month": ("месяцам", "month"),
    "channel.posts": ("Посты", "Posts"),
    "channel.edits": ("Правки", "Edits"),
    "channel.no_edits": ("Правок нет.", "No edits."),
    "channel.mentions": ("Упоминания", "Mentions"),
    "channel.no_posts": ("Постов нет.", "No posts."),
    "channel.deleted": ("удалён", "deleted"),
    "channel.edited": ("изменён", "edited"),
    "post.title": ("Пост и его версии", "The post and its versions"),
    "post.current": ("текущая", "current"),
    "alerts.all": ("все", "all"),
    "alerts.retry": ("Повторить", "Retry"),
    "alerts.retry_failed": ("Повторить все неудачные", "Retry every failed one"),
    "alerts.retried": ("Поставлено в очередь снова: {n}.", "Queued again: {n}."),
    "alerts.none": ("Оповещений нет.", "No alerts."),
    "alerts.next_attempt": ("следующая попытка", "next attempt"),
    "status.pending": ("ждёт", "pending"),
    "status.sent": ("отправлено", "sent"),
    "status.failed": ("ошибка", "failed"),
    "status.silent": ("без отправки", "silent"),
    "status.active": ("активен", "active"),
    "status.unavailable": ("недоступен", "unavailable"),
    "status.never polled": ("ещё не опрошен", "never polled"),
    "shown": ("показано {shown} из {total}", "showing {shown} of {total}"),
    "error.title": ("Ошибка", "Error"),
    "error.not_found": ("Не найдено.", "Not found."),
    "error.bad_request": ("Неверный запрос", "Bad request"),
    "error.csrf": ("Форма устарела (CSRF): обновите страницу и повторите.",
                   "The form has expired (CSRF): reload the page and try again."),
    "footer": ("Только чтение, кроме повтора оповещений. Время — UTC.",
               "Read-only except for retrying alerts. Times are UTC."),
}

# Russian plural forms (one, few, many) and the English ones (one, other) of the counted nouns.
_PLURALS: dict[str, tuple[tuple[str, str, str], tuple[str, str]]] = {
    "mention": (("упоминание", "упоминания", "упоминаний"), ("mention", "mentions")),
    "post": (("пост", "поста", "постов"), ("post", "posts")),
    "alert": (("оповещение", "оповещения", "оповещений"), ("alert", "alerts")),
    "channel": (("канал", "канала", "каналов"), ("channel", "channels")),
    "entity": (("объект", "объекта", "объектов"), ("entity", "entities")),
    "incident": (("инцидент", "инцидента", "инцидентов"), ("incident", "incidents")),
    "edit": (("изменённый пост", "изменённых поста", "изменённых постов"), ("edited post", "edited posts")),
    "result": (("результат", "результата", "результатов"), ("result", "results")),
}


def negotiate(accept_language: str | None) -> str:
    """The interface language for an Accept-Language header: the best-weighted of ru/en, Russian by default."""
    best, best_q = DEFAULT, -1.0
    for i, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        lang = tag.strip().lower().split("-")[0]
        if lang not in LANGUAGES:
            continue
        q = 1.0
        for p in params.split(";"):
            k, _, v = p.strip().partition("=")
            if k == "q":
                try:
                    q = float(v)
                except ValueError:
                    q = 0.0
        q -= i * 1e-6  # equal weights: the first listed wins
        if q > best_q and q > 0:
            best, best_q = lang, q
    return best


def ru_plural_form(n: int) -> int:
    """0 for 1, 21, 101 …; 1 for 2–4, 22–24 …; 2 for the rest (5–20, 25 …)."""
    n = abs(n)
    if n % 10 == 1 and n % 100 != 11:
        return 0
    if 2 <= n % 10 <= 4 and not 12 <= n % 100 <= 14:
        return 1
    return 2


def number(n: int, lang: str) -> str:
    """Thousands grouped the way each language writes them (1 234 567 / 1,234,567)."""
    text = f"{n:,}"
    return text.replace(",", "\u202f") if lang == "ru" else text


@dataclass(frozen=True, slots=True)
class Translator:
    """``t("key", n=3)`` gives the interface text; ``t.count(5, "mention")`` gives «5 упоминаний»."""

    lang: str

    def __call__(self, key: str, **fields: object) -> str:
        pair = _MESSAGES.get(key)
        if pair is None:
            return key
        text = pair[0] if self.lang == "ru" else pair[1]
        return text.format(**fields) if fields else text

    def count(self, n: int, noun: str) -> str:
        ru, en = _PLURALS[noun]
        word = ru[ru_plural_form(n)] if self.lang == "ru" else en[0 if n == 1 else 1]
        return f"{number(n, self.lang)} {word}"

    def num(self, n: int) -> str:
        return number(n, self.lang)


def translator(accept_language: str | None) -> Translator:
    """The translator for a request's Accept-Language header."""
    return Translator(negotiate(accept_language))


Translate = Callable[..., str]
