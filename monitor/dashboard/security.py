"""Who may see the dashboard and how the browser must treat its pages.

* **Token.** With ``[web] token`` (or ``TGMONITOR_WEB_TOKEN``) every request needs it: ``Authorization:
  Bearer <token>`` for scripts, or the session cookie the login form sets. The cookie holds an HMAC of the
  token, never the token itself, and is ``HttpOnly``, ``SameSite=Strict``. Without a token the dashboard
  must listen on the loopback interface only (checked before it starts).
* **CSRF.** Actions are POST forms carrying a random token that must equal the ``tgm_csrf`` cookie
  (double submit) and, when the browser sends an ``Origin``, come from this host. A Bearer request is a
  script's, which no other site can make a browser send, so it needs neither.
* **Headers.** A Content-Security-Policy without inline script (pages are server-rendered; the one small
  script is a static file), ``X-Frame-Options: DENY``, ``Referrer-Policy: no-referrer`` (a click through
  to t.me tells Telegram nothing about the dashboard), ``nosniff``, ``no-store`` on pages.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import quote

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SESSION_COOKIE = "tgm_session"
CSRF_COOKIE = "tgm_csrf"
CSRF_FIELD = "csrf"
#: paths served without the token: the login form itself, its styles and script, and a liveness probe
OPEN_PATHS = ("/login", "/static/", "/healthz")

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
]


def session_value(token: str) -> str:
    """The session cookie's value: a keyed hash of the token (the token itself never reaches a cookie)."""
    return hmac.new(token.encode(), b"tgmonitor dashboard session v1", hashlib.sha256).hexdigest()


def token_matches(given: str | None, token: str) -> bool:
    """Constant-time comparison (no timing hint of how much of a guess was right)."""
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


def cookies(scope: Scope) -> dict[str, str]:
    """The request's cookies (malformed ones ignored)."""
    raw = b"; ".join(v for k, v in scope.get("headers", ()) if k == b"cookie").decode("latin-1")
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw)
    except Exception:  # a malformed Cookie header must not break the page
        return {}
    return {k: morsel.value for k, morsel in jar.items()}


def header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope.get("headers", ()):
        if k == name:
            return v.decode("latin-1")
    return None


def bearer(scope: Scope) -> str | None:
    auth = header(scope, b"authorization")
    if auth and auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return None


@dataclass(slots=True)
class LoginThrottle:
    """At most ``limit`` wrong tokens per client address per ``window`` seconds: guessing stays slow."""

    limit: int = 10
    window: float = 300.0
    _fails: dict[str, list[float]] = field(default_factory=dict)

    def blocked(self, client: str) -> bool:
        now = time.monotonic()
        recent = [t for t in self._fails.get(client, []) if now - t < self.window]
        self._fails[client] = recent
        return len(recent) >= self.limit

    def failed(self, client: str) -> None:
        self._fails.setdefault(client, []).append(time.monotonic())
        if len(self._fails) > 10_000:  # never grow without bound under a scan
            self._fails.clear()

    def succeeded(self, client: str) -> None:
        self._fails.pop(client, None)


class Guard:
    """ASGI middleware: security headers on every response; the token check before any page; a CSRF
    cookie for every browser that has none (the forms read it from ``scope["state"]``)."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token
        self.session = session_value(token) if token else None

    def authorised(self, scope: Scope) -> tuple[bool, str]:
        """(allowed, how): how is "open" (no token set), "bearer" or "cookie"."""
        if self.token is None:
            return True, "open"
        if token_matches(bearer(scope), self.token):
            return True, "bearer"
        assert self.session is not None
        if token_matches(cookies(scope).get(SESSION_COOKIE), self.session):
            return True, "cookie"
        return False, ""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        jar = cookies(scope)
        csrf = jar.get(CSRF_COOKIE) or ""
        new_csrf = None
        if len(csrf) < 20:
            csrf = new_csrf = secrets.token_urlsafe(24)
        allowed, how = self.authorised(scope)
        state = scope.setdefault("state", {})
        state.update(csrf=csrf, auth=how, token_set=self.token is not None)
        secure = _is_https(scope)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in SECURITY_HEADERS if k not in names]
                if b"cache-control" not in names:
                    headers.append((b"cache-control", b"no-store"))
                if new_csrf is not None:
                    headers.append((b"set-cookie", cookie_header(CSRF_COOKIE, new_csrf, secure=secure)))
                message["headers"] = headers
            await send(message)

        path = scope.get("path", "")
        if self.token is None and (header(scope, b"x-forwarded-for") or header(scope, b"forwarded")):
            # Loopback without a token is for one machine; a request relayed by a reverse proxy may come from
            # anywhere: refuse it rather than publish the archive by accident.
            await _plain(send_with_headers, 403, b"403: this dashboard has no token, and the request came through "
                         b"a proxy: set [web] token or TGMONITOR_WEB_TOKEN\n")
            return
        if not allowed and not any(path == p or (p.endswith("/") and path.startswith(p)) for p in OPEN_PATHS):
            await _deny(scope, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)


def _is_https(scope: Scope) -> bool:
    # behind a TLS-terminating proxy uvicorn's --proxy-headers turns X-Forwarded-Proto into the scheme
    return scope.get("scheme") == "https"


def cookie_header(name: str, value: str, *, secure: bool, max_age: int | None = None) -> bytes:
    """A ``Set-Cookie`` value: HttpOnly, SameSite=Strict, whole site; Secure over HTTPS."""
    parts = [f"{name}={value}", "Path=/", "HttpOnly", "SameSite=Strict"]
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    if secure:
        parts.append("Secure")
    return "; ".join(parts).encode("latin-1")


async def _deny(scope: Scope, send: Send) -> None:
    """A browser is sent to the login form (and back after it); a script gets 401 with a Bearer challenge."""
    accept = header(scope, b"accept") or ""
    wants_html = scope.get("method") == "GET" and "text/html" in accept and bearer(scope) is None
    if wants_html:
        target = scope.get("path", "/")
        if scope.get("query_string"):
            target += "?" + scope["query_string"].decode("latin-1")
        await send({"type": "http.response.start", "status": 303,
                    "headers": [(b"location", f"/login?next={quote(target, safe='')}".encode("latin-1")),
                                (b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})
        return
    await _plain(send, 401, b"401 unauthorised: send Authorization: Bearer <token> ([web] token / "
                 b"TGMONITOR_WEB_TOKEN)\n", [(b"www-authenticate", b'Bearer realm="tgmonitor"')])


async def _plain(send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*(extra or []), (b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def csrf_ok(scope: Scope, form_value: str | None) -> bool:
    """A POST is allowed when it carries the CSRF cookie's value and, if the browser says where it comes
    from, comes from this host. Bearer requests (scripts) need neither."""
    state = scope.get("state", {})
    if state.get("auth") == "bearer":
        return True
    origin = header(scope, b"origin")
    host = header(scope, b"host")
    if origin and origin != "null" and host and origin.split("://", 1)[-1] != host:
        return False
    expected = cookies(scope).get(CSRF_COOKIE)
    return bool(expected) and form_value is not None and hmac.compare_digest(form_value.encode(),
                                                                             (expected or "").encode())


def safe_next(target: str | None) -> str:
    """Where to go after logging in: only a path on this site (no ``//evil.example`` or ``https://…``)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target
