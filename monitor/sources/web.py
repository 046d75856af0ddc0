"""Fetch pages of a public channel's web preview (``<base_url>/s/<username>``) politely, and parse them.

Polite means: every request takes a token from the source's own :class:`~monitor.budget.RequestBudget`,
goes out with a real User-Agent (through the optional HTTP proxy), and a 429 answer's ``Retry-After`` is
honoured for the whole source, not just for the one request. A channel with no public preview (t.me
redirects ``/s/<name>`` to ``/<name>``, or answers 404) raises :class:`ChannelUnavailable`.

An answer of 200 is not trusted blindly: a page with no message history (a captcha, an error page, a
proxy's portal, garbage), a page cut short (no closing ``</html>``: its newest posts, or the one it breaks
in, are missing) or a page of another channel is a :class:`BadPage`, retried with a growing pause like a
5xx and then reported as a transient error: it never marks the channel unavailable, and nothing of it is
stored. When the site cannot be reached at all (network or proxy failure, or 5xx after every retry)
:class:`WebUnreachable` says so in one line. Nothing here touches the database; parsing lives in
``web_parse``.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import re
import weakref
from datetime import UTC, datetime

import httpx

from monitor import __version__
from monitor.budget import Deferred, RequestBudget
from monitor.config import WebSourceSettings
from monitor.logs import event
from monitor.sources.web_parse import WebPage, parse_page

log = logging.getLogger(__name__)

USER_AGENT = (f"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36 "
              f"tgmonitor/{__version__}")
KIND = "web"
#: the parser reads a few English words of the markup ("edited", "Please open Telegram to view this post"):
#: ask for the English page; a channel's posts are the same in every language
ACCEPT_LANGUAGE = "en-US,en;q=0.9"
#: redirects followed while they stay on a channel's preview (``/s/<name>``: a renamed channel, http → https)
MAX_REDIRECTS = 3
#: transient failures (network, 5xx, a bad page) are retried this many times with a growing pause
RETRIES = 3
#: the first pause before a retry, in seconds; each next one doubles (at most 10 s)
RETRY_PAUSE = 2.0
#: the longest Retry-After we honour by waiting in place; longer ones defer the work
MAX_INLINE_WAIT = 30.0


class WebSourceError(Exception):
    """A page could not be fetched (network trouble, an unexpected status)."""


class ChannelUnavailable(WebSourceError):
    """The channel has no public web preview (private, not a channel, or hidden from t.me/s)."""


class BadPage(WebSourceError):
    """An answer of 200 that is not this channel's whole preview page (after every retry): transient."""


class WebUnreachable(WebSourceError):
    """The preview site cannot be reached (network, proxy or DNS failure, or 5xx after every retry): an
    operational condition of the whole source, not of one channel. The message is one line, no secrets."""

    def __init__(self, base_url: str, reason: str) -> None:
        super().__init__(f"cannot reach the web preview at {base_url}: {reason}; check the network or set "
                         f"[sources.web] proxy")
        self.reason = reason


