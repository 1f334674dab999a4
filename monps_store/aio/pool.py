"""The asyncpg-backed peewee database behind :mod:`monps_store.aio`.

``AsyncMonpsDatabase`` is peewee's ``playhouse.pwasyncio.AsyncPostgresqlDatabase`` with what
:class:`monps_store.database.MonpsDatabase` adds to the sync pool: settings from
:class:`monps_store.config.Settings`, the package's errors through the one mapping in
:mod:`monps_store.database`, lost connections discarded, pool figures. It also changes how
statements are run: pwasyncio prepares every statement anew (a Parse round trip per query);
here they go through asyncpg's per-connection statement cache, one round trip each, and the
pool skips asyncpg's per-release session reset (the package leaves no session state behind; a
transaction left open is rolled back on release).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import weakref
from typing import Any

import asyncpg
from peewee import __exception_wrapper__  # type: ignore[attr-defined]  # peewee's own
from playhouse.pwasyncio import (
    AsyncPgAtomic,
    AsyncPostgresqlConnection,
    AsyncPostgresqlDatabase,
    CursorAdapter,
    await_,
)

from monps_store import config, errors
from monps_store.database import db as sync_db
from monps_store.database import wal_position
from monps_store.translate import (
    connection_lost,
    first_line,
    is_disconnect,
    translated_error,
)

logger = logging.getLogger(__name__)

# libpq connection parameters a URL may carry, as asyncpg names them.
_ASYNCPG_PARAMS = {"sslmode": "ssl", "target_session_attrs": "target_session_attrs"}


def _json_bytes(value) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if hasattr(value, "adapted"):  # psycopg2.extras.Json, as the models' JSON fields make
        return value.dumps(value.adapted).encode()
    return json.dumps(value).encode()


def _jsonb_bytes(value) -> bytes:
    return b"\x01" + _json_bytes(value)  # jsonb's binary format: a version byte, then text


def _json_loads(data: bytes):
    return json.loads(data.decode())  # str: json.loads(bytes) sniffs the encoding first


def _jsonb_loads(data: bytes):
    return json.loads(data[1:].decode())


def connect_kwargs(settings: config.Settings) -> dict:
    """Keyword arguments for ``asyncpg.create_pool`` (reveals the password: driver use only)."""
    kwargs: dict[str, Any] = {"host": settings.host, "port": settings.port, "user": settings.user,
              "database": settings.database,
              "timeout": settings.connect_timeout or None}
    if settings.password:
        kwargs["password"] = settings.password.reveal()
    unsupported = []
    for key, value in settings.params:
        if key in _ASYNCPG_PARAMS:
            kwargs[_ASYNCPG_PARAMS[key]] = value
        else:
            unsupported.append(key)
    if unsupported:
        raise errors.ConfigError([f"connection parameter {key!r}: not supported by the async "
                                  "driver (asyncpg takes sslmode and target_session_attrs)"
                                  for key in unsupported])
    server_settings = {"application_name": settings.application_name}
    if settings.pooler != "none":
        # A transaction-mode pooler: no prepared statement outlives its transaction's server
        # connection (unnamed statements instead), no session settings at startup.
        kwargs["statement_cache_size"] = 0
    elif settings.statement_timeout:
        server_settings["statement_timeout"] = str(settings.statement_timeout)
    kwargs["server_settings"] = server_settings
    return {key: value for key, value in kwargs.items() if value is not None}


class _Connection(AsyncPostgresqlConnection):
    """One pooled asyncpg connection of a task; ``lost`` once it was found dead."""

    lost = False

    async def _execute(self, sql, params=None):
        if params:
            sql = self._translate_placeholders(sql)
        # asyncpg's statement cache: the Parse/Describe happens once per connection.
        records, status, _ = await self.conn._execute(
            sql, params or (), 0, None, return_status=True)
        description = [(key,) for key in records[0].keys()] if records else []
        parts = status.rsplit(b" ", 1)
        rowcount = int(parts[1]) if len(parts) == 2 and parts[1].isdigit() else len(records)
        return CursorAdapter(records, rowcount=rowcount, description=description)


class _ServerSideCursor:
    """A server-side cursor in the greenlet bridge (what ``named_cursor=True`` gives): rows
    fetched ``array_size`` at a time through asyncpg's cursor, closed (its savepoint rolled
    back, the connection free again) when exhausted or closed."""

    def __init__(self, cursor: CursorAdapter, array_size: int | None):
        self.cursor = cursor
        if array_size:
            cursor._buffer_size = array_size
        self.closed = False

    @property
    def description(self):
        return self.cursor.description

    def fetchone(self):
        row = self.cursor.fetchone() if not self.closed else None
        if row is None:
            self.close()
        return row

    def fetchmany(self, size=None):
        rows: list = []
        while len(rows) < (size or self.cursor._buffer_size):
            row = self.fetchone()
            if row is None:
                break
            rows.append(row)
        return rows

    def fetchall(self):
        return list(iter(self.fetchone, None))

    def __iter__(self):
        return iter(self.fetchone, None)

    def close(self):
        if not self.closed:
            self.closed = True
            await_(self.cursor.aclose())


class _Atomic(AsyncPgAtomic):
    """pwasyncio's transaction, with lost connections handled as the sync pool does: on a dead
    connection every statement and COMMIT raise ConnectionLost and the ROLLBACK is skipped.
    Takes peewee's ``isolation_level`` (the outermost transaction's; the settings' by default)
    besides asyncpg's own options."""

    def __init__(self, db, *args, isolation_level=None, **kwargs):
        try:
            self.isolation_level = config.isolation_level(
                isolation_level, "atomic(isolation_level=...)")
        except ValueError as exc:
            raise errors.InvalidInput(str(exc)) from None
        super().__init__(db, *args, **kwargs)
        self._begin_args: tuple[tuple, dict] = (args, kwargs)  # asyncpg's transaction() options

    async def _abegin(self):
        conn = self.db._state.conn
        if conn is not None and conn.lost and self.db.in_transaction():
            raise self.db.lost_earlier()
        outermost = not self.db.in_transaction()
        level = (self.isolation_level or self.db.settings.isolation_level) if outermost else None
        if level and "isolation" not in self._begin_args[1]:
            args, kwargs = self._begin_args
            self._begin_args = args, {**kwargs, "isolation": level.lower().replace(" ", "_")}
        try:
            transaction = await super()._abegin()
            settings = self.db.settings
            if outermost and settings.pooler != "none" and settings.statement_timeout:
                await self.db._state.conn.conn.execute(
                    f"SET LOCAL statement_timeout = {int(settings.statement_timeout)}")
            return transaction
        except Exception as exc:
            self.db.raise_translated(self.db._state.conn, exc)
            raise

    async def acommit(self, begin=True):
        conn = self.db._state.conn
        if conn is None or conn.lost:
            raise errors.ConnectionLost("cannot commit: the database connection was lost")
        try:
            await super().acommit(begin)
        except Exception as exc:
            self.db.raise_translated(conn, exc)
            raise
        if not self.db._state.transactions and self.db.settings.replicas:
            await self.db.note_commit_position(conn)


    async def arollback(self, begin=True):
        conn = self.db._state.conn
        if conn is None or conn.lost or conn.stale():
            return  # the server rolled back when the session ended
        try:
            await super().arollback(begin)
        except Exception as exc:
            if self.db.mark_lost(conn, exc):
                return
            raise


