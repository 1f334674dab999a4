"""What every listener does, whatever its driver: the sync one (:mod:`monps_store.listener`,
psycopg2) and the async one (:mod:`monps_store.aio.events`, asyncpg) each add only the driver
calls (connect and LISTEN, wait for notifications, check the connection, close).

    class Listener(ListenerBase):                # the driver's part: _connect, _wait, _drop
        def next_event(self, timeout=None):
            deadline = deadline_after(timeout)
            step = self._next_step(deadline)         # an Event, None, RECONNECT or seconds

The rules kept here: which settings a listener connects with, its channels and timeout
checked, when it hands back an event or gives up waiting, the heartbeat of an idle
connection, the backoff between reconnection attempts, and what a loss and a reconnection
log and call (``on_lost``, ``on_reconnect``).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from monps_store import config, database, errors
from monps_store.payloads import Event, check_channel
from monps_store.translate import first_line

HEARTBEAT_SECONDS = 5.0  # an idle listener checks its connection this often
_BACKOFF = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0)  # seconds between reconnection attempts


def listen_settings(settings: config.Settings | None = None) -> config.Settings:
    """The settings a listener connects with: ``DATABASE_LISTEN_URL`` when set, else the
    application's (refused behind a transaction-mode pooler)."""
    settings = settings or database.active_settings()
    if settings is None:
        raise errors.NotInitialised("monps_store is not initialised: call init_db() first")
    if settings.listen_url:
        return dataclasses.replace(
            settings, **config.parse_url(settings.listen_url.reveal(), "DATABASE_LISTEN_URL"),
            source="DATABASE_LISTEN_URL", pooler="none", replicas=(), listen_url=None)
    if settings.pooler != "none":
        raise errors.ConfigError([
            "DATABASE_LISTEN_URL: required to listen when DB_POOLER=pgbouncer (a "
            "transaction-mode pooler delivers no notifications); set it to the server itself"])
    return settings


def check_listen(channels: Iterable[str],
                 timeout: float | None) -> tuple[tuple[str, ...], float | None]:
    """A listener's channels (checked, each once) and timeout, or InvalidInput."""
    checked = tuple(dict.fromkeys(check_channel(c) for c in channels))
    if not checked:
        raise errors.InvalidInput("listen() needs at least one channel")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                or not timeout >= 0):
        raise errors.InvalidInput(f"timeout must be a number of seconds >= 0, got {timeout!r}")
    return checked, timeout


def retry_pause(attempt: int, deadline: float | None) -> float | None:
    """Seconds to wait before reconnection attempt ``attempt + 1`` (backoff, cut short by the
    ``deadline`` on the monotonic clock); None when the deadline has passed."""
    pause = _BACKOFF[min(attempt, len(_BACKOFF) - 1)]
    if deadline is None:
        return pause
    left = deadline - time.monotonic()
    return min(pause, left) if left > 0 else None


def deadline_after(timeout: float | None) -> float | None:
    """The monotonic time ``timeout`` seconds from now (None: no deadline)."""
    return None if timeout is None else time.monotonic() + timeout


class Reconnect:
    """What ``_next_step`` gives when there is no connection: reconnect first."""

    def __repr__(self) -> str:
        return "RECONNECT"


RECONNECT = Reconnect()


class ListenerBase:
    """A listener's state and rules. Iterating a listener yields :class:`Event` objects; with
    ``timeout`` (seconds) the iteration ends when that long passes without one. After a lost
    connection it reconnects (retrying with backoff, forever or until the timeout), listens
    again, then calls ``on_reconnect()``; ``on_lost()`` is called as soon as a loss is
    noticed. The async listener awaits what a coroutine function callback returns."""

    def __init__(self, channels: Iterable[str], *, timeout: float | None = None,
                 on_reconnect: Callable[[], Any] | None = None,
                 on_lost: Callable[[], Any] | None = None,
                 settings: config.Settings | None = None):
        self.channels, self.timeout = check_listen(channels, timeout)
        self.on_reconnect, self.on_lost = on_reconnect, on_lost
        self.settings = listen_settings(settings)
        self.reconnects = 0
        self._pending: collections.deque[Event] = collections.deque()
        self._conn: Any = None  # the driver's connection while there is one
        self._closed = self._interrupted = False
        self._last_activity = time.monotonic()
        self._logger = logging.getLogger(type(self).__module__)
        self._prepare()

    def _prepare(self) -> None:
        """The driver's own set-up, at the end of ``__init__``."""

    def __repr__(self) -> str:
        state = ("closed" if self._closed else "listening" if self._conn is not None
                 else "reconnecting")
        return (f"<{type(self).__name__} {', '.join(self.channels)} on "
                f"{self.settings.display_url} {state}>")

    @property
    def application_name(self) -> str:
        """What the listener's session shows in ``pg_stat_activity``."""
        return f"{self.settings.application_name}:listen"[:63]

    def _next_step(self, deadline: float | None) -> Event | float | Reconnect | None:
        """What ``next_event`` does now: return the Event or None this gives (None: closed,
        interrupted, or the deadline passed), reconnect (``RECONNECT``), or wait on the
        connection for at most the seconds this gives."""
        if self._closed:
            return None
        if self._pending:
            return self._pending.popleft()
        left = None if deadline is None else deadline - time.monotonic()
        if (left is not None and left <= 0) or self._interrupted:
            self._interrupted = False
            return None
        if self._conn is None:
            return RECONNECT
        return HEARTBEAT_SECONDS if left is None else min(left, HEARTBEAT_SECONDS)

    def _received(self, event: Event) -> None:
        """Keep an event the driver received, for ``next_event``."""
        self._pending.append(event)
        self._last_activity = time.monotonic()

    def _heartbeat_due(self) -> bool:
        """True when the connection has been quiet long enough to be checked."""
        return time.monotonic() - self._last_activity >= HEARTBEAT_SECONDS

    def _cannot(self, what: str, exc: BaseException) -> errors.ConnectionLost:
        return errors.ConnectionLost(f"cannot {what} on {self.settings.display_url}: "
                                     f"{first_line(exc)}")

    def _retry_pause(self, exc: errors.ConnectionLost, attempt: int,
                     deadline: float | None) -> float | None:
        """The pause before the next connection attempt after ``exc``; None to stop trying
        (closed, interrupted, or out of time)."""
        pause = None if self._closed or self._interrupted else retry_pause(attempt, deadline)
        if pause is not None:
            self._logger.info("listener: %s; retrying in %.2f s", exc, pause)
        return pause

    def _lost_noticed(self, why: BaseException | str) -> Any:
        """Log a loss the driver noticed (and dropped its connection for); returns what
        ``on_lost()`` returns."""
        self._logger.warning("listener on %s lost its connection (%s); reconnecting",
                       self.settings.display_url,
                       first_line(why) if isinstance(why, BaseException) else why)
        return None if self.on_lost is None else self.on_lost()

    def _reconnected(self) -> Any:
        """Count and log a reconnection; returns what ``on_reconnect()`` returns."""
        self.reconnects += 1
        self._logger.info("listener on %s reconnected", self.settings.display_url)
        return None if self.on_reconnect is None else self.on_reconnect()
