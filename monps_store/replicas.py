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
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, SupportsFloat

import peewee

from monps_store import database, errors, positions, routing, translate
from monps_store.database import MonpsDatabase, db

if TYPE_CHECKING:
    from monps_store import config

logger = logging.getLogger(__name__)

RETRY_SECONDS = 2.0

# In recovery, the last replayed WAL position, and the replay lag in ms (0 when everything
# received is replayed: an idle primary is not lag).
HEALTH = """
SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text,
       CASE WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0
            ELSE COALESCE(extract(epoch FROM now() - pg_last_xact_replay_timestamp()) * 1000, 0)
       END
"""


class Replica:
    """One standby: its own pool (sync or async), and what the last check found."""

    def __init__(self, settings: config.Settings, pool: Any) -> None:
        self.settings = settings
        self.db = pool
        self.state = "unchecked"
        self.retry_at = 0.0
        self.lag_ms: float | None = None

    def note(self, state: str, detail: str = "") -> None:
        if state != self.state:
            log = logger.info if state == "ok" else logger.warning
            log("replica %s: %s%s", self.settings.display_url, state,
                f" ({detail})" if detail else "")
            self.state = state

    def judge(self, in_recovery: bool, replayed: str | None, lag_ms: SupportsFloat,
              needed: int, max_lag: int) -> bool:
        """Whether this replica may serve, from its health row; notes (and logs) its state."""
        self.lag_ms = float(lag_ms)
        if not in_recovery:
            self.note("not in recovery", "promoted, or not a standby")
            return False
        if self.lag_ms > max_lag:
            self.note("lagging", f"{self.lag_ms:.0f} ms > DB_REPLICA_MAX_LAG_MS={max_lag}")
            return False
        self.note("ok")
        return positions.wal_position(replayed) >= needed  # else behind this process's commit

    def status(self) -> dict:
        return {"url": self.settings.display_url, "state": self.state, "lag_ms": self.lag_ms,
                **self.db.pool_status()}


class ReplicaSet:
    """The standbys of one primary, chosen in turn. ``choose`` is sync code: the sync scope
    runs it on its thread, ``aio.replica()`` in the greenlet bridge on async pools."""

    def __init__(self, members: Sequence[Replica]) -> None:
        self.members = list(members)
        self._lock = threading.Lock()
        self._next = 0

    def choose(self, needed: int, max_lag: int) -> Replica | None:
        """A replica fit to serve, left connected for the caller; None: the primary serves.
        ``needed``: the WAL position it must have replayed (read-your-writes)."""
        if not self.members:
            return None
        with self._lock:
            start, self._next = self._next, self._next + 1
        for offset in range(len(self.members)):
            member = self.members[(start + offset) % len(self.members)]
            if member.retry_at > time.monotonic():
                continue
            try:
                member.db.connect()
                in_recovery, replayed, lag_ms = member.db.execute_sql(HEALTH).fetchone()
            except (errors.ConnectionLost, errors.PoolExhausted, errors.StatementTimeout) as exc:
                member.db.close()
                member.retry_at = time.monotonic() + RETRY_SECONDS
                member.note("unreachable", translate.first_line(exc))
                continue
            if member.judge(in_recovery, replayed, lag_ms, needed, max_lag):
                return member
            member.db.close()
        return None

    def status(self) -> list[dict]:
        return [member.status() for member in self.members]


def required_position(primary: peewee.Database) -> int:
    """The WAL position a replica must have replayed before it serves this process, asking
    ``primary`` for its current one when a commit's own is unknown (sync code)."""
    def current() -> str | None:
        with primary.connection_context():
            return primary.execute_sql(positions.CURRENT_SQL).fetchone()[0]

    return positions.commits.required(current)


class _SyncReplicas:
    """The sync pools of ``db``'s replicas, rebuilt whenever ``init_db()`` runs again."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._built_for: config.Settings | None = None
        self._set = ReplicaSet([])

    def current(self) -> ReplicaSet:
        settings = db.settings
        with self._lock:
            if settings is not self._built_for:  # init_db() ran again: new pools
                for member in self._set.members:
                    member.db.close_all()
                self._set = ReplicaSet([Replica(s, _pool(s)) for s in
                                        (settings.replicas if settings else ())])
                self._built_for = settings
            return self._set

    def choose(self) -> Replica | None:
        replica_set = self.current()
        if not replica_set.members:
            return None
        settings = db.settings
        assert settings is not None  # members exist only once init_db() configured replicas
        return replica_set.choose(required_position(db), settings.replica_max_lag_ms)

    def close_all(self) -> None:
        for member in self.current().members:
            member.db.close_all()

    def status(self) -> list[dict]:
        return self.current().status()


def _pool(settings: config.Settings) -> MonpsDatabase:
    pool = MonpsDatabase(None)
    pool.configure(settings)
    return pool


def pools() -> list[MonpsDatabase]:
    """The sync replicas' pools, one per ``DATABASE_REPLICA_URLS`` entry."""
    return [member.db for member in _replicas.current().members]


def check() -> list[dict]:
    """Each configured replica as ``check`` reports it: reachable, in recovery, replay lag
    (ms) and replayed WAL position, or the error. Never raises for a replica's failure."""
    report = []
    for member in _replicas.current().members:
        entry: dict[str, object] = {"url": member.settings.display_url}
        try:
            with member.db.connection_context():
                in_recovery, replayed, lag_ms = member.db.execute_sql(HEALTH).fetchone()
            entry |= {"reachable": True, "in_recovery": in_recovery,
                      "lag_ms": round(float(lag_ms), 1), "replayed": replayed}
        except errors.MonpsStoreError as exc:
            entry |= {"reachable": False, "error": database.first_line(exc)}
        report.append(entry)
    return report


_replicas = _SyncReplicas()
database.register_companion("replicas", _replicas.close_all, _replicas.status)


@contextlib.contextmanager
def replica() -> Iterator[peewee.Database]:
    """A read-only connection scope on a replica fit to serve (see the module docstring), else
    on the primary. Repository reads inside work unchanged; a write raises
    :class:`~errors.ReplicaWriteRefused` and changes nothing. Nested scopes share the outer one.
    """
    if routing.routed_to.get() is not None:  # already in a replica scope (or the async bridge)
        yield database.current()
        return
    if db.in_transaction():
        raise errors.MonpsStoreError(
            "replica() inside an open transaction on the primary: its reads would miss the "
            "transaction's own writes. Read before or after the unit of work")
    member = _replicas.choose()
    target = member.db if member is not None else db
    token = routing.routed_to.set(target)
    try:
        with translate.replica_scope(), database.connection(), target.atomic():
            target.execute_sql("SET TRANSACTION READ ONLY")
            yield target
    finally:
        routing.routed_to.reset(token)
        if member is not None and not member.db.is_closed():
            member.db.close()
