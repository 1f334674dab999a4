"""Reads from hot standbys (streaming replication), with read-your-writes.

    monps_store.init_db()                     # DATABASE_REPLICA_URLS=postgresql://...,...
    with monps_store.replica():               # a read-only scope on a replica
        teams.get_top_performers(10)          # the repositories, unchanged
    monps_store.pool_status()["replicas"]     # each replica's pool and state

A scope is served by a replica only when, checked on the connection it will use, the replica
is reachable, in recovery, no further behind than ``DB_REPLICA_MAX_LAG_MS``, and has replayed
this process's last commit on the primary (WAL positions compared, not a timer: with replicas
configured, each commit reads the primary's WAL position right after it). Otherwise the
primary serves the scope, read-only too. Each change of a replica's state is logged once. A
replica that could not be reached is tried again after ``RETRY_SECONDS``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, SupportsFloat

import peewee

from monps_store import database, errors, translate
from monps_store.database import MonpsDatabase, db

if TYPE_CHECKING:
    from monps_store import config
    from monps_store.aio import replicas as aio_replicas

logger = logging.getLogger(__name__)

RETRY_SECONDS = 2.0

# In recovery, the last replayed WAL position, and the replay lag in ms (0 when everything
# received is replayed: an idle primary is not lag).
_HEALTH = """
SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text,
       CASE WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0
            ELSE COALESCE(extract(epoch FROM now() - pg_last_xact_replay_timestamp()) * 1000, 0)
       END
"""


class _Replica:
    """One standby: its own pool, and what the last check found."""

    def __init__(self, settings: config.Settings) -> None:
        self.settings = settings
        self.db = MonpsDatabase(None)
        self.db.configure(settings)
        self.state = "unchecked"
        self.retry_at = 0.0
        self.lag_ms: float | None = None

    def note(self, state: str, detail: str = "") -> None:
        if state != self.state:
            log = logger.info if state == "ok" else logger.warning
            log("replica %s: %s%s", self.settings.display_url, state,
                f" ({detail})" if detail else "")
            self.state = state

    def status(self) -> dict:
        return {"url": self.settings.display_url, "state": self.state, "lag_ms": self.lag_ms,
                **self.db.pool_status()}


def judge(member: _Replica | aio_replicas._Replica, in_recovery: bool, replayed: str | None,
          lag_ms: SupportsFloat, needed: int, max_lag: int) -> bool:
    """Whether ``member`` may serve, from its health row; notes (and logs) its state. Shared
    by the sync and the async scopes."""
    member.lag_ms = float(lag_ms)
    if not in_recovery:
        member.note("not in recovery", "promoted, or not a standby")
        return False
    if member.lag_ms > max_lag:
        member.note("lagging", f"{member.lag_ms:.0f} ms > DB_REPLICA_MAX_LAG_MS={max_lag}")
        return False
    member.note("ok")
    return database.wal_position(replayed) >= needed  # else behind this process's last commit


class _Replicas:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._built_for: config.Settings | None = None
        self._members: list[_Replica] = []
        self._next = 0

    def members(self) -> list[_Replica]:
        settings = db.settings
        with self._lock:
            if settings is not self._built_for:  # init_db() ran again: new pools
                for member in self._members:
                    member.db.close_all()
                self._members = [_Replica(s) for s in (settings.replicas if settings else ())]
                self._built_for = settings
            return list(self._members)

    def choose(self) -> _Replica | None:
        """A replica fit to serve, left connected on this thread; None: the primary serves."""
        members = self.members()
        if not members:
            return None
        needed = db.required_position()  # read-your-writes: this process's last commit
        settings = db.settings
        assert settings is not None  # members exist only once init_db() configured replicas
        max_lag = settings.replica_max_lag_ms
        with self._lock:
            start, self._next = self._next, self._next + 1
        for offset in range(len(members)):
            member = members[(start + offset) % len(members)]
            if member.retry_at > time.monotonic():
                continue
            try:
                member.db.connect()
                in_recovery, replayed, lag_ms = member.db.execute_sql(_HEALTH).fetchone()
            except (errors.ConnectionLost, errors.PoolExhausted, errors.StatementTimeout) as exc:
                member.db.close()
                member.retry_at = time.monotonic() + RETRY_SECONDS
                member.note("unreachable", database.first_line(exc))
                continue
            if judge(member, in_recovery, replayed, lag_ms, needed, max_lag):
                return member
            member.db.close()
        return None

    def close_all(self) -> None:
        for member in self.members():
            member.db.close_all()

    def status(self) -> list[dict]:
        return [member.status() for member in self.members()]


def check() -> list[dict]:
    """Each configured replica as ``check`` reports it: reachable, in recovery, replay lag
    (ms) and replayed WAL position, or the error. Never raises for a replica's failure."""
    report = []
    for member in _replicas.members():
        entry: dict[str, object] = {"url": member.settings.display_url}
        try:
            with member.db.connection_context():
                in_recovery, replayed, lag_ms = member.db.execute_sql(_HEALTH).fetchone()
            entry |= {"reachable": True, "in_recovery": in_recovery,
                      "lag_ms": round(float(lag_ms), 1), "replayed": replayed}
        except errors.MonpsStoreError as exc:
            entry |= {"reachable": False, "error": database.first_line(exc)}
        report.append(entry)
    return report


_replicas = _Replicas()
database.register_companion("replicas", _replicas.close_all, _replicas.status)


@contextlib.contextmanager
def replica() -> Iterator[peewee.Database]:
    """A read-only connection scope on a replica fit to serve (see the module docstring), else
    on the primary. Repository reads inside work unchanged; a write raises
    :class:`~errors.ReplicaWriteRefused` and changes nothing. Nested scopes share the outer one.
    """
    if database._routed.get() is not None:  # already in a replica scope (or the async bridge)
        yield database.current()
        return
    if db.in_transaction():
        raise errors.MonpsStoreError(
            "replica() inside an open transaction on the primary: its reads would miss the "
            "transaction's own writes. Read before or after the unit of work")
    member = _replicas.choose()
    target = member.db if member is not None else db
    token = database._routed.set(target)
    try:
        with translate.replica_scope(), database.connection(), target.atomic():
            target.execute_sql("SET TRANSACTION READ ONLY")
            yield target
    finally:
        database._routed.reset(token)
        if member is not None and not member.db.is_closed():
            member.db.close()
