"""The pool policy both databases follow, whatever their driver (psycopg2 or asyncpg).

    class MonpsDatabase(PoolPolicy, PooledPostgresqlDatabase): ...     # monps_store.pool
    class AsyncMonpsDatabase(PoolPolicy, AsyncPostgresqlDatabase): ... # monps_store.aio.pool

In peewee's own pattern (``playhouse.pool.PooledDatabase`` is a mixin, each concrete pool one
class combining it with a driver's database): what a pool counts, when it says it is
saturated, what its errors say, and the figures ``pool_status()`` returns, with the same keys
and meaning on both. The concrete classes keep only their driver's calls.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from monps_store import config, errors, translate

logger = logging.getLogger("monps_store.database")

# What pool_status() counts, since the pool was configured.
FIGURES = ("opened", "closed_overflow", "recycled", "dead_discarded", "tainted_discarded",
           "lost", "exhausted")

LOST_EARLIER = ("the database connection was lost earlier in this transaction; leave the "
                "transaction and retry the unit of work")


class PoolPolicy:
    settings: config.Settings | None
    label = ""  # "async " before the async pool's messages

    def _reset_figures(self) -> None:
        self._figures_lock = threading.Lock()
        self._figures = dict.fromkeys(FIGURES, 0)
        self._saturated = False
        self._announced = False  # the current saturation was logged at WARNING
        self._quiet_until = 0.0  # monotonic: changes before this are logged at DEBUG

    def _count(self, figure: str) -> None:
        with self._figures_lock:
            self._figures[figure] += 1

    # -- saturation: said when callers start waiting, and when a connection is free again -----
    # A pool whose demand hovers around its size enters and leaves saturation on every
    # connection that comes back: within QUIET_SECONDS of the last change, the changes are
    # logged at DEBUG, so a busy hour is one WARNING and one INFO line, not thousands.
    QUIET_SECONDS = 10.0

    def _note_saturated(self, limit: int) -> None:
        if not self._saturated:
            self._saturated = True
            self._announced = time.monotonic() >= self._quiet_until
            logger.log(logging.WARNING if self._announced else logging.DEBUG,
                       "%sconnection pool saturated: all %d connections in use, callers wait "
                       "up to DB_POOL_TIMEOUT", self.label, limit)

    def _note_unsaturated(self, in_use: int, limit: int) -> None:
        if self._saturated and in_use < limit:
            self._saturated = False
            self._quiet_until = time.monotonic() + self.QUIET_SECONDS
            logger.log(logging.INFO if self._announced else logging.DEBUG,
                       "%sconnection pool no longer saturated: %d of %d in use", self.label,
                       in_use, limit)

    # -- the errors a pool raises ---------------------------------------------------------------

    def _exhausted(self) -> errors.PoolExhausted:
        self._count("exhausted")
        s = self.settings
        assert s is not None  # a pool hands out nothing before it is configured
        return errors.PoolExhausted(
            f"{self.label}connection pool exhausted: all {s.max_connections} connections are "
            f"in use (DB_POOL_SIZE={s.pool_size} + DB_MAX_OVERFLOW={s.max_overflow}), none came "
            f"free within DB_POOL_TIMEOUT={s.pool_timeout:g}s")

    def _connect_failed(self, exc: BaseException) -> errors.ConnectFailed:
        where = self.settings.display_url if self.settings else "the database"
        return errors.ConnectFailed(f"cannot connect to {where}: {translate.first_line(exc)}")

    def _note_lost(self, reason: str, quiet: bool = False) -> None:
        """A connection found dead (counted once per connection by the caller)."""
        self._count("lost")
        (logger.info if quiet else logger.warning)("database connection lost: %s", reason)

    # -- figures -------------------------------------------------------------------------------

    def _status(self, in_use: int, idle: int, *, configured: bool = True,
                max_connections: int | None = None, pool_size: int | None = None,
                wait_timeout: float | None = None, recycle: float | None = None) -> dict:
        """pool_status(): the same keys and meaning for both pools."""
        s = self.settings
        limit = max_connections if max_connections is not None else (
            s.max_connections if s else 0)
        size = pool_size if pool_size is not None else (s.pool_size if s else 0)
        status: dict[str, Any] = {
            "configured": configured,
            "max_connections": limit,
            "pool_size": size,
            "max_overflow": limit - size,
            "in_use": in_use,
            "idle": idle,
            "available": limit - in_use,
            "saturated": in_use >= limit,
            "wait_timeout": wait_timeout if wait_timeout is not None else (
                s.pool_timeout if s else 0),
            "recycle_seconds": recycle if recycle is not None else (s.pool_recycle if s else 0),
        }
        with self._figures_lock:
            status.update(self._figures)
        return status


def transaction_setup(settings: config.Settings | None) -> str | None:
    """The statement each outermost transaction begins with behind a transaction-mode pooler
    (the statement timeout, which a startup option cannot carry there); None when none."""
    if settings is not None and settings.pooler != "none" and settings.statement_timeout:
        return f"SET LOCAL statement_timeout = {int(settings.statement_timeout)}"
    return None
