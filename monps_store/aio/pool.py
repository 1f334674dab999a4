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
import logging
import time
import weakref
from typing import Any

import asyncpg
from peewee import __exception_wrapper__  # type: ignore[attr-defined]  # peewee's own
from playhouse.pwasyncio import (
    AsyncPgAtomic,
    AsyncPostgresqlDatabase,
    await_,
)

from monps_store import config, errors, positions
from monps_store.aio.driver import (
    PooledConnection,
    ServerSideCursor,
    connect_kwargs,
    json_codecs,
)
from monps_store.policy import LOST_EARLIER, PoolPolicy, transaction_setup
from monps_store.translate import (
    connection_lost,
    first_line,
    is_disconnect,
    translated_error,
)

logger = logging.getLogger("monps_store.database")

class Atomic(AsyncPgAtomic):
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
            raise errors.ConnectionLost(LOST_EARLIER)
        outermost = not self.db.in_transaction()
        level = (self.isolation_level or self.db.settings.isolation_level) if outermost else None
        if level and "isolation" not in self._begin_args[1]:
            args, kwargs = self._begin_args
            self._begin_args = args, {**kwargs, "isolation": level.lower().replace(" ", "_")}
        try:
            transaction = await super()._abegin()
            setup = transaction_setup(self.db.settings) if outermost else None
            if setup:
                await self.db._state.conn.conn.execute(setup)
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


