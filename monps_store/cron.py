"""Cron jobs: one decorator gives a job its settings, lock, retries, transaction and exit code.

    from monps_store import cron
    from monps_store.repositories import odds

    @cron.job("odds-ingest", reason="bookmaker odds import")
    def main():
        odds.upsert(fetch_rows())

    if __name__ == "__main__":
        main()      # exit 0 done, 1 failed, 2 configuration error, 75 another run holds the lock

Each attempt is one unit of work (actor ``cron:<name>``) on a pooled connection. With
``lock=True`` (the default) the attempt first takes ``pg_try_advisory_xact_lock`` on a key
derived from the job name; if another run holds it the job exits 75 at once, having done
nothing. The lock is transaction-level on purpose: it is released by COMMIT/ROLLBACK or by the
server when the session dies, and it stays correct behind PgBouncer in transaction mode, where a
session-level lock could outlive the job on a server connection that is then handed to someone
else. The price: a job's work is one transaction (which is also what makes a retry safe).

Retried, with exponential backoff and full jitter, only when the failure means the same work
may succeed if simply run again: serialization failure (40001), deadlock (40P01), a lost or
refused connection (08xxx, 57P01-57P03, :class:`~monps_store.errors.ConnectionLost`). Anything
else fails at once. Every run ends with the pool closed and one summary line on the
``monps_store.cron`` logger.
"""

from __future__ import annotations

import functools
import logging
import random
import sys
import time
from collections.abc import Callable
from typing import Any, NoReturn

from monps_store import config, database, errors
from monps_store.uow import unit_of_work

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_LOCKED = 0, 1, 2, 75
_RETRYABLE_CODES = ("40001", "40P01", "08", "57P01", "57P02", "57P03")


def lock_key(name: str) -> int:
    """The advisory-lock key of job ``name`` (a stable signed 64-bit integer)."""
    return database.advisory_lock_key(f"monps_store.cron:{name}")


def is_retryable(exc: BaseException | None) -> bool:
    """Whether running the same unit of work again may succeed (see the module docstring)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, errors.ConnectionLost):
            return True
        code = getattr(exc, "pgcode", None) or getattr(getattr(exc, "orig", None), "pgcode", None)
        if code and code.startswith(_RETRYABLE_CODES):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


class _Locked(Exception):
    pass


class Job:
    """A job function wrapped by :func:`job`. Call it to run and exit; ``run()`` returns the
    exit code instead."""

    def __init__(self, fn: Callable[..., object], name: str, *, lock: bool = True,
                 retries: int = 3, backoff: float = 0.5, max_backoff: float = 30.0,
                 statement_timeout: int | None = None, reason: str | None = None,
                 isolation_level: str | None = None) -> None:
        if not name or not name.strip():
            raise ValueError("a cron job needs a name")
        self.fn, self.name, self.lock, self.retries = fn, name, lock, retries
        self.backoff, self.max_backoff = backoff, max_backoff
        self.statement_timeout, self.reason = statement_timeout, reason
        self.isolation_level = config.isolation_level(isolation_level,
                                                      "cron.job(isolation_level=...)")
        functools.update_wrapper(self, fn)

    def __call__(self, *args: Any, **kwargs: Any) -> NoReturn:
        sys.exit(self.run(*args, **kwargs))

    def run(self, *args: Any, **kwargs: Any) -> int:
        """Run the job to the end: the exit code (0, 1, 2 or 75)."""
        _configure_logging()
        start = time.monotonic()
        attempts, outcome, code = 0, "ok", EXIT_OK
        try:
            self._init()
            while True:
                attempts += 1
                try:
                    self._attempt(args, kwargs)
                    break
                except _Locked:
                    outcome, code = "skipped: another run holds the lock, nothing done", \
                        EXIT_LOCKED
                    break
                except Exception as exc:
                    if attempts <= self.retries and is_retryable(exc):
                        delay = random.uniform(0, min(self.max_backoff,
                                                      self.backoff * 2 ** (attempts - 1)))
                        logger.warning("job %s: attempt %d failed (%s); retrying in %.2fs",
                                       self.name, attempts, _one_line(exc), delay)
                        time.sleep(delay)
                        continue
                    logger.debug("job %s failed", self.name, exc_info=True)
                    outcome, code = f"failed: {_one_line(exc)}", EXIT_FAILED
                    break
        except errors.ConfigError as exc:
            outcome, code = f"failed: invalid configuration: {'; '.join(exc.problems)}", \
                EXIT_CONFIG
        finally:
            database.close_db()
        retries = max(attempts - 1, 0)
        level = {EXIT_OK: logging.INFO, EXIT_LOCKED: logging.WARNING}.get(code, logging.ERROR)
        logger.log(level, "job %s %s in %.2fs, %d retr%s", self.name, outcome,
                   time.monotonic() - start, retries, "y" if retries == 1 else "ies")
        return code

    def _init(self) -> None:
        settings = config.load_settings()
        overrides: dict[str, Any] = {
            "application_name": f"{settings.application_name}:{self.name}"[:63]}
        if self.statement_timeout is not None:
            overrides["statement_timeout"] = self.statement_timeout
        database.init_db(settings, **overrides)

    def _attempt(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        with unit_of_work(actor=f"cron:{self.name}", reason=self.reason,
                          isolation_level=self.isolation_level):
            if self.lock:
                taken = database.db.execute_sql("SELECT pg_try_advisory_xact_lock(%s)",
                                                (lock_key(self.name),)).fetchone()[0]
                if not taken:
                    raise _Locked
            self.fn(*args, **kwargs)


def job(name: str, **options: Any) -> Callable[[Callable[..., object]], Job]:
    """Decorate a job function: ``@cron.job("odds-ingest", retries=3, reason=...)``.

    Options: ``lock`` (default True), ``retries`` (3), ``backoff`` (0.5 s, doubled each
    attempt, full jitter), ``max_backoff`` (30 s), ``statement_timeout`` (ms; default from
    ``DB_STATEMENT_TIMEOUT``), ``reason`` (the audit reason of the job's writes),
    ``isolation_level`` (e.g. ``"serializable"``: a serialization failure is retried).
    """
    return lambda fn: Job(fn, name, **options)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _configure_logging() -> None:
    # A job is an entry point: give it log output unless the application configured logging.
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
