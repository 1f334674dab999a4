"""The sync listener: events of some channels on a psycopg2 connection of its own.

    from monps_store import events
    with events.listen("odds_changed", on_reconnect=resync) as listener:
        for event in listener:                            # event.channel, .payload, .pid
            ...

A listener has a direct connection of its own, outside the pool (a pooled connection would be
handed to others with its LISTENs), in autocommit, waiting in ``select()``: connected and
listening as soon as it is made, so nothing committed after that is missed while it stays
connected. The rules it shares with the async listener (settings, heartbeat, backoff,
``on_lost``/``on_reconnect``) are in :mod:`monps_store.listening`.
"""

from __future__ import annotations

import os
import select
import time
from collections.abc import Callable, Iterator
from typing import Any, Self

import psycopg2
import psycopg2.extensions

from monps_store import errors
from monps_store.listening import ListenerBase, Reconnect, deadline_after
from monps_store.payloads import Event, decode


class Listener(ListenerBase):
    """Events of ``channels`` on a direct connection of its own (see
    :class:`~monps_store.listening.ListenerBase` for timeouts, reconnection, ``on_lost`` and
    ``on_reconnect``). Use from one thread; ``close()`` it (or use it as a context manager)."""

    def _prepare(self) -> None:
        self._conn = self._connect()
        self._wake_read, self._wake_write = os.pipe()  # interrupt() wakes a waiting call
        os.set_blocking(self._wake_write, False)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Event]:
        return self

    def __next__(self) -> Event:
        event = self.next_event(self.timeout)
        if event is None:
            raise StopIteration
        return event

    @property
    def connected(self) -> bool:
        return self._conn is not None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._drop()
        os.close(self._wake_read)
        os.close(self._wake_write)

    def interrupt(self) -> None:
        """Make a ``next_event`` waiting in another thread return None now (safe to call from
        any thread, unlike ``close``)."""
        self._interrupted = True
        try:
            os.write(self._wake_write, b"!")
        except OSError:  # closed, or the pipe is full of wake-ups already
            pass

    def next_event(self, timeout: float | None = None) -> Event | None:
        """The next event, waiting at most ``timeout`` seconds (None: until one comes);
        None if none came in time or the listener is closed."""
        deadline = deadline_after(timeout)
        while True:
            step = self._next_step(deadline)
            if isinstance(step, Reconnect):
                self._reconnect(deadline)
            elif isinstance(step, float):
                self._wait(step)
            else:
                return step

    # -- the driver: psycopg2 ------------------------------------------------------------

    def _connect(self) -> psycopg2.extensions.connection:
        params = self.settings.connect_params()
        params["application_name"] = self.application_name
        # A peer that vanished without closing the connection is noticed within a minute.
        for key, value in (("keepalives", 1), ("keepalives_idle", 30),
                           ("keepalives_interval", 10), ("keepalives_count", 3)):
            params.setdefault(key, value)
        try:
            conn = psycopg2.connect(**params)
        except psycopg2.Error as exc:
            raise self._cannot("connect to listen", exc) from None
        conn.set_isolation_level(psycopg2.extensions.ISOLATION_LEVEL_AUTOCOMMIT)
        try:
            with conn.cursor() as cursor:
                for channel in self.channels:
                    cursor.execute(f'LISTEN "{channel}"')  # checked: [a-z_][a-z0-9_]*
        except psycopg2.Error as exc:
            conn.close()
            raise self._cannot("LISTEN", exc) from None
        self._last_activity = time.monotonic()
        return conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except psycopg2.Error:
                pass

    def _reconnect(self, deadline: float | None) -> None:
        attempt = 0
        while not (self._closed or self._interrupted):
            try:
                self._conn = self._connect()
            except errors.ConnectionLost as exc:
                pause = self._retry_pause(exc, attempt, deadline)
                if pause is None:
                    return
                attempt += 1
                select.select([self._wake_read], [], [], pause)  # interrupt() cuts it short
                continue
            self._reconnected()
            return

    def _wait(self, seconds: float) -> None:
        conn = self._conn
        assert conn is not None  # next_event() reconnects first
        try:
            readable, _, _ = select.select([conn, self._wake_read], [], [], seconds)
            if self._wake_read in readable:
                os.read(self._wake_read, 512)
                readable.remove(self._wake_read)
            if readable:
                conn.poll()
                self._last_activity = time.monotonic()
            elif self._heartbeat_due():
                with conn.cursor() as cursor:  # a dead connection shows itself here
                    cursor.execute("SELECT 1")
                self._last_activity = time.monotonic()
            while conn.notifies:
                notify = conn.notifies.pop(0)
                self._received(decode(notify.channel, notify.payload, notify.pid))
        except (psycopg2.Error, OSError, ValueError) as exc:  # ValueError: a closed socket
            if self._closed:
                return
            self._drop()
            self._lost_noticed(exc)


def listen(*channels: str, timeout: float | None = None,
           on_reconnect: Callable[[], Any] | None = None) -> Listener:
    """A :class:`Listener` for ``channels``: iterate it for events."""
    return Listener(channels, timeout=timeout, on_reconnect=on_reconnect)
