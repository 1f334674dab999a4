"""The pool on its worst day: the whole server restarted under a threaded workload, far more
threads than connections, and legacy connections killed while monps_store uses them."""

from __future__ import annotations

import threading
import time
from collections import Counter
from decimal import Decimal

import psycopg2
import pytest

import monps_store
from monps_store import config, errors, legacy
from monps_store.models import QuantumStrategy, TeamQuantumDNA
from monps_store.repositories import crud
from tests.conftest import TEST_APP_NAME
from tests.reliability.faults import terminate_and_wait

WORKERS = 6


def team_with_strategy(name: str) -> None:
    """Two rows in one unit of work: a team and its strategy, both or neither."""
    with monps_store.unit_of_work(actor="fault:restart"):
        team = crud.create(TeamQuantumDNA, team_name=name, league="Ligue 1")
        crud.create(QuantumStrategy, team=team, market="1x2", strategy_name="value",
                    roi=Decimal("1.000"), win_rate=Decimal("50.00"), sample_size=1)


@pytest.mark.embedded_only
def test_a_server_restart_under_a_threaded_workload_loses_nothing_committed_and_leaks_nothing(
        restartable, db, figures):
    pg = restartable
    monps_store.init_db(url=pg.url, application_name=TEST_APP_NAME, pool_size=4,
                        max_overflow=4, pool_timeout=10, connect_timeout=5)
    stop, restarted = threading.Event(), threading.Event()
    committed, tried, unexpected = set(), set(), []
    outcomes = Counter()
    after_restart = Counter()  # per worker: units of work begun and committed after the restart

    def worker(n: int) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            name, begun_after = f"w{n}-{i:05d}", restarted.is_set()
            tried.add(name)
            try:
                team_with_strategy(name)
            except errors.ConnectionLost as exc:  # ConnectFailed too, while the server is down
                outcomes[type(exc).__name__] += 1
                time.sleep(0.05)
                continue
            except Exception as exc:  # anything else is a defect: collected, asserted below
                unexpected.append(repr(exc))
                return
            committed.add(name)
            outcomes["committed"] += 1
            if begun_after:
                after_restart[n] += 1

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(WORKERS)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    pg.restart()
    restarted.set()
    deadline = time.monotonic() + 60
    while len(after_restart) < WORKERS and time.monotonic() < deadline and not unexpected:
        time.sleep(0.1)
    time.sleep(0.5)
    stop.set()
    for thread in threads:
        thread.join(30)

    assert not unexpected, unexpected[:3]
    assert sorted(after_restart) == list(range(WORKERS)), "a worker never recovered"
    assert outcomes["ConnectionLost"] + outcomes["ConnectFailed"] >= 1, outcomes
    rows = pg.sql("SELECT t.team_name, count(s.id) FROM quantum.team_quantum_dna t "
                  "LEFT JOIN quantum.quantum_strategies s ON s.team_id = t.id "
                  "GROUP BY t.team_name")
    stored = {name for name, _ in rows}
    assert committed <= stored, "a committed unit of work is missing"
    assert stored <= tried
    assert all(strategies == 1 for _, strategies in rows), "a unit of work was half-written"
    status = monps_store.pool_status()
    assert status["in_use"] == 0, status
    assert len(pg.backends()) == status["idle"] <= status["pool_size"]
    figures.add("faults: server restart under load", trials=1, server_restarts=1,
                threads=WORKERS, units_committed=outcomes["committed"],
                units_failed_connection_lost=outcomes["ConnectionLost"],
                units_failed_connect_failed=outcomes["ConnectFailed"],
                rows_checked=len(rows) * 2, committed_but_missing=0, half_written=0,
                leaked_connections=0)


