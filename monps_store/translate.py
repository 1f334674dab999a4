"""One mapping from driver errors to the package's, for psycopg2 and asyncpg alike.

    from monps_store import translate
    error = translate.translated_error(exc, settings)   # StatementTimeout, InvalidValue or None
    if translate.is_disconnect(exc): ...                 # SQLSTATE says the session is gone

Used by the sync pool (``MonpsDatabase.raise_translated``), by code on raw psycopg2 cursors
(``raw_cursor_errors``: the ingest's COPY) and by the async pool (``aio.pool``); each pool
decides itself whether its connection died, since only it can ask its driver.
"""

from __future__ import annotations

import contextlib
import contextvars

import peewee
import psycopg2

from monps_store import config, errors

# SQLSTATE classes that mean the session is gone: 08 connection exception, 57P01-57P03
# admin shutdown / crash shutdown / cannot connect now.
_DISCONNECT_CODES = ("08", "57P01", "57P02", "57P03")


def first_line(exc: BaseException) -> str:
    """The first line of an error's text (peewee's wrapped driver error when there is one)."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def sqlstate(exc: BaseException) -> str:
    """The SQLSTATE of a driver error (psycopg2's ``pgcode``, asyncpg's ``sqlstate``), also
    when peewee wrapped it; ``""`` when it has none."""
    orig = getattr(exc, "orig", None) or exc
    return getattr(orig, "pgcode", None) or getattr(orig, "sqlstate", None) or ""


def is_disconnect(exc: BaseException) -> bool:
    """Whether the SQLSTATE of ``exc`` says the session is gone."""
    return sqlstate(exc).startswith(_DISCONNECT_CODES)


def connection_lost(exc: BaseException) -> errors.ConnectionLost:
    return errors.ConnectionLost(
        f"lost the database connection ({first_line(exc)}); the server rolled back the "
        "open transaction, if any. The dead connection is discarded: retry the unit of work.")


_replica_scope: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "monps_store_replica_scope", default=False)


@contextlib.contextmanager
def replica_scope():
    """Marks a ``replica()`` scope for this thread or task: a write refused as read-only inside
    it is the scope's doing (ReplicaWriteRefused), not the server's (ReadOnlyServer)."""
    token = _replica_scope.set(True)
    try:
        yield
    finally:
        _replica_scope.reset(token)


def in_replica_scope() -> bool:
    """Whether code runs inside ``replica()`` or ``aio.replica()``."""
    return _replica_scope.get()


def as_peewee(exc: psycopg2.Error) -> Exception:
    """The driver error ``exc`` wrapped as peewee wraps it in a query (``peewee.OperationalError``
    for a lock timeout, ..., with ``orig`` set); ``exc`` itself if peewee has no class for it."""
    try:
        with peewee.__exception_wrapper__:  # type: ignore[attr-defined]  # peewee's own mapping
            raise exc
    except peewee.PeeweeException as wrapped:
        return wrapped
    except psycopg2.Error:
        return exc


@contextlib.contextmanager
def raw_cursor_errors(database):
    """Around raw psycopg2 cursor calls (COPY), whose errors peewee never sees: a driver error
    leaves as the same failure of a query through ``database`` would, the package's error when
    it has one (``database.raise_translated``), else peewee's class, the driver's error
    chained."""
    try:
        yield
    except psycopg2.Error as exc:
        wrapped = as_peewee(exc)
        database.raise_translated(wrapped)
        if wrapped is exc:
            raise
        raise wrapped from exc


def translated_error(exc: BaseException, settings: config.Settings | None):
    """The package's error for a driver (or peewee) error that is not a lost connection, or
    None when the error stays as it is:

    - a statement timeout (57014): :class:`~errors.StatementTimeout`;
    - a write in a read-only transaction (25006): :class:`~errors.ReplicaWriteRefused` inside
      a ``replica()`` scope, else :class:`~errors.ReadOnlyServer` (a standby, or a read-only
      session), naming the server;
    - a value the server refused (SQLSTATE class 22: overflow, bad syntax for the type, invalid
      JSON or date) or the driver could not send (NUL, lone surrogates):
      :class:`~errors.InvalidValue` (a ``peewee.DataError``).
    """
    orig = getattr(exc, "orig", None) or exc
    code = sqlstate(exc)
    if code == "57014" and "statement timeout" in str(orig):
        limit = settings.statement_timeout if settings else 0
        after = f"after DB_STATEMENT_TIMEOUT={limit} ms" if limit else "by statement_timeout"
        return errors.StatementTimeout(
            f"statement cancelled {after} ({first_line(orig)}); the open transaction, "
            "if any, is rolled back. Make the statement cheaper or raise the timeout.")
    if code == "25006" and in_replica_scope():  # read_only_sql_transaction
        return errors.ReplicaWriteRefused(
            f"a write inside replica(), which is read-only ({first_line(orig)}); nothing was "
            "written. Write in a unit_of_work() on the primary instead.")
    if code == "25006":
        where = settings.display_url if settings else "the database"
        return errors.ReadOnlyServer(
            f"the server at {where} is read-only: a standby (after a failover, say) or a "
            f"read-only session (default_transaction_read_only) ({first_line(orig)}); nothing "
            "was written. Point DATABASE_URL at the primary, or add "
            "target_session_attrs=read-write to it so that only a writable server is used.")
    if code.startswith("22"):
        return errors.InvalidValue(
            f"the database rejected a value: {first_line(orig)} (SQLSTATE {code}); "
            "nothing was written by this statement")
    if isinstance(orig, UnicodeEncodeError) or (
            isinstance(orig, ValueError) and "NUL (0x00)" in str(orig)):
        return errors.InvalidValue(
            f"a text value cannot be sent to PostgreSQL: {orig} (NUL characters and lone "
            "surrogates cannot be stored); nothing was written by this statement")
    return None
