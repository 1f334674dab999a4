"""Fault injection shared by the reliability tests: killing backends and reading back state.

Two ways to cut a connection:

* :class:`Killer`, after a delay: terminates every backend of an application name, wherever the
  work happens to be at that moment (a random point in time, seeded by the caller);
* :func:`kill_at_statement`: terminates this thread's backend just before its k-th statement
  (BEGIN, SAVEPOINT, query or COMMIT) is sent: every point of a unit of work, in turn.
"""

from __future__ import annotations

import csv
import datetime
import random
import threading
import time

import monps_store
from monps_store import ingest

UTC = datetime.UTC

ODDS_STATE = (f"SELECT {', '.join(ingest.COLUMNS)} FROM public.odds "
              f"ORDER BY {', '.join(ingest.KEY)}")


class Killer(threading.Thread):
    """Terminates every backend of ``application_name`` once ``delay`` seconds have passed,
    unless :meth:`cancel` came first. ``killed`` says how many backends it terminated."""

    def __init__(self, pg, delay: float, application_name: str):
        super().__init__(daemon=True, name="fault-killer")
        self.delay, self.application_name = delay, application_name
        self.conn = pg.admin()  # opened now: the kill itself must not wait for a connection
        self.cancelled = threading.Event()
        self.killed = 0

    def run(self):
        try:
            if self.cancelled.wait(self.delay):
                return
            with self.conn.cursor() as cur:
                cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE application_name = %s AND pid <> pg_backend_pid()",
                            (self.application_name,))
                self.killed = sum(1 for (done,) in cur.fetchall() if done)
        finally:
            self.conn.close()

    def cancel(self):
        self.cancelled.set()
        self.join()


def terminate_and_wait(pg, pid: int) -> None:
    """Terminate backend ``pid`` and wait until the server has really ended it."""
    pg.terminate(pid)
    for _ in range(500):
        if not pg.sql("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)):
            return
        time.sleep(0.01)
    raise AssertionError(f"backend {pid} still alive after pg_terminate_backend")


class kill_at_statement:
    """Within the block, this thread's backend is terminated just before statement number
    ``k`` (counted from 1) is sent; ``k=None`` only counts. ``count`` is how many statements
    went out; ``fired`` whether the kill happened."""

    def __init__(self, pg, db, k: int | None):
        self.pg, self.db, self.k = pg, db, k
        self.count, self.fired = 0, False

    def __enter__(self):
        original = self.db.cursor

        def cursor(*args, **kwargs):
            self.count += 1
            if self.count == self.k and not self.db.is_closed():
                terminate_and_wait(self.pg, self.db.connection().get_backend_pid())
                self.fired = True
            return original(*args, **kwargs)

        self.db.cursor = cursor  # an instance attribute: shadows the method for this block
        return self

    def __exit__(self, *exc):
        del self.db.cursor


def odds_rows(seed: int, matches: range, price_shift: float = 0.0) -> list[list[str]]:
    """Odds rows (``ingest.COLUMNS`` order, as CSV text) for ``matches``: 3 bookmakers x 3
    selections x 4 snapshots per match, prices drawn from ``seed``."""
    rng = random.Random(seed)
    kick_off = datetime.datetime(2026, 3, 1, 20, 0, tzinfo=UTC)
    rows = []
    for match in matches:
        start = kick_off + datetime.timedelta(hours=match)
        for bookmaker in ("pinnacle", "bet365", "unibet"):
            for selection in ("home", "draw", "away"):
                for hours in (48, 24, 6, 1):
                    price = 1.2 + rng.random() * 6 + price_shift
                    rows.append([f"m{match:05d}", "Ligue 1", "Lyon", "Nice", bookmaker, "1x2",
                                 selection, f"{price:.3f}", start.isoformat(),
                                 (start - datetime.timedelta(hours=hours)).isoformat()])
    return rows


def write_odds_csv(path, rows) -> None:
    with open(path, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(ingest.COLUMNS)
        writer.writerows(rows)


def pool_is_clean() -> bool:
    status = monps_store.pool_status()
    return status["in_use"] == 0
