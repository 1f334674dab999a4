"""``aio.listen()``: the async twin of :class:`monps_store.events.Listener`, on asyncpg.

    async with aio.listen("odds_changed", on_reconnect=resync) as listener:
        async for event in listener: ...

The same guarantees as the sync listener: a direct connection of its own (never the pool,
``DATABASE_LISTEN_URL`` when set), listening from ``__aenter__`` (or the first ``__anext__``),
reconnection with backoff after a loss, then ``on_reconnect()`` (a coroutine function is
awaited). With ``timeout``, iteration ends after that many seconds without an event.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, Self

import asyncpg

from monps_store import config, errors
from monps_store.aio.pool import connect_kwargs
from monps_store.events import (
    HEARTBEAT_SECONDS,
    Event,
    check_listen,
    decode,
    listen_settings,
    retry_pause,
)

logger = logging.getLogger(__name__)

_LOST = object()  # put on the queue, with the connection, when a connection ends


class AsyncListener:
    def __init__(self, channels: Iterable[str], *, timeout: float | None = None,
                 on_reconnect: Callable[[], Any] | None = None,
                 settings: config.Settings | None = None):
        self.channels, self.timeout = check_listen(channels, timeout)
        self.on_reconnect = on_reconnect
        self.settings = listen_settings(settings)
        self.reconnects = 0
        self._queue: asyncio.Queue = asyncio.Queue()
        self._conn: asyncpg.Connection | None = None
        self._started = self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else "listening" if self._conn else "not connected"
        return f"<AsyncListener {', '.join(self.channels)} on {self.settings.display_url} {state}>"

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    async def __aenter__(self) -> Self:
        await self._start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Event:
        event = await self.next_event(self.timeout)
        if event is None:
            raise StopAsyncIteration
        return event

    async def close(self) -> None:
        self._closed = True
        await self._drop()

    async def _start(self) -> None:
        if not self._started:
            self._started = True
            self._conn = await self._connect()

    async def next_event(self, timeout: float | None = None) -> Event | None:
        """The next event, waiting at most ``timeout`` seconds; None if none came in time."""
        await self._start()
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._closed:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0 and self._queue.empty():
                return None
            if self._conn is None:
                await self._reconnect(deadline)
                continue
            if self._queue.empty():
                wait = HEARTBEAT_SECONDS if left is None else min(left, HEARTBEAT_SECONDS)
                try:
                    item = await asyncio.wait_for(self._queue.get(), wait)
                except TimeoutError:
                    await self._heartbeat()
                    continue
            else:
                item = self._queue.get_nowait()
            if type(item) is tuple:  # (_LOST, the connection that ended)
                if item[1] is self._conn:
                    await self._lost("the connection was closed")
                continue
            return item
        return None

    async def _connect(self) -> asyncpg.Connection:
        kwargs = connect_kwargs(self.settings)
        kwargs.setdefault("server_settings", {})["application_name"] = \
            f"{self.settings.application_name}:listen"[:63]
        try:
            conn = await asyncpg.connect(**kwargs)
            for channel in self.channels:
                await conn.add_listener(channel, self._notified)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            raise errors.ConnectionLost(f"cannot listen on {self.settings.display_url}: "
                                        f"{str(exc).splitlines()[0] if str(exc) else exc!r}") \
                from None
        conn.add_termination_listener(self._terminated)
        return conn

    def _notified(self, conn: asyncpg.Connection, pid: int, channel: str, payload: str) -> None:
        self._queue.put_nowait(decode(channel, payload, pid))

    def _terminated(self, conn: asyncpg.Connection) -> None:
        self._queue.put_nowait((_LOST, conn))

    async def _heartbeat(self) -> None:
        conn = self._conn
        if conn is None:
            return
        try:
            await asyncio.wait_for(conn.fetchval("SELECT 1"), HEARTBEAT_SECONDS)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            await self._lost(str(exc) or type(exc).__name__)

    async def _lost(self, why: str) -> None:
        logger.warning("listener on %s lost its connection (%s); reconnecting",
                       self.settings.display_url, why)
        await self._drop()

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            conn.terminate()

    async def _reconnect(self, deadline: float | None) -> None:
        attempt = 0
        while not self._closed:
            try:
                self._conn = await self._connect()
            except errors.ConnectionLost as exc:
                pause = retry_pause(attempt, deadline)
                attempt += 1
                if pause is None:
                    return
                logger.info("listener: %s; retrying in %.2f s", exc, pause)
                await asyncio.sleep(pause)
                continue
            self.reconnects += 1
            if self.on_reconnect is not None:
                result = self.on_reconnect()
                if inspect.isawaitable(result):
                    await result
            return
