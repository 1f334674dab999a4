"""The pooled PostgreSQL database every model is bound to, and the scopes that use it.

    import monps_store
    monps_store.init_db()                      # settings from the environment / .env
    with monps_store.connection():             # a pooled connection, always given back
        ...
    monps_store.pool_status()                  # {"max_connections": 15, "in_use": 0, ...}

``db`` exists unconfigured from import on (peewee's deferred initialisation); ``init_db``
configures it and may be called again to reconfigure. On top of peewee's pool this adds:

- a lost connection surfaces as :class:`~monps_store.errors.ConnectionLost` whichever driver
  error reported it, and the dead connection is thrown away, not pooled;
- an exhausted pool raises :class:`~monps_store.errors.PoolExhausted` after the wait timeout;
- at most ``pool_size`` idle connections are kept, overflow ones are closed when returned;
- ``pool_status()`` figures, and log lines on state changes only (saturation, dead connections).
"""

from __future__ import annotations

import contextvars
import dataclasses
import functools
import hashlib
import heapq
import logging
import threading
import uuid
from collections.abc import Callable
from typing import Any

import peewee
import psycopg2
import psycopg2.extensions
from playhouse.pool import MaxConnectionsExceeded, PooledPostgresqlDatabase
from playhouse.postgres_ext import FetchManyCursor

from monps_store import config, errors
from monps_store.translate import (
    connection_lost,
    first_line,
    is_disconnect,
    translated_error,
)

logger = logging.getLogger(__name__)


