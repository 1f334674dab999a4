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

This module sends; it knows nobody who listens. The wire format is :mod:`.payloads`, the
listener :mod:`.listener`; code of this process that wants its own commits' events at once
(the cache) registers with :func:`on_commit_published`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping

import peewee

from monps_store import database, errors
from monps_store.listener import Listener, listen
from monps_store.payloads import MAX_PAYLOAD_BYTES, Event, batches, check_channel, encode

__all__ = ["MAX_PAYLOAD_BYTES", "Event", "Listener", "check_channel", "encode", "listen",
           "on_commit_published", "publish", "publish_batched", "publish_batched_on"]

# Called with (channel, payload) for each event of this process's transactions as they commit.
_subscribers: list[Callable[[str, object], object]] = []


def on_commit_published(subscriber: Callable[[str, object], object]) -> None:
    """Have ``subscriber(channel, payload)`` called for each event this process publishes,
    when (and only if) its transaction commits, in the order published: before a round trip
    through a listener, so the process reads its own writes. Not called for events published
    on a connection lent by legacy code (its commit is not seen). Registering twice is once."""
    if subscriber not in _subscribers:
        _subscribers.append(subscriber)


def publish(channel: str, payload: object = None) -> None:
    """Queue an event in the current transaction: listeners receive it when the transaction
    commits, and never if it rolls back. Outside a unit of work (or ``atomic()``) it is
    refused, since there would be no commit to tie it to."""
    _send(database.current(), check_channel(channel), [encode(channel, payload)])


def publish_batched(channel: str, key: str, values: Iterable, **fixed: object) -> int:
    """Publish ``{key: [...values], **fixed}`` as as many events as it takes for each to fit
    one notification (in the order of ``values``); returns how many were queued (none for no
    values). Like :func:`publish`, inside a transaction only."""
    return publish_batched_on(database.current(), channel, key, values, fixed)


def publish_batched_on(db: peewee.Database, channel: str, key: str, values: Iterable,
                       fixed: Mapping[str, object]) -> int:
    """:func:`publish_batched` in the transaction of ``db`` (a model's own database, which
    ``bind_ctx()`` may have changed) rather than the current one's."""
    texts = batches(check_channel(channel), key, values, fixed)
    if texts:
        _send(db, channel, texts)
    return len(texts)


def _send(db: peewee.Database, channel: str, texts: list[str]) -> None:
    if not db.in_transaction():
        raise errors.InvalidInput(
            f"events.publish({channel!r}) outside a unit of work: an event is sent when a "
            "transaction commits; publish inside `with monps_store.unit_of_work():`")
    db.execute_sql("SELECT pg_notify(%s, text) FROM unnest(%s::text[]) AS t(text)",
                   (channel, texts))
    if not _subscribers:
        return

    def committed() -> None:
        for text in texts:
            payload = json.loads(text)
            for subscriber in list(_subscribers):
                subscriber(channel, payload)

    try:
        db.after_commit(committed)
    except (errors.LegacyConnectionError, ValueError):
        pass  # a connection lent by legacy code: its commit is not seen, the listener tells