class AsyncMonpsDatabase(PoolPolicy, AsyncPostgresqlDatabase):
    """The async database: a task-local connection from an asyncpg pool sized by the settings.

    Made from :class:`~monps_store.config.Settings` (what ``aio.init_db()`` does), or as
    pwasyncio's ``AsyncPostgresqlDatabase`` is made: ``AsyncMonpsDatabase("monps",
    host=..., user=..., password=..., pool_size=10, pool_min_size=1, acquire_timeout=10,
    isolation_level=...)`` (``database`` a name or a ``postgresql://`` URL)."""

    label = "async "
    settings: config.Settings  # always configured: made from settings

    def __init__(self, settings: config.Settings | str, *, pool_size: int = 10,
                 pool_min_size: int = 0, acquire_timeout: float = 10, **params: Any):
        # How long close_pool() waits for connections in use: aio.close_db(timeout) sets it;
        # made as pwasyncio's database is, acquire_timeout, as pwasyncio waits.
        close_timeout = 10.0
        if not isinstance(settings, config.Settings):
            # pwasyncio's parameters in the pool's terms: at most pool_size connections,
            # waiting up to acquire_timeout seconds for one (0: not at all).
            settings = config.from_init_params(
                settings, max_connections=pool_size, timeout=acquire_timeout or None,
                **params)
            close_timeout = float(acquire_timeout)
        elif params:
            raise TypeError(f"AsyncMonpsDatabase(settings) takes no connection parameters "
                            f"besides them: {', '.join(sorted(params))}")
        self.settings = settings
        self._kwargs = connect_kwargs(settings)
        self._min_size = min(pool_min_size, settings.max_connections)
        super().__init__(settings.database or "", pool_size=settings.max_connections,
                         acquire_timeout=settings.pool_timeout or 0)
        # As pwasyncio keeps them, so that type(db)(db.database, **db.connect_params) makes
        # a database on the same server (peewee's way of copying one).
        self.connect_params = {key: value for key, value in settings.connect_params().items()
                               if key not in ("dbname", "options")}
        self._in_use = 0
        self.close_timeout = close_timeout
        self._cut_off_pool: Any = None  # the closed pool whose connections close_pool() cut off
        # raw connection -> monotonic creation time
        self._born: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._reset_figures()

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
        await json_codecs(conn)
        self._born[conn] = time.monotonic()
        self._count("opened")

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
            self._note_saturated(limit)  # a caller finds every connection taken: it waits
            if not wait:
                raise self._exhausted()
        self._in_use += 1
        try:
            while True:
                try:
                    proxy = await pool.acquire(timeout=wait or None)
                except TimeoutError:
                    raise self._exhausted() from None
                if not self._stale(proxy):
                    break
                self._count("recycled")
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
        conn = PooledConnection(proxy)
        conn._pool = pool
        return conn

    async def _release_conn(self, conn):
        self._in_use = max(self._in_use - 1, 0)
        self._note_unsaturated(self._in_use, self.settings.max_connections)
        proxy = conn.conn
        # asyncpg gives a connection that died back to its pool by itself (the proxy is
        # then detached); any other dead one is terminated here, never reused.
        detached = proxy is None or getattr(proxy, "_con", True) is None
        if self._pool is None or getattr(conn, "_pool", None) is not self._pool:
            # Its pool was closed or replaced while a task held it: nothing is wrong with it.
            logger.debug("closed a connection returned after its pool was closed")
            await conn.close()  # drops the wrapper's hold on it, detached or not
            return
        if self._cut_off(conn) and (conn.lost or detached):
            return  # close_pool() cut it off and said so
        if conn.lost or detached or conn.stale():
            self._count("dead_discarded")
            logger.warning("discarded a dead connection on return to the pool")
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
        cut_off = closing not in done
        if cut_off:
            self._cut_off_pool = pool
            logger.warning("closing the async pool: %d connection(s) still in use after "
                           "%gs were cut off", self._in_use, self.close_timeout)
            pool.terminate()
            closing.cancel()
        try:
            await closing
        except (asyncio.CancelledError, Exception):  # terminated: nothing left to close
            if not cut_off:
                raise

    async def note_commit_position(self, conn) -> None:
        # Read-your-writes on replicas (monps_store.positions), as the sync pool does.
        try:
            text = await conn.conn.fetchval(positions.AFTER_COMMIT_SQL)
        except Exception:  # the commit stands; the next replica scope asks the primary
            logger.debug("could not read the WAL position after a commit", exc_info=True)
            positions.commits.mark_unknown()
            return
        positions.commits.note(positions.wal_position(text))

    def pool_status(self) -> dict:
        pool = self._pool
        return self._status(self._in_use, pool.get_idle_size() if pool is not None else 0)

    # -- statements ------------------------------------------------------------------------

    async def aconnect(self):
        conn = self._state.conn
        if conn is not None and (conn.lost or conn.stale()):
            if self.in_transaction():
                # Never carry on on a new connection: the transaction died with the old one.
                self._remember_lost(conn, "the server closed the connection")
                raise errors.ConnectionLost(LOST_EARLIER)
            self._state.reset()
            await self._release_conn(conn)
        return await super().aconnect()

    async def aexecute_sql(self, sql, params=None):
        try:
            return await super().aexecute_sql(sql, params)
        except errors.MonpsStoreError:
            raise
        except Exception as exc:
            self.raise_translated(self._state.conn, exc)
            raise

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
            # Cut off by close_pool(), which said so once: not news for every connection.
            self._note_lost(reason, quiet=self._cut_off(conn))

    def _cut_off(self, conn) -> bool:
        # Only the pool close_pool() cut off: a pool made again later is judged as any other.
        return self._cut_off_pool is not None and getattr(conn, "_pool", None) is self._cut_off_pool

    def raise_translated(self, conn, exc) -> None:
        """Raise the package's error for ``exc``, as the sync pool's ``raise_translated``."""
        if self.mark_lost(conn, exc):
            raise connection_lost(exc) from exc
        error = translated_error(exc, self.settings)
        if error is not None:
            raise error from exc

    def execute_sql(self, sql, params=None, named_cursor=None, array_size=None):
        """pwasyncio's; ``named_cursor=True`` streams the result (``ServerSideCursor``)."""
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
        return ServerSideCursor(cursor, array_size)

    def atomic(self, *args, **kwargs):
        return Atomic(self, *args, **kwargs)

    transaction = savepoint = atomic
