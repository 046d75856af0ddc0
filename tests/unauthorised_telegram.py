"""A client factory for a session that is not logged in: ``client_factory = "unauthorised_telegram:make_client"``.

A real, never-connected TelegramClient whose network sender (the documented seam, see DESIGN.md) answers
every request with AuthKeyUnregisteredError, as Telegram does for a revoked or never-authorised key; Telethon's
own ``is_user_authorized()`` then says False."""

from __future__ import annotations

import asyncio
from typing import Any

from telethon import TelegramClient, errors
from telethon.sessions import StringSession


class _Sender:
    async def connect(self, *args: Any, **kwargs: Any) -> bool:
        return True

    def is_connected(self) -> bool:
        return True

    async def disconnect(self) -> None:
        return None

    def send(self, request: Any, ordered: bool = False) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        fut.set_exception(errors.AuthKeyUnregisteredError(request=request))
        return fut


class _Client(TelegramClient):  # type: ignore[misc]
    async def connect(self) -> None:  # never touches the network
        return None

    def is_connected(self) -> bool:
        return True

    async def _disconnect_coro(self) -> None:
        return None


def make_client(*args: Any, **kwargs: Any) -> TelegramClient:
    client = _Client(StringSession(), 1, "0" * 32, flood_sleep_threshold=0, receive_updates=False)
    client._sender = _Sender()
    return client
