"""``MonpsDatabase``: the package's sync database, the psycopg2 :class:`~monps_store.pool.Pool`
with statements, transactions and lost connections handled.

- a lost connection surfaces as :class:`~monps_store.errors.ConnectionLost` whichever driver
  error reported it (one place: ``_lost``), and the dead connection is thrown away, not pooled;
  inside a transaction every statement raises until the block is left;
- plain cursors with psycopg2's own typecasters, server-side (named) cursors when asked;
- the isolation level in each ``BEGIN``, the statement timeout per transaction behind
  PgBouncer, the WAL position after each commit when replicas are configured
  (:mod:`monps_store.positions`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import uuid
from collections.abc import Iterator

import peewee
import psycopg2
import psycopg2.extensions
from playhouse.postgres_ext import FetchManyCursor

from monps_store import config, errors, positions
from monps_store.policy import LOST_EARLIER, transaction_setup
from monps_store.pool import Pool, not_initialised
from monps_store.translate import connection_lost, first_line, is_disconnect, translated_error

logger = logging.getLogger("monps_store.database")


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




class MonpsDatabase(Pool):
    """``PooledPostgresqlDatabase`` with the package's pool policy and lost-connection handling.

    Configure it with :func:`monps_store.init_db` or, in peewee's deferred-initialisation
    idiom, with ``db.init(name, **params)`` (see :meth:`~monps_store.pool.Pool.init`).
    """

    routes = False  # True for monps_store.db: the task's database inside aio.run()

    # -- lost connections: noticed here, in one place ------------------------------------------

    def _lost(self, exc) -> bool:
        """Whether ``exc`` means this thread's connection is dead (and remember it)."""
        conn = self._state.conn
        dead = (conn is not None and conn.closed) or is_disconnect(exc)
        if dead and not self._state.lost:
            self._state.lost = True
            self._note_lost(first_line(exc))
        return dead

    @contextlib.contextmanager
    def _lost_raises(self) -> Iterator[None]:
        """Around BEGIN and COMMIT: a dead connection leaves as ConnectionLost."""
        try:
            yield
        except errors.MonpsStoreError:
            raise
        except (peewee.OperationalError, peewee.InterfaceError) as exc:
            if self._lost(exc):
                raise connection_lost(exc) from exc
            raise

    def raise_translated(self, exc: BaseException) -> None:
        """Raise the package's own error for the driver (or peewee) error ``exc`` when it has
        one, and return otherwise (the caller re-raises ``exc``): a dead connection is
        :class:`~errors.ConnectionLost`, the rest as :func:`translated_error` says.

        Code that runs raw cursors (COPY) calls it too, since peewee never sees their errors.
        The transaction, if any, is rolled back by whoever opened it."""
        if self._lost(exc):
            raise connection_lost(exc) from exc
        error = translated_error(exc, self.settings)
        if error is not None:
            raise error from exc

    # -- cursors -----------------------------------------------------------------------------

    def cursor(self, named_cursor=None):
        """A plain psycopg2 cursor on this thread's connection, reading values with psycopg2's
        own typecasters: whatever cursor factory the connection carries (a lent legacy
        connection made with ``RealDictCursor``, a ``LoggingConnection``) and whatever
        typecasters legacy code registered globally, models get the values they stored."""
        if self._state.lost:
            if self.in_transaction():
                raise errors.ConnectionLost(LOST_EARLIER)
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

    # -- transactions --------------------------------------------------------------------------

    def begin(self, isolation_level=None):
        # The level goes in each BEGIN (peewee's way on autocommit connections), never into
        # session state, which a transaction-mode pooler would hand to other clients.
        try:
            level = config.isolation_level(isolation_level, "atomic(isolation_level=...)")
        except ValueError as exc:
            raise errors.InvalidInput(str(exc)) from None
        settings = self.settings
        with self._lost_raises():
            super().begin(level or (settings.isolation_level if settings else None))
            setup = transaction_setup(settings)
            if setup:
                self.cursor().execute(setup)

    def commit(self):
        if self._state.lost:
            raise errors.ConnectionLost("cannot commit: the database connection was lost")
        with self._lost_raises():
            result = super().commit()
        if self.settings is not None and self.settings.replicas:
            self._note_commit_position()
        return result

    def _note_commit_position(self):
        # Read-your-writes on replicas (monps_store.positions): one round trip, only when
        # replicas are configured. If it cannot be read, the commit still stands.
        try:
            cursor = self.cursor()
            cursor.execute(positions.AFTER_COMMIT_SQL)
            positions.commits.note(positions.wal_position(cursor.fetchone()[0]))
        except Exception:  # the commit succeeded; only the position is unknown
            logger.debug("could not read the WAL position after a commit", exc_info=True)
            positions.commits.mark_unknown()

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
            raise not_initialised()
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
