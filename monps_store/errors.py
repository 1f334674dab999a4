"""Errors monps_store raises on purpose.

Every one derives from :class:`MonpsStoreError`, so a caller can catch the package's own
failures in one place and let anything else (a bug, an unexpected database error) through.
Database errors that are not translated here reach the caller as peewee's exceptions, with the
driver's error chained.

Where a plain peewee ``PooledPostgresqlDatabase`` raises a peewee exception for the same
situation, the package's error is also that exception, so code written against Peewee keeps
catching it: a lost connection, a failed connect and a statement timeout are
``peewee.OperationalError``; a value the column cannot hold is ``peewee.DataError``; an
exhausted pool is ``playhouse.pool.MaxConnectionsExceeded``; using the database before
``init_db()`` is ``peewee.InterfaceError``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import peewee
from playhouse.pool import MaxConnectionsExceeded


class MonpsStoreError(Exception):
    """Root of every error monps_store raises on purpose."""


class ConfigError(MonpsStoreError):
    """The configuration is missing or invalid.

    ``problems`` lists one line per variable, so all of them can be fixed in one pass.
    """

    def __init__(self, problems: Iterable[str],
                 hint: str = "see .env.example for every variable; `monps-store "
                             "env-example` prints it") -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid configuration ({hint}):\n{lines}")


class EmbeddedUnavailable(ConfigError):
    """The embedded PostgreSQL server cannot be used on this installation."""

    def __init__(self, reason: str) -> None:
        MonpsStoreError.__init__(self, reason)
        self.problems = [reason]


class NotFound(MonpsStoreError, LookupError):
    """A row that was looked up by key does not exist."""


class InvalidInput(MonpsStoreError, ValueError):
    """Input rejected before it reached the database; the message names the input."""


class InvalidValue(InvalidInput, peewee.DataError):
    """A value its column cannot hold: refused by the model checks before it was sent, or by
    the server (SQLSTATE class 22, chained as ``__cause__``). Nothing was written. Also a
    ``peewee.DataError``, which is what peewee raises when the server refuses a value."""


class NotInitialised(MonpsStoreError, peewee.InterfaceError):
    """The database was used before :func:`monps_store.init_db` configured it."""


class ConnectionLost(MonpsStoreError, peewee.OperationalError):
    """The database connection was lost (or could not be opened).

    Raised whichever of the driver's OperationalError or InterfaceError reported it; the
    driver's error is chained as ``__cause__``. Work in the open transaction was rolled back
    by the server; the dead connection has been discarded, so the next connection scope or
    transaction gets a fresh one. Retrying the whole unit of work is safe.
    """


class ConnectFailed(ConnectionLost):
    """A new connection could not be opened (server down, refused, or authentication failed)."""


class StatementTimeout(MonpsStoreError, peewee.OperationalError):
    """A statement ran past the statement timeout and the server cancelled it.

    The transaction it ran in is aborted: leaving the transaction block rolls it back. Not
    retried by :mod:`monps_store.cron`: the same statement would time out again.
    """


class PoolExhausted(MonpsStoreError, MaxConnectionsExceeded):
    """Every pooled connection stayed in use for the whole wait timeout (or, with no wait
    timeout, at once)."""


class LazyLoadError(MonpsStoreError, RuntimeError):
    """A foreign key was read without its row inside ``monps_store.testing.no_lazy_loads()``:
    a query per row (N+1); the message names the model and field."""


class AsyncBridgeRequired(MonpsStoreError, RuntimeError):
    """Package models or repositories were used directly in a coroutine, where a query would
    block the event loop (a lazy foreign key, a query built outside ``aio.run()``)."""


class ReplicaWriteRefused(MonpsStoreError, peewee.InternalError):
    """A statement inside ``replica()`` tried to write; the scope is read-only (on a replica
    and on the primary serving in its place alike), so nothing was written."""


class ReadOnlyServer(MonpsStoreError, peewee.InternalError):
    """A write outside ``replica()`` refused because the session is read-only: the URL reaches
    a standby (after a failover, say) or a database or role with
    ``default_transaction_read_only``. Nothing was written; the message names the server."""


class ForeignTaskError(MonpsStoreError, RuntimeError):
    """``aio.run()`` was called in a task other than the one whose unit of work is open (a task
    made by ``asyncio.gather``/``create_task`` inherits the audit context but has a connection
    of its own, outside that transaction)."""


class LegacyConnectionError(MonpsStoreError):
    """A legacy psycopg2 connection was lent or borrowed in a way that would lose writes."""


class MigrationError(MonpsStoreError):
    """A migration command could not do what was asked; nothing was left half-done."""


class MigrationLocked(MigrationError):
    """Another migration run held the advisory lock for the whole wait."""


class SchemaDrift(MigrationError):
    """The live schema differs from the models; ``differences`` lists each one."""

    def __init__(self, message: str, differences: Sequence[str]) -> None:
        super().__init__(message + "".join(f"\n  - {d}" for d in differences))
        self.differences = list(differences)