def test_many_more_threads_than_connections_wait_bounded_and_leave_the_pool_empty(pg, db,
                                                                                  figures):
    monps_store.init_db(url=pg.url, application_name=TEST_APP_NAME, pool_size=2,
                        max_overflow=1, pool_timeout=0.3)
    threads_count, rounds = 16, 5
    outcomes, unexpected, messages, waits = Counter(), [], set(), []
    lock = threading.Lock()
    start = threading.Barrier(threads_count)

    def worker() -> None:
        start.wait()
        for _ in range(rounds):
            began = time.perf_counter()
            try:
                with monps_store.connection() as database:
                    database.execute_sql("SELECT pg_sleep(0.1)")
                outcome = "served"
            except errors.PoolExhausted as exc:
                outcome = "exhausted"
                with lock:
                    messages.add(str(exc))
                    waits.append(time.perf_counter() - began)
            except Exception as exc:
                with lock:
                    unexpected.append(repr(exc))
                return
            with lock:
                outcomes[outcome] += 1

    threads = [threading.Thread(target=worker) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert not unexpected, unexpected[:3]
    assert outcomes["served"] + outcomes["exhausted"] == threads_count * rounds
    assert outcomes["served"] >= 3 and outcomes["exhausted"] >= 1, outcomes
    assert messages == {
        "connection pool exhausted: all 3 connections are in use (DB_POOL_SIZE=2 + "
        "DB_MAX_OVERFLOW=1), none came free within DB_POOL_TIMEOUT=0.3s"}
    status = monps_store.pool_status()
    assert (status["in_use"], status["exhausted"]) == (0, outcomes["exhausted"]), status
    assert status["idle"] <= 2 and len(pg.backends()) == status["idle"]
    figures.add("faults: pool exhaustion", threads=threads_count,
                checkouts=threads_count * rounds, served=outcomes["served"],
                refused_after_timeout=outcomes["exhausted"],
                leaked_connections=0)
    figures.add("faults: pool exhaustion (longest wait before PoolExhausted, ms)",
                observed=round(max(waits) * 1000))


def test_a_lent_legacy_connection_killed_mid_unit_of_work_leaves_the_pool_untouched(pg, db,
                                                                                   figures):
    legacy_conn = psycopg2.connect(**config.from_url(pg.url).connect_params())
    before = monps_store.pool_status()
    try:
        legacy_conn.cursor().execute("INSERT INTO quantum.team_quantum_dna (team_name, league, "
                                     "matches_played, total_bets, win_rate, roi, total_pnl) "
                                     "VALUES ('Legacy', 'L', 0, 0, 0, 0, 0)")
        with legacy.use_connection(legacy_conn), pytest.raises(errors.ConnectionLost):
            with monps_store.unit_of_work(actor="legacy:fault"):
                crud.create(TeamQuantumDNA, team_name="Lyon", league="Ligue 1")
                terminate_and_wait(pg, legacy_conn.get_backend_pid())
                crud.create(TeamQuantumDNA, team_name="Nice", league="Ligue 1")
        assert legacy_conn.closed  # the legacy script learns it from its own connection
    finally:
        legacy_conn.close()
    assert pg.sql("SELECT count(*) FROM quantum.team_quantum_dna") == [(0,)]
    # monps_store forgot the legacy connection and its own pool never saw it; the loss counts.
    after = monps_store.pool_status()
    assert after["lost"] == before["lost"] + 1
    assert {**after, "lost": 0} == {**before, "lost": 0}
    with monps_store.unit_of_work(actor="after"):
        crud.create(TeamQuantumDNA, team_name="Brest", league="Ligue 1")
    assert pg.sql("SELECT team_name FROM quantum.team_quantum_dna") == [("Brest",)]
    figures.add("faults: legacy connections", trials=1, backends_killed=1, partial_results=0)


def test_a_borrowed_connection_killed_under_legacy_code_is_discarded_not_pooled(pg, db,
                                                                                figures):
    with pytest.raises(psycopg2.OperationalError):
        with legacy.borrow_connection() as conn:
            cur = conn.cursor()
            cur.execute("INSERT INTO quantum.team_quantum_dna (team_name, league, "
                        "matches_played, total_bets, win_rate, roi, total_pnl) "
                        "VALUES ('Legacy', 'L', 0, 0, 0, 0, 0)")
            terminate_and_wait(pg, conn.get_backend_pid())
            cur.execute("SELECT 1")  # legacy code's own cursor: psycopg2's error, unchanged
    status = monps_store.pool_status()
    assert (status["in_use"], status["idle"], status["dead_discarded"]) == (0, 0, 1), status
    assert pg.sql("SELECT count(*) FROM quantum.team_quantum_dna") == [(0,)]
    assert monps_store.check_connection()
    figures.add("faults: legacy connections", trials=1, backends_killed=1, partial_results=0,
                dead_connections_pooled=0)
