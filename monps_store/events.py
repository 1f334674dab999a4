"""Change events on PostgreSQL LISTEN/NOTIFY: sent when, and only when, a transaction commits.

    from monps_store import events
    with monps_store.unit_of_work():
        ...                                               # the change
        events.publish("odds_changed", {"match_ids": ["m1"]})  # delivered on commit only

    with events.listen("odds_changed", on_reconnect=resync) as listener:
        for event in listener:                            # event.channel, .payload, .pid
            ...

What this guarantees: a listener connected when a transaction commits receives each of its
events once, in the order they were published, and never one of a rolled-back transaction.
What it does not: nothing is kept for a listener that is not connected. A lost connection is
re-established (with backoff) and then ``on_reconnect()`` is called, so the caller can resync
what it may have missed; identical events of one transaction arrive as one.

A listener has a direct connection of its own: ``DATABASE_LISTEN_URL`` when set, else the
application settings. A transaction-mode PgBouncer delivers no notifications, and a standby
refuses LISTEN, so with ``DB_POOLER=pgbouncer`` the URL is required. Publishing works through
any connection, pooler included.

Channels are lower-case identifiers (``[a-z_][a-z0-9_]*``, at most 63 bytes). Payloads are
JSON (datetimes, dates, Decimals and UUIDs as strings); one notification holds at most
``MAX_PAYLOAD_BYTES`` of it: a larger one is refused, and ``publish_batched`` splits a list of
values over as many events as it needs.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import decimal
import json
import logging
import os
import re
import select
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Self

import peewee
import psycopg2
import psycopg2.extensions

from monps_store import config, database, errors
from monps_store.translate import first_line

if TYPE_CHECKING:
    from monps_store.models.base import BaseModel

logger = logging.getLogger(__name__)

MAX_PAYLOAD_BYTES = 7999  # the server refuses a payload of 8000 bytes or more
_CHANNEL = re.compile(r"[a-z_][a-z0-9_]*")
HEARTBEAT_SECONDS = 5.0  # an idle listener checks its connection this often
_BACKOFF = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0)  # seconds between reconnection attempts


@dataclasses.dataclass(frozen=True)
class Event:
    channel: str
    payload: Any     # the decoded JSON (the raw text if someone sent one that is not JSON)
    pid: int         # the server process of the publishing session


def check_channel(channel: object) -> str:
    """``channel`` if it is a valid channel name, else InvalidInput naming it."""
    if not isinstance(channel, str) or not _CHANNEL.fullmatch(channel) or len(channel) > 63:
        raise errors.InvalidInput(
            f"bad channel name {channel!r}: use lower-case letters, digits and underscores, "
            "starting with a letter or underscore, at most 63 characters")
    return channel


def _json_default(value: object) -> str | list:
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (decimal.Decimal, uuid.UUID)):
        return str(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"a {type(value).__name__} is not JSON")


def _json(channel: str, payload: object) -> str:
    try:
        return json.dumps(payload, default=_json_default, ensure_ascii=False,
                          separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise errors.InvalidInput(f"event on {channel!r}: the payload cannot be sent as JSON "
                                  f"({exc})") from None


def _size(text: str) -> int:
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate
        raise errors.InvalidInput(f"an event payload holds text that is not valid Unicode: "
                                  f"{text[:60]!r}") from None


def encode(channel: str, payload: object) -> str:
    """The JSON text of ``payload``, checked to fit one notification."""
    text = _json(channel, payload)
    size = _size(text)
    if size > MAX_PAYLOAD_BYTES:
        raise errors.InvalidInput(
            f"event on {channel!r}: the payload is {size} bytes as JSON and one notification "
            f"holds at most {MAX_PAYLOAD_BYTES}; nothing was published. Send less (ids rather "
            "than rows), or split a list with events.publish_batched()")
    return text


def publish(channel: str, payload: object = None) -> None:
    """Queue an event in the current transaction: listeners receive it when the transaction
    commits, and never if it rolls back. Outside a unit of work (or ``atomic()``) it is
    refused, since there would be no commit to tie it to."""
    _send(check_channel(channel), [encode(channel, payload)], database.current())


def publish_batched(channel: str, key: str, values: Iterable, **fixed: object) -> int:
    """Publish ``{key: [...values], **fixed}`` as as many events as it takes for each to fit
    one notification (in the order of ``values``); returns how many were queued (none for no
    values). Like :func:`publish`, inside a transaction only."""
    return _publish_batched(check_channel(channel), key, values, fixed, database.current())


def _publish_batched(channel: str, key: str, values: Iterable, fixed: dict,
                     db: peewee.Database) -> int:
    values = list(values)
    if not values:
        return 0
    texts: list[str] = []
    overhead = _size(encode(channel, {key: [], **fixed}))
    batch: list = []
    size = overhead
    for value in values:
        item = _size(_json(channel, value)) + (1 if batch else 0)
        if overhead + item > MAX_PAYLOAD_BYTES:
            raise errors.InvalidInput(f"event on {channel!r}: the value {value!r:.60} alone "
                                      "does not fit one notification; nothing was published")
        if size + item > MAX_PAYLOAD_BYTES:
            texts.append(encode(channel, {key: batch, **fixed}))
            batch, size = [], overhead
            item -= 1
        batch.append(value)
        size += item
    texts.append(encode(channel, {key: batch, **fixed}))
    _send(channel, texts, db)
    return len(texts)


def changes_channel(model: type[peewee.Model]) -> str | None:
    """``<table>_changed`` for a model whose writes publish (``publish_changes`` set), else
    None."""
    return f"{model._meta.table_name}_changed" if getattr(model, "publish_changes", False) \
        else None


def changes_field(model: type[BaseModel]) -> peewee.Field:
    """The field a publishing model's events carry: its primary key (``publish_changes =
    True``, payload ``ids``) or the named field (``"match_id"``: payload ``match_ids``)."""
    setting = model.publish_changes
    return model._meta.primary_key if setting is True else model._meta.fields[setting]


def publish_changes(model: type[BaseModel], values: Iterable) -> int:
    """Publish ``<table>_changed`` for the written rows of ``model`` whose ``changes_field``
    values are ``values`` (each once, split to fit): ``{"table": "schema.table", "ids": [...]}``
    (or ``"match_ids"``, ...), in the transaction of the database the model writes through
    (``bind_ctx()`` included). Returns how many events were queued."""
    channel = changes_channel(model)
    if channel is None:
        return 0
    field = changes_field(model)
    key = "ids" if field is model._meta.primary_key else f"{field.name}s"
    unique = list(dict.fromkeys(v._pk if hasattr(v, "_pk") else v for v in values))
    table = f"{model._meta.schema}.{model._meta.table_name}"
    return _publish_batched(channel, key, unique, {"table": table}, model._meta.database)


def _send(channel: str, texts: list[str], db: peewee.Database) -> None:
    if not db.in_transaction():
        raise errors.InvalidInput(
            f"events.publish({channel!r}) outside a unit of work: an event is sent when a "
            "transaction commits; publish inside `with monps_store.unit_of_work():`")
    db.execute_sql("SELECT pg_notify(%s, text) FROM unnest(%s::text[]) AS t(text)",
                   (channel, texts))
    _notify_this_process_on_commit(db, channel, texts)


def _notify_this_process_on_commit(db: peewee.Database, channel: str, texts: list[str]) -> None:
    # This process's own cache learns of its commit at once, not a round trip later through
    # its listener (read-your-writes). On a connection lent by legacy code the commit is not
    # seen: the listener alone tells.
    from monps_store import cache

    def invalidate() -> None:
        for text in texts:
            cache.invalidate(channel, json.loads(text))

    try:
        db.after_commit(invalidate)
    except (errors.LegacyConnectionError, ValueError):
        pass


# -- listening ------------------------------------------------------------------------------


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


def decode(channel: str, text: str, pid: int) -> Event:
    try:
        payload = json.loads(text) if text else None
    except ValueError:
        payload = text
    return Event(channel, payload, pid)


def retry_pause(attempt: int, deadline: float | None) -> float | None:
    """Seconds to wait before reconnection attempt ``attempt + 1`` (backoff, cut short by the
    ``deadline`` on the monotonic clock); None when the deadline has passed."""
    pause = _BACKOFF[min(attempt, len(_BACKOFF) - 1)]
    if deadline is None:
        return pause
    left = deadline - time.monotonic()
    return min(pause, left) if left > 0 else None


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


class Listener:
    """Events of ``channels`` on a direct connection of its own, connected and listening as
    soon as it is made (nothing committed after that is missed while it stays connected).

    Iterating yields :class:`Event` objects; with ``timeout`` (seconds), the iteration ends
    when that long passes without an event. After a lost connection it reconnects (retrying
    with backoff, forever or until the timeout), listens again, then calls ``on_reconnect()``.
    ``on_lost()`` is called as soon as a loss is noticed. Use from one thread; ``close()`` it
    (or use it as a context manager)."""

    def __init__(self, channels: Iterable[str], *, timeout: float | None = None,
                 on_reconnect: Callable[[], Any] | None = None,
                 on_lost: Callable[[], Any] | None = None,
                 settings: config.Settings | None = None):
        self.channels, self.timeout = check_listen(channels, timeout)
        self.on_reconnect, self.on_lost = on_reconnect, on_lost
        self.settings = listen_settings(settings)
        self.reconnects = 0
        self._pending: collections.deque[Event] = collections.deque()
        self._conn = None
        self._closed = self._interrupted = False
        self._last_activity = time.monotonic()
        self._conn = self._connect()
        self._wake_read, self._wake_write = os.pipe()  # interrupt() wakes a waiting call
        os.set_blocking(self._wake_write, False)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "listening" if self._conn else "reconnecting"
        return f"<Listener {', '.join(self.channels)} on {self.settings.display_url} {state}>"

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
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._closed:
            if self._pending:
                return self._pending.popleft()
            left = None if deadline is None else deadline - time.monotonic()
            if (left is not None and left <= 0) or self._interrupted:
                self._interrupted = False
                return None
            if self._conn is None:
                self._reconnect(deadline)
                continue
            self._wait(HEARTBEAT_SECONDS if left is None else min(left, HEARTBEAT_SECONDS))
        return None

    # -- the connection ------------------------------------------------------------------

    def _connect(self) -> psycopg2.extensions.connection:
        params = self.settings.connect_params()
        params["application_name"] = f"{self.settings.application_name}:listen"[:63]
        # A peer that vanished without closing the connection is noticed within a minute.
        for key, value in (("keepalives", 1), ("keepalives_idle", 30),
                           ("keepalives_interval", 10), ("keepalives_count", 3)):
            params.setdefault(key, value)
        try:
            conn = psycopg2.connect(**params)
        except psycopg2.Error as exc:
            raise errors.ConnectionLost(
                f"cannot connect to listen on {self.settings.display_url}: "
                f"{first_line(exc)}") from None
        conn.set_isolation_level(psycopg2.extensions.ISOLATION_LEVEL_AUTOCOMMIT)
        try:
            with conn.cursor() as cursor:
                for channel in self.channels:
                    cursor.execute(f'LISTEN "{channel}"')  # checked: [a-z_][a-z0-9_]*
        except psycopg2.Error as exc:
            conn.close()
            raise errors.ConnectionLost(f"cannot LISTEN on {self.settings.display_url}: "
                                        f"{first_line(exc)}") from None
        self._last_activity = time.monotonic()
        return conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except psycopg2.Error:
                pass

    def _lost(self, exc: BaseException) -> None:
        logger.warning("listener on %s lost its connection (%s); reconnecting",
                       self.settings.display_url, first_line(exc))
        self._drop()
        if self.on_lost is not None:
            self.on_lost()

    def _reconnect(self, deadline: float | None) -> None:
        for attempt in range(1 << 30):
            if self._closed or self._interrupted:
                return
            try:
                self._conn = self._connect()
            except errors.ConnectionLost as exc:
                pause = retry_pause(attempt, deadline)
                if pause is None:
                    return
                logger.info("listener: %s; retrying in %.2f s", exc, pause)
                select.select([self._wake_read], [], [], pause)  # interrupt() cuts it short
                if self._interrupted:
                    return
                continue
            self.reconnects += 1
            logger.info("listener on %s reconnected", self.settings.display_url)
            if self.on_reconnect is not None:
                self.on_reconnect()
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
            elif time.monotonic() - self._last_activity >= HEARTBEAT_SECONDS:
                with conn.cursor() as cursor:  # a dead connection shows itself here
                    cursor.execute("SELECT 1")
                self._last_activity = time.monotonic()
            while conn.notifies:
                notify = conn.notifies.pop(0)
                self._pending.append(decode(notify.channel, notify.payload, notify.pid))
        except (psycopg2.Error, OSError, ValueError) as exc:  # ValueError: a closed socket
            if self._closed:
                return
            self._lost(exc)


def listen(*channels: str, timeout: float | None = None,
           on_reconnect: Callable[[], Any] | None = None) -> Listener:
    """A :class:`Listener` for ``channels``: iterate it for events."""
    return Listener(channels, timeout=timeout, on_reconnect=on_reconnect)