class RateLimited(WebSourceError):
    """The site answered 429 (or the budget is spent) for longer than the caller will wait."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"rate limited for {seconds:.0f} s")
        self.seconds = seconds


_budgets: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, int], RequestBudget]] = (
    weakref.WeakKeyDictionary())


def shared_budget(settings: WebSourceSettings) -> RequestBudget:
    """One budget per event loop and site: every web job of the process spends from the same one.

    The burst is a full minute's worth, so a short backfill runs at once and a long one settles to the
    configured rate."""
    loop = asyncio.get_running_loop()
    per_loop = _budgets.setdefault(loop, {})
    key = (settings.base_url, settings.requests_per_minute)
    if key not in per_loop:
        rpm = float(settings.requests_per_minute)
        per_loop[key] = RequestBudget(rpm, burst=max(1.0, rpm))
    return per_loop[key]


def retry_after_seconds(value: str | None, default: float = 60.0) -> float:
    """``Retry-After`` as seconds: a number of seconds or an HTTP date; ``default`` when absent or odd."""
    if not value:
        return default
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class WebClient:
    """Reads ``/s/<username>`` pages of one site (``settings.base_url``)."""

    def __init__(self, settings: WebSourceSettings, *, budget: RequestBudget | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.settings = settings
        self.budget = budget or shared_budget(settings)
        self.requests = 0
        self.http = httpx.AsyncClient(
            base_url=settings.base_url, headers={"User-Agent": USER_AGENT, "Accept-Language": ACCEPT_LANGUAGE},
            timeout=httpx.Timeout(20.0, connect=10.0), follow_redirects=False, proxy=settings.proxy,
            transport=transport,
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    async def page(self, username: str, *, before: int | None = None, max_wait: float = MAX_INLINE_WAIT) -> WebPage:
        """One page: the newest (``before=None``) or the one just older than message ``before``.

        Waits up to ``max_wait`` seconds for the budget or a Retry-After, else raises RateLimited."""
        params = {"before": str(before)} if before is not None else None
        path = f"/s/{username}"
        url: str | httpx.URL = path
        name = username
        attempt = redirects = 0
        while True:
            try:
                await self.budget.acquire(KIND, max_wait=max_wait)
            except Deferred as exc:
                raise RateLimited(exc.seconds) from None
            self.requests += 1
            try:
                r = await self.http.get(url, params=params)
            except httpx.HTTPError as exc:
                attempt += 1
                if attempt > RETRIES:
                    raise WebUnreachable(_origin(self.settings.base_url), _reason(exc)) from None
                await _pause(attempt)
                continue
            if r.status_code == 429:
                wait = retry_after_seconds(r.headers.get("Retry-After"))
                self.budget.defer(KIND, wait)
                event(log, logging.WARNING, "web preview rate limited", channel=f"@{username}",
                      retry_after=round(wait, 1))
                if wait > max_wait:
                    raise RateLimited(wait)
                continue  # acquire() now waits out the deferral
            if r.is_redirect:
                target = r.headers.get("Location", "")
                moved = _preview_name(target)
                if moved is None:
                    raise ChannelUnavailable(f"no public web preview: {path} redirects to {target or 'elsewhere'}")
                redirects += 1
                if redirects > MAX_REDIRECTS:
                    raise WebSourceError(f"{path}: too many redirects (last to {target})")
                # The same preview elsewhere (https, a renamed channel): follow it, keeping ?before=.
                url, name = r.url.join(target).copy_with(query=None), moved
                continue
            if r.status_code == 404:
                raise ChannelUnavailable(f"no public web preview: {path} is not found")
            if r.status_code >= 500:
                attempt += 1
                if attempt > RETRIES:
                    raise WebUnreachable(_origin(self.settings.base_url), f"{path} answers HTTP {r.status_code}")
                await _pause(attempt)
                continue
            if r.status_code != 200:
                raise WebSourceError(f"{path}: HTTP {r.status_code}")
            # Parsing a page is a few milliseconds of CPU; no thread hop needed.
            text = r.text
            page = parse_page(text, name)
            problem = _page_problem(text, page, name)
            if problem is not None:
                attempt += 1
                event(log, logging.WARNING, "web preview answered a bad page", channel=f"@{username}",
                      problem=problem, attempt=attempt)
                if attempt > RETRIES:
                    raise BadPage(f"{path}: {problem} ({RETRIES + 1} tries); the next poll tries again")
                await _pause(attempt)
                continue
            return page


async def _pause(attempt: int) -> None:
    """The growing pause before retry ``attempt`` (1, 2, …): RETRY_PAUSE, twice that, … at most 10 s."""
    await asyncio.sleep(min(RETRY_PAUSE * 2.0 ** (attempt - 1), 10.0))


def _page_problem(text: str, page: WebPage, name: str) -> str | None:
    """Why an answer of 200 is not ``name``'s whole preview page, or None when it is."""
    if not page.is_channel:
        return ("the answer is not a channel's preview page (no message history: a captcha, an error page or "
                "another site?)")
    if "</html>" not in text[-4096:].lower():
        return "the page is cut short (no closing </html>)"
    if page.channel is not None and page.channel.lower() != name.lower():
        return f"the page is of another channel (@{page.channel}, not @{name})"
    return None


def _origin(base_url: str) -> str:
    """The site part of ``base_url`` (scheme, host, port): never a path or credentials of a proxy URL."""
    u = httpx.URL(base_url)
    return f"{u.scheme}://{u.host}" + (f":{u.port}" if u.port else "")


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__


def _preview_name(location: str) -> str | None:
    """The channel a redirect's target previews (``…/s/<name>``), or None when it leaves the preview (t.me
    sends ``/s/<name>`` of a channel without a public preview to its plain page ``/<name>``)."""
    m = re.search(r"(?:^|/)s/([A-Za-z0-9_]+)/?(?:[?#]|$)", httpx.URL(location).path if location else "")
    return m.group(1) if m else None