def advisory_lock_key(name: str) -> int:
    """A stable signed 64-bit PostgreSQL advisory-lock key for ``name``."""
    digest = hashlib.sha256(name.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


# -- which database the current code runs on -----------------------------------------------------

# Set by monps_store.aio while sync code runs in its greenlet bridge (per task: a ContextVar).
_routed: contextvars.ContextVar[peewee.Database | None] = contextvars.ContextVar(
    "monps_store_routed_database", default=None)
# Set by monps_store.aio: raises when package models are used directly on a running event loop.
outside_bridge: Callable[[], None] | None = None


def routed(default: peewee.Database) -> peewee.Database:
    """The database for code running now: the async one inside ``aio.run()``, else
    ``default``. The models' metadata and the repositories ask here."""
    database = _routed.get()
    if database is not None:
        return database
    if outside_bridge is not None:
        outside_bridge()
    return default


def wal_position(text: str | None) -> int:
    """A ``pg_lsn`` text (``'16/B374D848'``) as an integer, for comparisons; 0 for None."""
    if not text:
        return 0
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


def active_settings() -> config.Settings | None:
    """The settings of the database in use here (sync, or async inside ``aio.run()``)."""
    return getattr(_routed.get() or db, "settings", None)


def current() -> peewee.Database:
    """The database the repositories use right now (:data:`db`, or the async database inside
    ``aio.run()``)."""
    return routed(db)


class _State(peewee._ConnectionState):
    """Peewee's per-thread connection state, plus whether that connection was found dead
    (``lost``) or had its session changed by borrowed-connection code (``tainted``): either
    way it is closed instead of pooled when returned."""

    def reset(self):
        super().reset()
        self.lost = False
        self.tainted = False

    def set_connection(self, conn):
        super().set_connection(conn)
        self.lost = False
        self.tainted = False


class _LocalState(_State, threading.local):
    pass


# The typecasters psycopg2 itself reads these types with (the module's objects, which a
# global register_type() by legacy code does not replace), for every cursor the models use.
_TYPECASTERS = tuple(getattr(psycopg2.extensions, name) for name in (
    "BOOLEAN", "INTEGER", "LONGINTEGER", "FLOAT", "DECIMAL", "UNICODE", "JSON", "JSONB",
    "PYDATE", "PYTIME", "PYDATETIME", "PYDATETIMETZ", "PYINTERVAL"))


class _Savepoint(peewee._savepoint):
    def rollback(self, begin=True):
        # The server ended the whole transaction with the session: nothing to roll back to.
        if not self.db._state.lost:
            super().rollback(begin)


class MonpsDatabase(PooledPostgresqlDatabase):
    """``PooledPostgresqlDatabase`` with dead-connection handling, pool figures and logging.

    Configure it with :func:`init_db` or, in peewee's deferred-initialisation idiom, with
    ``db.init(name, **params)`` (see :meth:`init`).
    """

    routes = False  # True for monps_store.db: the task's database inside aio.run()

    def __init__(self, database=None, *, thread_safe=True, autoconnect=True, field_types=None,
                 operations=None, **params):
        self.settings: config.Settings | None = None
        self.commit_position = 0  # WAL position after this process's last commit (replicas)
        self._position_unknown = False
        self._pool_size = 0
        self._echo = False
        self._open_keys = set()  # every connection this pool has opened and not yet closed
        self._reset_figures()
        super().__init__(None, thread_safe=thread_safe, autoconnect=autoconnect,
                         field_types=field_types, operations=operations)
        self._state = _LocalState() if thread_safe else _State()
        if database is not None:
            self.init(database, **params)

    def _reset_figures(self):
        self._saturated = False
        self._stats = dict.fromkeys(
            ("opened", "closed_overflow", "recycled", "dead_discarded", "tainted_discarded",
             "lost", "exhausted"), 0
        )

    # -- configuration -------------------------------------------------------------------

    def init(self, database, **params):
        """Peewee's deferred initialisation: ``db.init("monps", host=..., user=...,
        password=..., max_connections=20, stale_timeout=300, timeout=10)``.

        Takes what ``PooledPostgresqlDatabase(database, **params)`` takes, with peewee's
        meaning and defaults (every connection kept idle, ``timeout=None`` fails at once,
        ``timeout=0`` waits forever), and configures the database completely, as
        :func:`init_db` does; ``database`` may also be a ``postgresql://`` URL.
        A call on a configured database is merged into its settings, as peewee merges
        ``init()`` into its connection parameters: ``db.init(name, max_connections=50)``
        keeps the host, user and password. ``db.init(None)`` closes every connection and
        leaves the database unconfigured, forgetting its parameters."""
        if database is None:
            if self.settings is not None:
                self.close_all()
            super().init(None)
            self.settings = None
            return
        self.configure(config.from_init_params(database, self.settings, **params))

    def configure(self, settings: config.Settings) -> None:
        """(Re)bind to ``settings``: every pooled connection of the old configuration is closed."""
        if not self.deferred:
            self.close_all()
        params = settings.connect_params()
        params.pop("dbname", None)  # peewee passes the database name itself
        # peewee's init() merges into the old parameters: start clean so a reconfiguration
        # never keeps a stale password or host.
        self.connect_params: dict = {}
        self.server_version = None
        super().init(
            settings.database or "",
            max_connections=settings.max_connections,
            stale_timeout=settings.pool_recycle or None,
            **params,
        )
        self.deferred: bool = False  # a URL without a database name still configures the object
        # peewee: None fails at once, 0 waits forever; our 0 means "do not wait".
        self._wait_timeout = settings.pool_timeout or None
        self._stale_timeout = settings.pool_recycle or None
        self._max_connections = settings.max_connections
        self._pool_size = settings.pool_size
        self._reset_figures()
        self.settings = settings
        if settings.echo or self._echo:  # leave a level the application set alone
            logging.getLogger("peewee").setLevel(logging.DEBUG if settings.echo else logging.NOTSET)
            self._echo = settings.echo

    def connect(self, reuse_if_open=False):
        if self.deferred:
            raise errors.NotInitialised(
                "monps_store is not initialised: call monps_store.init_db() first"
            )
        try:
            return super().connect(reuse_if_open)
        except MaxConnectionsExceeded:
            with self._pool_lock:
                self._stats["exhausted"] += 1
            settings = self.settings
            assert settings is not None  # connect() refuses before configuration
            raise errors.PoolExhausted(
                f"connection pool exhausted: all {self._max_connections} connections are in use "
                f"(DB_POOL_SIZE={settings.pool_size} + DB_MAX_OVERFLOW={settings.max_overflow}), "
                f"none came free within DB_POOL_TIMEOUT={settings.pool_timeout:g}s"
            ) from None

    def _connect(self):
        with self._pool_lock:
            try:
                conn = super()._connect()
            except MaxConnectionsExceeded:
                # A caller found every connection taken (it waits, or is refused): the moment
                # worth a warning. A one-connection pool merely in use is not.
                if not self._saturated:
                    self._saturated = True
                    logger.warning(
                        "connection pool saturated: all %d connections in use, callers wait "
                        "up to DB_POOL_TIMEOUT", self._max_connections,
                    )
                raise
            except psycopg2.OperationalError as exc:
                # Only a failure to open a connection is ConnectFailed; peewee's own
                # "Connection already opened." stays its OperationalError (a programming error).
                where = self.settings.display_url if self.settings else "the database"
                raise errors.ConnectFailed(f"cannot connect to {where}: {first_line(exc)}") \
                    from exc
            key = self.conn_key(conn)
            if key not in self._open_keys:
                self._open_keys.add(key)
                self._stats["opened"] += 1
            return conn

    def _is_stale(self, timestamp):
        # Checked on checkout and on return; a stale connection is closed right after.
        stale = super()._is_stale(timestamp)
        if stale:
            self._stats["recycled"] += 1
        return stale

    def _close_raw(self, conn):
        self._open_keys.discard(self.conn_key(conn))
        super()._close_raw(conn)

    def _is_closed(self, conn):
        # peewee probes an idle connection with SELECT 1 on checkout; count what it drops.
        dead = super()._is_closed(conn)
        if dead:
            self._stats["dead_discarded"] += 1
            logger.info("discarded a dead idle connection; a new one will be opened")
        return dead

    def _close(self, conn, close_conn=False):
        with self._pool_lock:
            key = self.conn_key(conn)
            pool_conn = self._in_use.get(key)
            if pool_conn is not None and not close_conn and (
                    conn.closed or self._adapter.txn_status(conn) == self._adapter.txn_unknown):
                self._stats["dead_discarded"] += 1
                logger.warning("discarded a dead connection on return to the pool")
                close_conn = True
            elif pool_conn is not None and self._state.tainted:
                self._stats["tainted_discarded"] += 1
                logger.info("closed a connection whose session settings were changed")
                close_conn = True
            super()._close(conn, close_conn=close_conn)
            # Keep at most pool_size idle connections; the rest were overflow.
            while len(self._connections) > self._pool_size:
                _ts, _n, extra = heapq.heappop(self._connections)  # the oldest
                self._close_raw(extra)
                self._stats["closed_overflow"] += 1
            if self._saturated and len(self._in_use) < self._max_connections:
                self._saturated = False
                logger.info(
                    "connection pool no longer saturated: %d of %d in use",
                    len(self._in_use), self._max_connections,
                )

    def pool_status(self) -> dict:
        with self._pool_lock:
            in_use, idle = len(self._in_use), len(self._connections)
            status = {
                "configured": not self.deferred,
                "max_connections": self._max_connections,
                "pool_size": self._pool_size,
                "max_overflow": self._max_connections - self._pool_size,
                "in_use": in_use,
                "idle": idle,
                "available": self._max_connections - in_use,
                "saturated": in_use >= self._max_connections,
                "wait_timeout": self._wait_timeout or 0,
                "recycle_seconds": self._stale_timeout or 0,
            }
            status.update(self._stats)
            return status

    # -- lost connections ----------------------------------------------------------------

    def _lost(self, exc) -> bool:
        """Whether ``exc`` means this thread's connection is dead (and remember it)."""
        conn = self._state.conn
        dead = (conn is not None and conn.closed) or is_disconnect(exc)
        if dead and not self._state.lost:
            self._state.lost = True
            with self._pool_lock:
                self._stats["lost"] += 1
            logger.warning("database connection lost: %s", first_line(exc))
        return dead

    def _raise_lost(self, exc):
        raise connection_lost(exc) from exc

    def cursor(self, named_cursor=None):
        """A plain psycopg2 cursor on this thread's connection, reading values with psycopg2's
        own typecasters: whatever cursor factory the connection carries (a lent legacy
        connection made with ``RealDictCursor``, a ``LoggingConnection``) and whatever
        typecasters legacy code registered globally, models get the values they stored."""
        if self._state.lost:
            if self.in_transaction():
                raise errors.ConnectionLost(
                    "the database connection was lost earlier in this transaction; "
                    "leave the transaction and retry the unit of work"
                )
            logger.info("reconnecting after a lost connection")
            self._reconnect()
        if self.is_closed():
            if not self.autoconnect:
                raise peewee.InterfaceError("Error, database connection not opened.")
            self.connect()
        if named_cursor:
            cursor = self._server_side_cursor()
        else:
            cursor = self._state.conn.cursor(cursor_factory=psycopg2.extensions.cursor)
        for typecaster in _TYPECASTERS:  # cursor scope: the connection's own are untouched
            psycopg2.extensions.register_type(typecaster, cursor)
        return cursor

    def _server_side_cursor(self):
        # As peewee's postgres_ext makes it: psycopg2 refuses a named cursor on an autocommit
        # connection unless it is WITH HOLD. Inside a transaction it stays an ordinary cursor
        # of that transaction; outside one, the server keeps the result past the implicit
        # commit, which a transaction-mode pooler may hand to another client.
        settings = self.settings
        if settings is not None and settings.pooler != "none" and not self.in_transaction():
            raise errors.InvalidInput(
                "a server-side cursor outside a transaction behind DB_POOLER=pgbouncer: the "
                "pooler may send the next FETCH to another server connection. Read inside "
                "a unit of work (crud.iterate() opens one)")
        return self._state.conn.cursor(name=f"monps_{uuid.uuid4().hex}", withhold=True,
                                       cursor_factory=psycopg2.extensions.cursor)

    def execute_sql(self, sql, params=None, named_cursor=None):
        """peewee's, and ``named_cursor=True`` reads the result through a server-side cursor
        (``playhouse.postgres_ext.ServerSide`` asks for one)."""
        if named_cursor:
            return self._execute_cursor(sql, params, named_cursor=named_cursor)
        return super().execute_sql(sql, params)

    def execute(self, query, named_cursor=False, array_size=None, **context_options):
        if not named_cursor:
            return super().execute(query, **context_options)
        sql, params = self.get_sql_context(**context_options).sql(query).query()
        return FetchManyCursor(self.execute_sql(sql, params, named_cursor=True), array_size)

    def _reconnect(self):
        # peewee's close() forgets the thread's open connection contexts together with the
        # connection; keep them, so that each scope still returns what it took.
        contexts = self._state.ctx
        try:
            self.close()  # returns nothing to the pool: _close sees the dead connection
            self.connect()
        finally:
            self._state.ctx = contexts

    def _execute_cursor(self, sql, params, **cursor_options):
        try:
            return super()._execute_cursor(sql, params, **cursor_options)
        except errors.MonpsStoreError:
            raise  # already the package's own (a lost connection noticed before sending)
        except (peewee.OperationalError, peewee.InterfaceError, peewee.DataError,
                peewee.InternalError, ValueError) as exc:
            self.raise_translated(exc)
            raise

    def raise_translated(self, exc: BaseException) -> None:
        """Raise the package's own error for the driver (or peewee) error ``exc`` when it has
        one, and return otherwise (the caller re-raises ``exc``): a dead connection is
        :class:`~errors.ConnectionLost`, the rest as :func:`translated_error` says.

        Code that runs raw cursors (COPY) calls it too, since peewee never sees their errors.
        The transaction, if any, is rolled back by whoever opened it."""
        if self._lost(exc):
            self._raise_lost(exc)
        error = translated_error(exc, self.settings)
        if error is not None:
            raise error from exc

    def begin(self, isolation_level=None):
        # The level goes in each BEGIN (peewee's way on autocommit connections), never into
        # session state, which a transaction-mode pooler would hand to other clients.
        try:
            level = config.isolation_level(isolation_level, "atomic(isolation_level=...)")
        except ValueError as exc:
            raise errors.InvalidInput(str(exc)) from None
        if level is None and self.settings is not None:
            level = self.settings.isolation_level
        try:
            super().begin(level)
            settings = self.settings
            if settings is not None and settings.pooler != "none" and settings.statement_timeout:
                # Behind a transaction-mode pooler: the timeout for this transaction only.
                self.cursor().execute(
                    f"SET LOCAL statement_timeout = {int(settings.statement_timeout)}")
        except errors.MonpsStoreError:
            raise
        except (peewee.OperationalError, peewee.InterfaceError) as exc:
            if self._lost(exc):
                self._raise_lost(exc)
            raise

    def commit(self):
        if self._state.lost:
            raise errors.ConnectionLost("cannot commit: the database connection was lost")
        try:
            result = super().commit()
        except errors.MonpsStoreError:
            raise
        except (peewee.OperationalError, peewee.InterfaceError) as exc:
            if self._lost(exc):
                self._raise_lost(exc)
            raise
        if self.settings is not None and self.settings.replicas:
            self._note_commit_position()
        return result

    def _note_commit_position(self):
        # Read-your-writes on replicas: the WAL position just after this commit, which a
        # replica must have replayed before it may serve this process (one round trip, only
        # when replicas are configured). If it cannot be read, the commit still stands: the
        # next replica scope asks the primary for its position instead.
        try:
            cursor = self.cursor()
            cursor.execute("SELECT pg_current_wal_insert_lsn()::text")
            position = wal_position(cursor.fetchone()[0])
        except Exception:  # the commit succeeded; only the position is unknown
            logger.debug("could not read the WAL position after a commit", exc_info=True)
            self._position_unknown = True
            return
        self.note_position(position)

    def note_position(self, position: int) -> None:
        """Record a WAL position this process committed at (the async API reports its
        commits here too): replicas must have replayed it before they serve."""
        with self._pool_lock:
            self.commit_position = max(self.commit_position, position)

    def required_position(self) -> int:
        """The WAL position a replica must have replayed before it may serve this process."""
        if self._position_unknown:
            with connection():
                text = self.execute_sql("SELECT pg_current_wal_lsn()::text").fetchone()[0]
            with self._pool_lock:
                self.commit_position = max(self.commit_position, wal_position(text))
                self._position_unknown = False
        return self.commit_position

    def rollback(self):
        if self._state.lost:
            return  # the server rolled back when the session ended
        try:
            return super().rollback()
        except errors.MonpsStoreError:
            raise
        except (peewee.OperationalError, peewee.InterfaceError) as exc:
            if self._lost(exc):
                return
            raise

    def savepoint(self):
        return _Savepoint(self)

    def set_isolation_level(self, isolation_level):
        """peewee's: the level of every transaction begun from now on (None: the server's)."""
        if self.settings is None:
            raise errors.NotInitialised(
                "monps_store is not initialised: call monps_store.init_db() first")
        try:
            level = config.isolation_level(isolation_level, "set_isolation_level()")
        except ValueError as exc:
            raise errors.InvalidInput(str(exc)) from None
        self.settings = dataclasses.replace(self.settings, isolation_level=level)

    def after_commit(self, fn):
        # On a lent legacy connection the commit is the legacy code's, out of peewee's
        # sight: a callback queued here would be dropped without a word.
        if self._state.transactions and getattr(self._state.transactions[0],
                                                 "commits_elsewhere", False):
            raise errors.LegacyConnectionError(
                "after_commit() on a connection lent by legacy code: monps_store does not see "
                "the legacy commit; call the function after conn.commit() instead")
        return super().after_commit(fn)


# -- monps_store.db inside aio.run() -----------------------------------------------------------
# Peewee code written against ``monps_store.db`` (execute_sql, atomic, connection_context, ...)
# runs unchanged in aio.run(): there each of these methods is the task's async database's,
# on its connection and in its transaction. On the event loop's own thread outside aio.run(),
# the ones that would do I/O refuse (AsyncBridgeRequired) instead of blocking the loop.
_ROUTED_IO = (
    "atomic", "batch_commit", "begin", "commit", "connect", "connection", "connection_context",
    "create_tables", "cursor", "drop_tables", "execute", "execute_sql", "get_columns",
    "get_foreign_keys", "get_indexes", "get_primary_keys", "get_tables", "get_views",
    "manual_commit", "rollback", "savepoint", "sequence_exists", "session_commit",
    "session_rollback", "session_start", "set_time_zone", "table_exists", "transaction",
    "__enter__", "__exit__")
_ROUTED_STATE = (
    "after_commit", "close", "in_transaction", "is_closed", "is_connection_usable",
    "last_insert_id", "pop_transaction", "push_transaction", "rows_affected",
    "top_transaction", "transaction_depth")


def _routed_method(name: str, io: bool) -> Callable:
    own = getattr(MonpsDatabase, name)

    @functools.wraps(own)
    def method(self, *args, **kwargs):
        if self.routes:
            target = _routed.get()
            if target is not None and target is not self:
                return getattr(target, name)(*args, **kwargs)
            if io and outside_bridge is not None:
                outside_bridge()
        return own(self, *args, **kwargs)

    return method


for _name in _ROUTED_IO + _ROUTED_STATE:
    setattr(MonpsDatabase, _name, _routed_method(_name, _name in _ROUTED_IO))

db = MonpsDatabase(None)
db.routes = True  # the package's database only: other instances (replica pools) never route


def init_db(settings: config.Settings | None = None, *, url: str | None = None,
            **overrides) -> config.Settings:
    """Configure :data:`db` from ``settings``, else ``url``, else the environment / .env.

    ``overrides`` replace single settings (``init_db(url=..., pool_size=2)``). Calling it again
    reconfigures cleanly: the old pool is closed. Opens no connection. Returns the settings.
    """
    if settings is None:
        settings = config.from_url(url) if url is not None else config.load_settings()
    if overrides:
        settings = _replace(settings, overrides)
    db.configure(settings)
    return settings


def _replace(settings, overrides):
    unknown = set(overrides) - {f.name for f in dataclasses.fields(settings)}
    if unknown:
        raise errors.ConfigError([f"unknown setting {name!r}" for name in sorted(unknown)])
    return dataclasses.replace(settings, **overrides)


# Pools that live beside db's (the replicas'): closed by close_db(), shown by pool_status().
# (A module above this one registers itself here, so this one never imports it.)
_companions: dict[str, tuple] = {}  # pool_status key -> (close function, status function)


def register_companion(key: str, close, status) -> None:
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
