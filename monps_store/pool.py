"""The psycopg2 pool: peewee's ``PooledPostgresqlDatabase`` with the package's pool policy and a
lock that guards bookkeeping only.

    pool = Pool(None)
    pool.configure(settings)            # or pool.init("monps", host=..., max_connections=20)

peewee holds its pool lock, and the database-wide lock of ``connect()``/``close()``, while it
probes an idle connection (``SELECT 1``), opens a new one or closes one: a connection stuck
on a silent peer or a stopped backend then stalls every thread's checkout and return, and
``pool_status()``. Here the locks are held only to move connections between the idle heap and
the in-use map; the probe, the connect, the rollback of a returned connection and the close run
after they are released, so a stuck connection costs only the thread that holds it.

What the pool counts and says comes from :class:`~monps_store.policy.PoolPolicy`, shared with
the async pool. :class:`~monps_store.database.MonpsDatabase` adds statements, transactions and
lost connections on top.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time

import peewee
import psycopg2
from peewee import __exception_wrapper__  # type: ignore[attr-defined]  # peewee's own
from playhouse.pool import (
    MaxConnectionsExceeded,
    PoolConnection,
    PooledDatabase,
    PooledPostgresqlDatabase,
)

from monps_store import config, errors
from monps_store.policy import PoolPolicy

logger = logging.getLogger("monps_store.database")


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


def not_initialised() -> errors.NotInitialised:
    return errors.NotInitialised("monps_store is not initialised: call monps_store.init_db() "
                                 "first")


class Pool(PoolPolicy, PooledPostgresqlDatabase):
    """peewee's ``PooledPostgresqlDatabase`` with the package's pool policy (figures,
    saturation, messages), its configuration from :class:`~monps_store.config.Settings`, and
    checkout and return that do their I/O outside the locks."""

    _connections: list  # peewee's idle heap: (timestamp, counter, connection)
    _in_use: dict  # peewee's: connection key -> PoolConnection

    def __init__(self, database=None, *, thread_safe=True, autoconnect=True, field_types=None,
                 operations=None, **params):
        self.settings: config.Settings | None = None
        self._pool_size = 0
        self._opening = 0  # connections being opened, outside the lock, counted against max
        self._echo = False
        self._reset_figures()
        super().__init__(None, thread_safe=thread_safe, autoconnect=autoconnect,
                         field_types=field_types, operations=operations)
        self._state = _LocalState() if thread_safe else _State()
        if database is not None:
            self.init(database, **params)

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
        super().init(settings.database or "", max_connections=settings.max_connections,
                     stale_timeout=settings.pool_recycle or None, **params)
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

    # -- checkout and return: the locks guard bookkeeping, I/O happens outside them ------------

    def connect(self, reuse_if_open=False):
        # peewee's Database.connect() and PooledDatabase.connect(), without the database-wide
        # lock around _connect(): the connection state is this thread's own.
        if self.deferred:
            raise not_initialised()
        deadline = None
        while True:
            if not self._state.closed:
                if reuse_if_open:
                    return False
                raise peewee.OperationalError("Connection already opened.")
            self._state.reset()
            try:
                with __exception_wrapper__:
                    self._state.set_connection(self._connect())
                    if self.server_version is None:
                        self._set_server_version(self._state.conn)
                    self._initialize_connection(self._state.conn)
                return True
            except MaxConnectionsExceeded:
                if deadline is None:
                    deadline = time.monotonic() + (self._wait_timeout or 0)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise self._exhausted() from None
                with self._pool_available:
                    self._pool_available.wait(timeout=min(remaining, 1.0))

    def _connect(self):
        while True:
            with self._pool_lock:
                if self._connections:
                    timestamp, _n, conn = heapq.heappop(self._connections)
                    self._in_use[self.conn_key(conn)] = PoolConnection(timestamp, conn,
                                                                       time.time())
                elif len(self._in_use) + self._opening >= self._max_connections:
                    # Every connection taken: callers wait, or are refused.
                    self._note_saturated(self._max_connections)
                    raise MaxConnectionsExceeded("Exceeded maximum connections.")
                else:
                    self._opening += 1
                    conn = None
            if conn is None:
                return self._open()
            # Outside the lock: the age check and the probe (a round trip).
            if self._stale_timeout and self._is_stale(timestamp):
                self._count("recycled")
            elif self._is_closed(conn):
                self._count("dead_discarded")
                logger.info("discarded a dead idle connection; a new one will be opened")
            else:
                return conn
            self._discard(conn)

    def _open(self):
        try:
            conn = super(PooledDatabase, self)._connect()  # the driver's, not the pool's
        except psycopg2.OperationalError as exc:
            raise self._connect_failed(exc) from exc
        finally:
            with self._pool_lock:
                self._opening -= 1
                self._pool_available.notify()
        with self._pool_lock:
            now = time.time()
            self._in_use[self.conn_key(conn)] = PoolConnection(now, conn, now)
        self._count("opened")
        return conn

    def _discard(self, conn) -> None:
        """Forget ``conn`` and close it (outside the lock); a waiting caller may open one."""
        with self._pool_lock:
            self._in_use.pop(self.conn_key(conn), None)
            self._pool_available.notify()
        self._close_raw(conn)

    def close(self):
        # peewee's Database.close(), without the database-wide lock around _close().
        if self.deferred:
            raise not_initialised()
        if self.in_transaction():
            raise peewee.OperationalError("Attempting to close database while transaction is "
                                          "open.")
        is_open = not self._state.closed
        try:
            if is_open:
                with __exception_wrapper__:
                    self._close(self._state.conn)
        finally:
            self._state.reset()
        return is_open

    def _close(self, conn, close_conn=False):
        # What the connection is, decided before the lock: a dead or tainted one is closed,
        # one left in a transaction is rolled back (a round trip), a healthy one is pooled.
        dead = conn.closed or self._adapter.txn_status(conn) == self._adapter.txn_unknown
        # Session changes by code that used the raw connection (autocommit switched off, as
        # conn.set_isolation_level() does): the next user's writes would never commit.
        tainted = self._state.tainted or (not dead and not conn.autocommit)
        usable = not (close_conn or dead or tainted) and self._can_reuse(conn)
        closing, said = [], None
        with self._pool_lock:
            pool_conn = self._in_use.pop(self.conn_key(conn), None)
            if close_conn:
                closing.append(conn)
            elif pool_conn is None:
                pass  # not this pool's (peewee ignores it too)
            elif dead or not (tainted or usable):
                self._count("dead_discarded")
                said = logging.WARNING, "discarded a dead connection on return to the pool"
                closing.append(conn)
            elif tainted:
                self._count("tainted_discarded")
                said = logging.INFO, "closed a connection whose session settings were changed"
                closing.append(conn)
            elif self._stale_timeout and self._is_stale(pool_conn.timestamp):
                self._count("recycled")
                closing.append(conn)
            else:
                self._heap_counter += 1
                heapq.heappush(self._connections,
                               (pool_conn.timestamp, self._heap_counter, conn))
            # Keep at most pool_size idle connections; the rest were overflow.
            while len(self._connections) > self._pool_size:
                closing.append(heapq.heappop(self._connections)[2])  # the oldest
                self._count("closed_overflow")
            self._note_unsaturated(len(self._in_use), self._max_connections)
            self._pool_available.notify()
        if said is not None:
            logger.log(*said)
        for each in closing:
            self._close_raw(each)

    def close_idle(self):
        with self._pool_lock:
            idle, self._connections = self._connections, []
        for _ts, _n, conn in idle:
            self._close_raw(conn)

    def close_stale(self, age=600):
        cutoff = time.time() - age
        with self._pool_lock:
            stale = [key for key, held in self._in_use.items() if held.checked_out < cutoff]
            closing = [self._in_use.pop(key).connection for key in stale]
            self._pool_available.notify_all()
        for conn in closing:
            self._close_raw(conn)
        return len(closing)

    def close_all(self):
        if not self.deferred:
            self.close()  # as peewee's: refused inside a transaction
        with self._pool_lock:
            closing = [conn for _ts, _n, conn in self._connections]
            closing += [held.connection for held in self._in_use.values()]
            self._connections, self._in_use = [], {}
            self._pool_available.notify_all()
        for conn in closing:
            self._close_raw(conn)

    def pool_status(self) -> dict:
        with self._pool_lock:
            in_use, idle = len(self._in_use), len(self._connections)
        return self._status(in_use, idle, configured=not self.deferred,
                            max_connections=self._max_connections, pool_size=self._pool_size,
                            wait_timeout=self._wait_timeout or 0,
                            recycle=self._stale_timeout or 0)