class AsyncMonpsDatabase(AsyncPostgresqlDatabase):
    """The async database: a task-local connection from an asyncpg pool sized by the settings.

    Made from :class:`~monps_store.config.Settings` (what ``aio.init_db()`` does), or as
    pwasyncio's ``AsyncPostgresqlDatabase`` is made: ``AsyncMonpsDatabase("monps",
    host=..., user=..., password=..., pool_size=10, pool_min_size=1, acquire_timeout=10,
    isolation_level=...)`` (``database`` a name or a ``postgresql://`` URL)."""

    def __init__(self, settings: config.Settings | str, *, pool_size: int = 10,
                 pool_min_size: int = 0, acquire_timeout: float = 10, **params: Any):
        if not isinstance(settings, config.Settings):
            # pwasyncio's parameters in the pool's terms: at most pool_size connections,
            # waiting up to acquire_timeout seconds for one (0: not at all).
            settings = config.from_init_params(
                settings, max_connections=pool_size, timeout=acquire_timeout or None,
                **params)
        elif params:
            raise TypeError(f"AsyncMonpsDatabase(settings) takes no connection parameters "
                            f"besides them: {', '.join(sorted(params))}")
        self.settings = settings
        self._kwargs = connect_kwargs(settings)
        self._min_size = min(pool_min_size, settings.max_connections)
        super().__init__(settings.database or "", pool_size=settings.max_connections,
                         acquire_timeout=settings.pool_timeout or 0)
        self._in_use = 0
        self.close_timeout = 10.0  # seconds close_pool() waits for connections in use
        self._cutting_off = False  # close_pool() cut off connections still in use
        # raw connection -> monotonic creation time
        self._born: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._figures = dict.fromkeys(("opened", "recycled", "dead_discarded", "lost",
                                       "exhausted"), 0)
        self._saturated = False

    # -- the pool --------------------------------------------------------------------------

    async def _create_pool_async(self):
        return await asyncpg.create_pool(
            min_size=self._min_size,  # 0 by default: nothing opened before the first acquire
            max_size=self.settings.max_connections,
            max_inactive_connection_lifetime=max(self.settings.pool_recycle, 0) or 300,
            init=self._init_connection,
            reset=self._reset_connection,
            **self._kwargs)

    async def _init_connection(self, conn):
        # JSON in both directions as text. The models' JSON fields wrap values for psycopg2
        # (bound to the sync database when the classes were made): accept those wrappers.
        await conn.set_type_codec("json", schema="pg_catalog", format="binary",
                                  encoder=_json_bytes, decoder=_json_loads)
        await conn.set_type_codec("jsonb", schema="pg_catalog", format="binary",
                                  encoder=_jsonb_bytes, decoder=_jsonb_loads)
        self._born[conn] = time.monotonic()
        self._figures["opened"] += 1

    async def _reset_connection(self, conn):
        # Instead of asyncpg's RESET ALL / UNLISTEN / advisory unlock round trip on every
        # release: the package keeps no session state; an open transaction is rolled back.
        if conn.is_in_transaction():
            await conn.execute("ROLLBACK")

    def _stale(self, proxy) -> bool:
        recycle = self.settings.pool_recycle
        raw = getattr(proxy, "_con", None)
        born = self._born.get(raw) if raw is not None else None
        return bool(recycle and born is not None and time.monotonic() - born > recycle)

    async def _acquire_conn_async(self):
        try:
            pool = await self._ensure_pool()
        except errors.MonpsStoreError:
            raise
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise self._connect_failed(exc) from exc
        limit = self.settings.max_connections
        wait = self.settings.pool_timeout
        if self._in_use >= limit:
            if not self._saturated:  # a caller finds every connection taken: it waits
                self._saturated = True
                logger.warning("async connection pool saturated: all %d connections in use, "
                               "callers wait up to DB_POOL_TIMEOUT", limit)
            if not wait:
                self._exhausted()
        self._in_use += 1
        try:
            while True:
                try:
                    proxy = await pool.acquire(timeout=wait or None)
                except TimeoutError:
                    self._exhausted()
                if not self._stale(proxy):
                    break
                self._figures["recycled"] += 1
                await proxy.close()  # the pool opens a new one on the next acquire
                await pool.release(proxy)
        except errors.PoolExhausted:
            self._in_use -= 1
            raise
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            self._in_use -= 1
            raise self._connect_failed(exc) from exc
        except BaseException:
            self._in_use -= 1
            raise
        conn = _Connection(proxy)
        conn._pool = pool
        return conn

    def _exhausted(self):
        self._figures["exhausted"] += 1
        s = self.settings
        raise errors.PoolExhausted(
            f"async connection pool exhausted: all {s.max_connections} connections are in use "
            f"(DB_POOL_SIZE={s.pool_size} + DB_MAX_OVERFLOW={s.max_overflow}), none came free "
            f"within DB_POOL_TIMEOUT={s.pool_timeout:g}s")

    def _connect_failed(self, exc) -> errors.ConnectFailed:
        return errors.ConnectFailed(
            f"cannot connect to {self.settings.display_url}: {first_line(exc)}")

    async def _release_conn(self, conn):
        self._in_use = max(self._in_use - 1, 0)
        if self._saturated and self._in_use < self.settings.max_connections:
            self._saturated = False
            logger.info("async connection pool no longer saturated")
        proxy = conn.conn
        # asyncpg gives a connection that died back to its pool by itself (the proxy is
        # then detached); any other dead one is terminated here, never reused.
        detached = proxy is None or getattr(proxy, "_con", True) is None
        if self._pool is None or getattr(conn, "_pool", None) is not self._pool:
            # Its pool was closed or replaced while a task held it: nothing is wrong with it.
            logger.debug("closed a connection returned after its pool was closed")
            if not detached:
                await conn.close()
            return
        if self._cutting_off and (conn.lost or detached):
            return  # close_pool() cut it off and said so
        if conn.lost or detached or conn.stale():
            self._figures["dead_discarded"] += 1
            logger.warning("discarded a dead async connection on return to the pool")
            if not detached:
                proxy.terminate()
                if self._pool is not None:
                    await self._pool.release(proxy)  # frees its slot for a new connection
            return
        await self._pool_release(conn)

    async def _pool_close(self):
        # pwasyncio waits acquire_timeout (here DB_POOL_TIMEOUT, which may be 0) for the
        # connections tasks still hold: a request in flight would be cut off at once. Wait
        # close_timeout for them to come back instead; cut off only what is still out then.
        pool = self._pool
        closing = asyncio.ensure_future(pool.close())
        done, _ = await asyncio.wait({closing}, timeout=self.close_timeout)
        if closing not in done:
            self._cutting_off = True
            logger.warning("closing the async pool: %d connection(s) still in use after "
                           "%gs were cut off", self._in_use, self.close_timeout)
            pool.terminate()
            closing.cancel()
        try:
            await closing
        except (asyncio.CancelledError, Exception):  # terminated: nothing left to close
            if not self._cutting_off:
                raise

    async def note_commit_position(self, conn) -> None:
        # Read-your-writes on replicas, as the sync pool does after each commit.
        try:
            text = await conn.conn.fetchval("SELECT pg_current_wal_insert_lsn()::text")
        except Exception:  # the commit stands; the next replica scope asks the primary
            logger.debug("could not read the WAL position after a commit", exc_info=True)
            sync_db._position_unknown = True
            return
        sync_db.note_position(wal_position(text))

    def pool_status(self) -> dict:
        pool = self._pool
        idle = pool.get_idle_size() if pool is not None else 0
        s = self.settings
        status = {
            "configured": True,
            "max_connections": s.max_connections,
            "pool_size": s.pool_size,
            "max_overflow": s.max_overflow,
            "in_use": self._in_use,
            "idle": idle,
            "available": s.max_connections - self._in_use,
            "saturated": self._in_use >= s.max_connections,
            "wait_timeout": s.pool_timeout,
            "recycle_seconds": s.pool_recycle,
        }
        status.update(self._figures)
        return status

    # -- statements ------------------------------------------------------------------------

    async def aconnect(self):
        conn = self._state.conn
        if conn is not None and (conn.lost or conn.stale()):
            if self.in_transaction():
                # Never carry on on a new connection: the transaction died with the old one.
                self._remember_lost(conn, "the server closed the connection")
                raise self.lost_earlier()
            self._state.reset()
            await self._release_conn(conn)
        return await super().aconnect()

    async def aexecute_sql(self, sql, params=None):
        self._log_query(sql, params)
        start = time.perf_counter() if self.query_hooks else None
        conn = None
        try:
            conn = await self.aconnect()
            try:
                with __exception_wrapper__:
                    result = await conn.execute(sql, params)
            except errors.MonpsStoreError:
                raise
            except Exception as exc:
                self.raise_translated(conn, exc)
                raise
        except Exception as exc:
            if start is not None:
                self._notify_hooks(sql, params, start, exc)
            raise
        if start is not None:
            self._notify_hooks(sql, params, start, None)
        return result

    def mark_lost(self, conn, exc) -> bool:
        """Whether ``exc`` means ``conn`` is dead (and remember it)."""
        dead = conn is not None and (
            conn.stale() or is_disconnect(exc)
            or isinstance(getattr(exc, "orig", exc),
                          (asyncpg.ConnectionDoesNotExistError, ConnectionError)))
        if dead:
            self._remember_lost(conn, first_line(exc))
        return dead

    def _remember_lost(self, conn, reason: str) -> None:
        if not conn.lost:
            conn.lost = True
            self._figures["lost"] += 1
            # Cut off by close_pool(), which said so once: not news for every connection.
            log = logger.info if self._cutting_off else logger.warning
            log("database connection lost: %s", reason)

    def raise_translated(self, conn, exc) -> None:
        """Raise the package's error for ``exc``, as the sync pool's ``raise_translated``."""
        if self.mark_lost(conn, exc):
            raise connection_lost(exc) from exc
        error = translated_error(exc, self.settings)
        if error is not None:
            raise error from exc

    @staticmethod
    def lost_earlier() -> errors.ConnectionLost:
        return errors.ConnectionLost(
            "the database connection was lost earlier in this transaction; "
            "leave the transaction and retry the unit of work")

    def execute_sql(self, sql, params=None, named_cursor=None, array_size=None):
        """pwasyncio's; ``named_cursor=True`` streams the result (``_ServerSideCursor``)."""
        if not named_cursor:
            return super().execute_sql(sql, params)
        return await_(self._aexecute_iter(sql, params, array_size))

    def execute(self, query, named_cursor=False, array_size=None, **context_options):
        if not named_cursor:
            return super().execute(query, **context_options)
        sql, params = self.get_sql_context(**context_options).sql(query).query()
        return self.execute_sql(sql, params, named_cursor=True, array_size=array_size)

    async def _aexecute_iter(self, sql, params, array_size):
        self._log_query(sql, params)
        conn = await self.aconnect()
        try:
            with __exception_wrapper__:
                cursor = await conn.execute_iter(sql, params or ())
        except errors.MonpsStoreError:
            raise
        except Exception as exc:
            self.raise_translated(conn, exc)
            raise
        return _ServerSideCursor(cursor, array_size)

    def atomic(self, *args, **kwargs):
        return _Atomic(self, *args, **kwargs)

    transaction = savepoint = atomic
