"""Sharing transactions with legacy psycopg2 code, in both directions.

Legacy code lends its connection: monps_store writes join the legacy transaction, and the
legacy ``commit()``/``rollback()`` decides the fate of both::

    conn = psycopg2.connect(...)
    cur = conn.cursor(); cur.execute("INSERT INTO ...")
    with legacy.use_connection(conn):
        teams.get_by_name("Lyon"); crud.create(...)          # same transaction
        with monps_store.unit_of_work(): ...                  # a SAVEPOINT inside it
    conn.commit()                                             # both kinds of writes, or neither

Legacy code borrows a pooled connection::

    with legacy.borrow_connection() as conn:                 # its own transaction, committed
        conn.cursor().execute("UPDATE ...")                   # when the block ends cleanly
    with monps_store.unit_of_work():
        with legacy.borrow_connection() as conn:             # shares the unit of work
            conn.cursor().execute("UPDATE ...")

Rules for a borrowed connection: ``commit()``/``rollback()`` inside a unit of work raise
:class:`~monps_store.errors.LegacyConnectionError` (the unit of work decides; a silent no-op
would lose the caller's intent); in the borrow's own transaction they commit or roll back what
was done so far and open a new transaction, as psycopg2 would. Changing ``autocommit``, the
isolation level or session characteristics through the connection raises. A connection whose
session settings were changed with SQL (``SET ...``) is thrown away when it returns to the pool,
never handed out again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from types import TracebackType
from typing import Any, Literal, NoReturn, Self

import peewee
import psycopg2.extensions

from monps_store import errors, positions
from monps_store.database import MonpsDatabase, connection, db


class _LegacyTransaction:
    """Stands on peewee's transaction stack for the legacy transaction: ``atomic()`` inside it
    becomes a SAVEPOINT, and nothing of monps_store commits, rolls back or closes the
    connection."""

    commits_elsewhere = True  # after_commit() callbacks could never run: refused


class _Lent:
    """Stands on peewee's connection-context stack while a connection is lent, so that no
    scope opened inside (``connection()``, ``connection_context()``, ``with db:``) closes it."""


def _check_lendable(conn: object) -> None:
    if not isinstance(conn, psycopg2.extensions.connection):
        raise errors.LegacyConnectionError(
            f"use_connection() needs a psycopg2 connection, got {type(conn).__name__}")
    if conn.closed:
        raise errors.LegacyConnectionError("use_connection(): the connection is closed")
    if conn.autocommit:
        raise errors.LegacyConnectionError(
            "use_connection(): the connection is in autocommit mode, so there is no legacy "
            "transaction to join; set autocommit = False or use monps_store's own scopes")
    status = conn.get_transaction_status()
    if status == psycopg2.extensions.TRANSACTION_STATUS_INERROR:
        raise errors.LegacyConnectionError(
            "use_connection(): the connection's transaction is aborted (an earlier statement "
            "failed); roll it back first")
    if status == psycopg2.extensions.TRANSACTION_STATUS_UNKNOWN:
        raise errors.LegacyConnectionError("use_connection(): the connection is broken")


@contextlib.contextmanager
def use_connection(conn: psycopg2.extensions.connection) -> Iterator[MonpsDatabase]:
    """Run monps_store on the legacy psycopg2 connection ``conn``, inside its transaction.

    The connection is never committed, rolled back, closed or pooled by monps_store, and
    its cursor factory, typecasters and session are left as they were: monps_store runs its
    queries on plain cursors of its own. A connection that an earlier call outside any scope
    left open on this thread goes back to the pool first. Applies to the current thread only.

    With replicas configured, the owner's commit is out of the package's sight: the next
    ``replica()`` scope after the block asks the primary for its WAL position and waits for a
    replica to have replayed all of it (read-your-writes, as long as the owner committed
    before that scope opened).
    """
    _check_lendable(conn)
    state = db._state
    if state.ctx or state.transactions:
        raise errors.LegacyConnectionError(
            "use_connection() inside an open monps_store connection scope or transaction on "
            "this thread: lend the connection before opening scopes, not inside one")
    if not state.closed:
        # Left open by a call outside any scope (peewee's autoconnect) and idle: give it
        # back to the pool, as the end of a scope would have.
        db.close()
    if db.server_version is None:
        db.server_version = conn.server_version
    state.set_connection(conn)
    state.ctx.append(_Lent())
    state.transactions.append(_LegacyTransaction())
    try:
        yield db
    finally:
        state.reset()  # forget the connection without closing or pooling it
        if db.settings is not None and db.settings.replicas:
            # the owner commits where no commit() of ours sees it
            positions.commits.mark_unknown()


class BorrowedConnection:
    """A pooled psycopg2 connection lent to legacy cursor code (see the module docstring)."""

    def __init__(self, conn: psycopg2.extensions.connection,
                 transaction: peewee._transaction | peewee._savepoint | None,
                 shared: bool) -> None:
        object.__setattr__(self, "_conn", conn)
        object.__setattr__(self, "_transaction", transaction)
        object.__setattr__(self, "_shared", shared)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise errors.LegacyConnectionError(
            f"cannot set {name!r} on a borrowed connection: it belongs to the pool")

    def _refuse(self, action: str) -> NoReturn:
        raise errors.LegacyConnectionError(
            f"{action}() on a connection borrowed inside a unit of work: the unit of work "
            "commits when it ends and rolls back when it raises; raise to roll back")

    def commit(self) -> None:
        if self._shared:
            self._refuse("commit")
        self._transaction.commit()  # commits, then opens the next transaction

    def rollback(self) -> None:
        if self._shared:
            self._refuse("rollback")
        self._transaction.rollback()

    def set_session(self, *args: object, **kwargs: object) -> NoReturn:
        raise errors.LegacyConnectionError("set_session() on a borrowed connection is refused")

    def set_isolation_level(self, level: object) -> NoReturn:
        raise errors.LegacyConnectionError(
            "set_isolation_level() on a borrowed connection is refused")

    def close(self) -> NoReturn:
        raise errors.LegacyConnectionError(
            "close() on a borrowed connection: the pool owns it; leave the block instead")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> Literal[False]:
        # psycopg2's `with conn:` commits or rolls back; the same here, under the rules above.
        if self._shared:
            return False
        if exc_type is None:
            self.commit()
        else:
            self.rollback()
        return False


@contextlib.contextmanager
def borrow_connection() -> Iterator[BorrowedConnection]:
    """A pooled psycopg2 connection for legacy cursor code: the current unit of work's
    connection and transaction when there is one on this thread, else its own transaction
    (committed on a clean exit, rolled back on an exception)."""
    with connection():
        shared = db.in_transaction()
        with contextlib.ExitStack() as stack:
            transaction = None if shared else stack.enter_context(db.atomic())
            raw = db.connection()
            try:
                yield BorrowedConnection(raw, transaction, shared)
            finally:
                _mark_if_altered(raw)


# Parameters PgBouncer itself sets on a server connection for each client it links to it
# (from the client's startup packet): a session source there is not a leak.
_TRACKED = {"application_name", "client_encoding", "datestyle", "timezone",
            "standard_conforming_strings", "intervalstyle"}


def _mark_if_altered(raw: psycopg2.extensions.connection) -> None:
    """Flag the connection for disposal if legacy code changed its session settings."""
    if raw.closed or raw.autocommit is not True:
        db._state.tainted = True
        return
    if raw.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_INERROR:
        return  # the transaction will be rolled back, and a SET inside it with it
    settings = db.settings
    pooled = settings is not None and settings.pooler != "none"
    # The package's own SET LOCAL behind a pooler is not a change (it ends with the transaction).
    ours = ({"statement_timeout": str(settings.statement_timeout)}
            if settings is not None and pooled and settings.statement_timeout else {})
    with raw.cursor() as cursor:
        cursor.execute("SELECT name, setting FROM pg_settings WHERE source = 'session'")
        changed = [name for name, value in cursor.fetchall()
                   if ours.get(name) != value and not (pooled and name.lower() in _TRACKED)]
        if changed:
            db._state.tainted = True
            if pooled:
                # Closing our connection to PgBouncer would leave the change on the server
                # connection it hands to the next client: undo it in this transaction.
                cursor.execute("RESET ALL")
