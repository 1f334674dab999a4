"""``aio.listen()``: the async twin of :class:`monps_store.events.Listener`, on asyncpg.

    async with aio.listen("odds_changed", on_reconnect=resync) as listener:
        async for event in listener: ...

The same listener as the sync one (:mod:`monps_store.listening` holds what they share): a
direct connection of its own (never the pool, ``DATABASE_LISTEN_URL`` when set), listening
from ``__aenter__`` (or the first ``__anext__``), the same heartbeat, reconnection with backoff
after a loss, ``on_lost()`` as soon as a loss is noticed and ``on_reconnect()`` once listening
again (a coroutine function's result is awaited). With ``timeout``, iteration ends after that
many seconds without an event. Only the driver calls are its own: asyncpg's ``add_listener``
and termination listener.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from typing import Self

import asyncpg

from monps_store import errors
from monps_store.aio.pool import connect_kwargs
from monps_store.listening import HEARTBEAT_SECONDS, ListenerBase, Reconnect, deadline_after
from monps_store.payloads import Event, decode

_DRIVER_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError)


class AsyncListener(ListenerBase):
    """Events of ``channels`` on an asyncpg connection of its own, made when the listener is
    entered or first iterated (see :class:`~monps_store.listening.ListenerBase` for timeouts,
    reconnection, ``on_lost`` and ``on_reconnect``). Use from one task."""

    def _prepare(self) -> None:
        self._wake = asyncio.Event()  # set by a notification or the connection's end
        self._ended = False  # the current connection was terminated
        self._started = False

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
        deadline = deadline_after(timeout)
        while True:
            step = self._next_step(deadline)
            if isinstance(step, Reconnect):
                await self._reconnect(deadline)
            elif isinstance(step, float):
                await self._wait(step)
            else:
                return step

    # -- the driver: asyncpg -------------------------------------------------------------

    async def _connect(self) -> asyncpg.Connection:
        kwargs = connect_kwargs(self.settings)
        kwargs.setdefault("server_settings", {})["application_name"] = self.application_name
        try:
            conn = await asyncpg.connect(**kwargs)
            for channel in self.channels:
                await conn.add_listener(channel, self._notified)
        except _DRIVER_ERRORS as exc:
            raise self._cannot("listen", exc) from None
        conn.add_termination_listener(self._terminated)
        self._ended = False
        self._last_activity = time.monotonic()
        return conn

    def _notified(self, conn: asyncpg.Connection, pid: int, channel: str, payload: str) -> None:
        self._received(decode(channel, payload, pid))
        self._wake.set()

    def _terminated(self, conn: asyncpg.Connection) -> None:
        if conn is self._conn:  # not one dropped already
            self._ended = True
            self._wake.set()

    async def _wait(self, seconds: float) -> None:
        conn = self._conn
        if not self._ended:  # its end may have been told before this wait
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), seconds)
            except TimeoutError:
                pass
        if self._ended:
            await self._lost("the connection was closed")
        elif not self._pending and self._heartbeat_due():
            try:
                await asyncio.wait_for(conn.fetchval("SELECT 1"), HEARTBEAT_SECONDS)
            except _DRIVER_ERRORS as exc:
                await self._lost(exc)
            else:
                self._last_activity = time.monotonic()

    async def _lost(self, why: BaseException | str) -> None:
        await self._drop()
        await _result(self._lost_noticed(why))

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
                pause = self._retry_pause(exc, attempt, deadline)
                if pause is None:
                    return
                attempt += 1
                await asyncio.sleep(pause)
                continue
            await _result(self._reconnected())
            return


async def _result(value: object) -> object:
    """``value``, awaited first if a callback returned an awaitable."""
    return await value if inspect.isawaitable(value) else value
