"""The pooled PostgreSQL database every model is bound to, and the scopes that use it.

    import monps_store
    monps_store.init_db()                      # settings from the environment / .env
    with monps_store.connection():             # a pooled connection, always given back
        ...
    monps_store.pool_status()                  # {"max_connections": 15, "in_use": 0, ...}

``db`` is a :class:`~monps_store.pool.MonpsDatabase` that exists unconfigured from import on
(peewee's deferred initialisation); ``init_db`` configures it and may be called again to
reconfigure. ``current()`` is the database the repositories use right now: ``db``, or the
database a scope routed this thread or task to (:mod:`monps_store.routing`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from typing import Any

import peewee

from monps_store import config, errors, routing
from monps_store.positions import wal_position
from monps_store.psycopg_database import MonpsDatabase
from monps_store.translate import first_line

__all__ = ["MonpsDatabase", "active_settings", "advisory_lock_key", "check_connection",
           "close_db", "connection", "current", "db", "first_line", "init_db", "pool_status",
           "register_companion", "server_version", "wal_position"]

logger = logging.getLogger(__name__)


def advisory_lock_key(name: str) -> int:
    """A stable signed 64-bit PostgreSQL advisory-lock key for ``name``."""
    digest = hashlib.sha256(name.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


# Peewee code written against ``monps_store.db`` (execute_sql, atomic, connection_context, ...)
# runs unchanged in aio.run(): there each of these methods is the task's async database's, on
# its connection and in its transaction. On the event loop's own thread outside aio.run(), the
# ones that would do I/O refuse (AsyncBridgeRequired) instead of blocking the loop.
routing.route_methods(
    MonpsDatabase,
    io=("atomic", "batch_commit", "begin", "commit", "connect", "connection",
        "connection_context", "create_tables", "cursor", "drop_tables", "execute",
        "execute_sql", "get_columns", "get_foreign_keys", "get_indexes", "get_primary_keys",
        "get_tables", "get_views", "manual_commit", "rollback", "savepoint", "sequence_exists",
        "session_commit", "session_rollback", "session_start", "set_time_zone", "table_exists",
        "transaction", "__enter__", "__exit__"),
    state=("after_commit", "close", "in_transaction", "is_closed", "is_connection_usable",
           "last_insert_id", "pop_transaction", "push_transaction", "rows_affected",
           "top_transaction", "transaction_depth"))

db = MonpsDatabase(None)
db.routes = True  # the package's database only: other instances (replica pools) never route


def current() -> peewee.Database:
    """The database the repositories use right now (:data:`db`, or the async database inside
    ``aio.run()``, or a replica inside ``replica()``)."""
    return routing.routed(db)


def active_settings() -> config.Settings | None:
    """The settings of the database in use here (sync, or async inside ``aio.run()``)."""
    return getattr(routing.routed_to.get() or db, "settings", None)


def init_db(settings: config.Settings | None = None, *, url: str | None = None,
            **overrides) -> config.Settings:
    """Configure :data:`db` from ``settings``, else ``url``, else the environment / .env.

    ``overrides`` replace single settings (``init_db(url=..., pool_size=2)``). Calling it again
    reconfigures cleanly: the old pool is closed. Opens no connection. Returns the settings.
    """
    if settings is None:
        settings = config.from_url(url) if url is not None else config.load_settings()
    if overrides:
        settings = with_overrides(settings, overrides)
    db.configure(settings)
    return settings


def with_overrides(settings: config.Settings, overrides: dict[str, Any]) -> config.Settings:
    """``settings`` with single settings replaced (``init_db(url=..., pool_size=2)``); an
    unknown name is a ConfigError."""
    unknown = set(overrides) - {f.name for f in dataclasses.fields(settings)}
    if unknown:
        raise errors.ConfigError([f"unknown setting {name!r}" for name in sorted(unknown)])
    return dataclasses.replace(settings, **overrides)


# Pools that live beside db's (the replicas'): closed by close_db(), shown by pool_status().
# (A module above this one registers itself here, so this one never imports it.)
_companions: dict[str, tuple] = {}  # pool_status key -> (close function, status function)


def register_companion(key: str, close: Any, status: Any) -> None:
    _companions[key] = (close, status)


def close_db() -> None:
    """Close every pooled connection (a cron job's last step). ``init_db`` settings are kept."""
    if not db.deferred:
        db.close_all()
    for close, _status in _companions.values():
        close()


class connection:
    """A pooled connection for the scope, returned to the pool however the scope ends.

    Scopes nest: only the outermost one opens and returns the connection, so a function may
    open its own scope whether or not its caller already has one. An open scope is recorded
    on the thread's peewee context stack (``db._state.ctx``), beside peewee's own
    ``connection_context()``, so the legacy bridge can tell a scope from a connection that
    peewee merely autoconnected.
    """

    __slots__ = ("_database", "_opened")

    def __enter__(self) -> Any:
        database: Any = current()
        self._database = database
        self._opened = database.is_closed()
        if self._opened:
            database.connect()
        database._state.ctx.append(self)
        return database

    def __exit__(self, exc_type, exc, tb) -> None:
        database: Any = self._database
        contexts = database._state.ctx
        if self in contexts:  # gone if code inside closed the connection itself
            contexts.remove(self)
        if self._opened and not database.is_closed():
            database.close()


def check_connection() -> bool:
    """True when a round trip to the server works. Never raises (logs why at WARNING)."""
    try:
        with connection():
            db.execute_sql("SELECT 1").fetchone()
        return True
    except Exception as exc:  # by contract: any failure is a False, with the reason logged
        logger.warning("connection check failed: %s", first_line(exc))
        return False


def pool_status() -> dict:
    """Public pool figures: max_connections, in_use, idle, available, saturated, counters;
    ``replicas``: one entry per replica pool."""
    status = db.pool_status()
    for key, (_close, figures) in _companions.items():
        if figures is not None:
            status[key] = figures()
    return status


def server_version() -> str:
    """The server's version string, e.g. ``"16.2"``."""
    with connection():
        return db.execute_sql("SHOW server_version").fetchone()[0]
