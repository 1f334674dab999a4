"""Backends killed in the middle of the package's work: afterwards the data is either the
complete result or untouched, never partial, never duplicated; cron-wrapped work retries to
completion; the pool ends clean.

Every trial is seeded, so a failure names a trial that can be run again.
"""

from __future__ import annotations

import datetime
import os
import random
import subprocess
import sys
import time
from decimal import Decimal

import pytest

import monps_store
from monps_store import cron, errors, ingest
from monps_store.models import QuantumFrictionMatrix, QuantumStrategy, TeamQuantumDNA
from monps_store.repositories import clv, crud, odds
from tests.conftest import TEST_APP_NAME
from tests.reliability.faults import (
    ODDS_STATE,
    Killer,
    kill_at_statement,
    odds_rows,
    pool_is_clean,
    write_odds_csv,
)

INGEST_TRIALS = 40
CRON_INGEST_TRIALS = 15
SETTLE_TRIALS = 30
CHUNK = 250  # small chunks: a load is many COPY + upsert round trips, each a place to die


@pytest.fixture
def odds_files(tmp_path):
    """A first load (150 matches) and a second one that changes the prices of 50 of them and
    adds 75 new matches: 4,500 rows, 18 chunks."""
    base, new = tmp_path / "base.csv", tmp_path / "new.csv"
    write_odds_csv(base, odds_rows(1, range(150)))
    write_odds_csv(new, odds_rows(2, range(100, 150), price_shift=0.5)
                   + odds_rows(3, range(150, 225)))
    return base, new


def reset_odds(pg, base) -> None:
    pg.sql("TRUNCATE public.odds RESTART IDENTITY")
    ingest.ingest_odds(base, chunk_rows=CHUNK)


def timed_ingest(path) -> float:
    start = time.perf_counter()
    ingest.ingest_odds(path, chunk_rows=CHUNK)
    return time.perf_counter() - start


def test_an_ingest_killed_at_a_random_moment_leaves_all_or_nothing(pg, db, odds_files, capsys,
                                                                   figures):
    base, new = odds_files
    reset_odds(pg, base)
    untouched = pg.sql(ODDS_STATE)
    duration = timed_ingest(new)
    complete = pg.sql(ODDS_STATE)
    assert len(complete) == len(untouched) + 75 * 36
    rng = random.Random(20261123)
    outcomes = {"completed": 0, "lost": 0}
    killed = 0
    for trial in range(INGEST_TRIALS):
        reset_odds(pg, base)
        killer = Killer(pg, rng.uniform(0, duration * 1.2), TEST_APP_NAME)
        killer.start()
        try:
            ingest.ingest_odds(new, chunk_rows=CHUNK)
            outcome = "completed"
        except errors.ConnectionLost:
            outcome = "lost"
        killer.cancel()
        killed += killer.killed
        outcomes[outcome] += 1
        after = pg.sql(ODDS_STATE)
        assert after in (untouched, complete), f"trial {trial}: partial result after {outcome}"
        if outcome == "completed":
            assert after == complete, f"trial {trial}: the load returned but did not commit"
        assert pool_is_clean(), f"trial {trial}: {monps_store.pool_status()}"
        figures.add("faults: odds ingest (random moment)", trials=1, rows_checked=len(after))
    # psycopg2 prints a SystemError when a COPY loses its connection: the package keeps it quiet.
    printed = capsys.readouterr().err
    assert "SystemError" not in printed and "Traceback" not in printed, printed
    assert outcomes["lost"] >= INGEST_TRIALS // 4, outcomes  # most kills landed mid-load
    assert pg.sql("SELECT count(*) = count(DISTINCT (match_id, bookmaker, market, selection, "
                  "collected_at)) FROM public.odds") == [(True,)]
    figures.add("faults: odds ingest (random moment)", backends_killed=killed,
                loads_interrupted=outcomes["lost"], loads_completed=outcomes["completed"],
                partial_results=0)


def test_a_cron_wrapped_ingest_killed_mid_load_retries_to_completion(pg, db, odds_files,
                                                                     monkeypatch, tmp_path,
                                                                     caplog, figures):
    base, new = odds_files
    reset_odds(pg, base)
    duration = timed_ingest(new)
    complete = pg.sql(ODDS_STATE)
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    monkeypatch.setenv("DATABASE_URL", pg.url)
    monkeypatch.setenv("DB_APPLICATION_NAME", "monps_fault")
    job = cron.Job(lambda: ingest.ingest_odds(new, chunk_rows=CHUNK), "fault-ingest",
                   backoff=0.01, retries=3, reason="fault trial")
    rng = random.Random(75)
    retried = killed = 0
    for trial in range(CRON_INGEST_TRIALS):
        reset_odds(pg, base)
        caplog.clear()
        killer = Killer(pg, rng.uniform(0, duration), "monps_fault:fault-ingest")
        killer.start()
        assert job.run() == cron.EXIT_OK, f"trial {trial}"
        killer.cancel()
        killed += killer.killed
        retried += any("retrying" in r.getMessage() for r in caplog.records)
        after = pg.sql(ODDS_STATE)
        assert after == complete, f"trial {trial}"
        figures.add("faults: cron-wrapped odds ingest", trials=1, rows_checked=len(after))
    assert retried >= 1
    figures.add("faults: cron-wrapped odds ingest", backends_killed=killed,
                runs_retried=retried, runs_failed=0)


# -- CLV settlement --------------------------------------------------------------------------

SETTLE_SEED = """
SELECT public.monps_odds_partition(m) FROM unnest(ARRAY['2026-02-01 UTC', '2026-03-01 UTC',
    '2026-04-01 UTC', '2026-05-01 UTC', '2026-06-01 UTC', '2026-07-01 UTC',
    '2026-08-01 UTC']::timestamptz[]) m;
INSERT INTO public.odds (match_id, league, home_team, away_team, bookmaker, market, selection,
                         price, commence_time, collected_at)
SELECT 'm' || m, 'Ligue 1', 'Lyon', 'Nice', 'pinnacle', '1x2', 'home',
       1.5 + (m * 7 + h) %% 40 / 10.0, '2026-03-01 20:00+00'::timestamptz + m * interval '1 hour',
       '2026-03-01 20:00+00'::timestamptz + m * interval '1 hour' - h * interval '1 hour'
FROM generate_series(1, 4000) m, generate_series(1, 4) h;
INSERT INTO public.tracking_clv_picks (agent, match_id, market, selection, bookmaker,
                                       odds_taken, stake, picked_at)
SELECT 'agent' || (p %% 8), 'm' || (p %% 4500), '1x2', 'home', 'pinnacle',
       1.6 + p %% 30 / 10.0, 10, '2026-02-01 12:00+00'::timestamptz + p * interval '1 minute'
FROM generate_series(1, 8000) p;
"""
PICKS_STATE = ("SELECT id, status, closing_odds, clv_percent, settled_at IS NULL "
               "FROM public.tracking_clv_picks ORDER BY id")
REOPEN = ("UPDATE public.tracking_clv_picks SET status = 'open', closing_odds = NULL, "
          "clv_percent = NULL, settled_at = NULL")


def test_clv_settlement_killed_mid_statement_settles_all_picks_or_none(pg, db, figures):
    pg.sql(SETTLE_SEED)
    untouched = pg.sql(PICKS_STATE)
    with monps_store.connection():
        start = time.perf_counter()
        result = clv.settle()
        duration = time.perf_counter() - start
    complete = pg.sql(PICKS_STATE)
    assert result.settled > 0 and result.still_open > 0
    rng = random.Random(1123)
    outcomes = {"completed": 0, "lost": 0}
    for trial in range(SETTLE_TRIALS):
        pg.sql(REOPEN)
        with monps_store.connection():  # open first: the kill must find the backend
            db.execute_sql("SELECT 1")
            killer = Killer(pg, rng.uniform(0, duration), TEST_APP_NAME)
            killer.start()
            try:
                assert clv.settle() == result
                outcomes["completed"] += 1
            except errors.ConnectionLost:
                outcomes["lost"] += 1
            killer.cancel()
        after = pg.sql(PICKS_STATE)
        assert after in (untouched, complete), f"trial {trial}: some picks settled, not all"
        assert pool_is_clean(), (trial, str(monps_store.pool_status()))
        figures.add("faults: CLV settlement", trials=1, rows_checked=len(after))
    assert outcomes["lost"] >= 1, outcomes
    figures.add("faults: CLV settlement", settlements_interrupted=outcomes["lost"],
                settlements_completed=outcomes["completed"], partial_results=0)


# -- a unit of work across several repositories ----------------------------------------------

KICK_OFF = datetime.datetime(2026, 3, 1, 20, 0, tzinfo=datetime.UTC)
HOURS_8 = datetime.timedelta(hours=8)
UOW_STATE = """
SELECT 'team', team_name, league, roi::text, created_by, change_reason
FROM quantum.team_quantum_dna
UNION ALL
SELECT 'friction', h.team_name, a.team_name, f.friction_score::text, f.created_by, NULL
FROM quantum.quantum_friction_matrix f
JOIN quantum.team_quantum_dna h ON h.id = f.home_team_id
JOIN quantum.team_quantum_dna a ON a.id = f.away_team_id
UNION ALL
SELECT 'strategy', t.team_name, s.strategy_name, s.roi::text, s.created_by, NULL
FROM quantum.quantum_strategies s JOIN quantum.team_quantum_dna t ON t.id = s.team_id
UNION ALL
SELECT 'odds', match_id, selection, price::text, created_by, NULL FROM public.odds
ORDER BY 1, 2, 3
"""


def seed_uow_baseline(pg):
    pg.sql("TRUNCATE quantum.team_quantum_dna, public.odds RESTART IDENTITY CASCADE")
    pg.sql("INSERT INTO quantum.team_quantum_dna (team_name, league, roi, matches_played, "
           "total_bets, win_rate, total_pnl) VALUES ('Paris', 'Ligue 1', 1.000, 0, 0, 0, 0)")


def transfer_window():
    """Several repositories in one unit of work: two new teams, a changed one, their
    friction, three strategies, odds rows, and a savepoint inside."""
    with monps_store.unit_of_work(actor="fault:uow", reason="transfer window"):
        lyon = crud.create(TeamQuantumDNA, team_name="Lyon", league="Ligue 1")
        nice = crud.create(TeamQuantumDNA, team_name="Nice", league="Ligue 1")
        paris = crud.get_by_field(TeamQuantumDNA, "team_name", "Paris")[0]
        crud.update(paris, roi=Decimal("4.250"))
        crud.create(QuantumFrictionMatrix, home_team=lyon, away_team=nice,
                    friction_score=Decimal("64.50"))
        crud.insert_many(QuantumStrategy, [
            {"team": lyon.id, "market": "1x2", "strategy_name": name, "roi": Decimal("2.000"),
             "win_rate": Decimal("51.00"), "sample_size": 40}
            for name in ("value", "press", "fade")])
        with monps_store.unit_of_work():  # nested: a savepoint
            odds.upsert([{"match_id": "m1", "league": "Ligue 1", "home_team": "Lyon",
                          "away_team": "Nice", "bookmaker": "pinnacle", "market": "1x2",
                          "selection": selection, "price": price,
                          "commence_time": KICK_OFF, "collected_at": KICK_OFF - HOURS_8}
                         for selection, price in (("home", Decimal("2.100")),
                                                  ("draw", Decimal("3.300")),
                                                  ("away", Decimal("3.600")))])


def test_a_unit_of_work_killed_before_any_of_its_statements_leaves_nothing(pg, db, figures):
    seed_uow_baseline(pg)
    untouched = pg.sql(UOW_STATE)
    with kill_at_statement(pg, db, None) as counter:
        transfer_window()
    statements = counter.count
    complete = pg.sql(UOW_STATE)
    assert len(complete) == len(untouched) + 2 + 1 + 3 + 3
    for k in range(1, statements + 1):
        seed_uow_baseline(pg)
        with kill_at_statement(pg, db, k) as killing, pytest.raises(errors.ConnectionLost):
            transfer_window()
        assert killing.fired
        assert pg.sql(UOW_STATE) == untouched, f"statement {k} of {statements}: partial writes"
        assert pool_is_clean()
        transfer_window()  # what a caller does with ConnectionLost: run it again
        assert pg.sql(UOW_STATE) == complete, f"statement {k}: the retry did not complete"
        figures.add("faults: unit of work across repositories", trials=1, backends_killed=1,
                    rows_checked=len(untouched) + len(complete), partial_results=0,
                    duplicates=0)


def test_a_cron_job_killed_at_any_statement_retries_to_exactly_one_complete_result(
        pg, db, monkeypatch, tmp_path, caplog, figures):
    seed_uow_baseline(pg)
    with kill_at_statement(pg, db, None) as counter:
        transfer_window()
    complete = pg.sql(UOW_STATE)
    statements = counter.count
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", pg.url)
    monkeypatch.setenv("DB_APPLICATION_NAME", TEST_APP_NAME)
    # Nested in the job's unit of work, the work's own BEGIN/COMMIT become savepoints.
    job = cron.Job(transfer_window, "fault-uow", backoff=0.01, retries=3)
    # The job's attempt adds its own BEGIN, its lock query and its COMMIT.
    for k in range(1, statements + 3 + 1):
        seed_uow_baseline(pg)
        caplog.clear()
        with kill_at_statement(pg, db, k) as killing:
            assert job.run() == cron.EXIT_OK, f"statement {k}"
        retries = [r for r in caplog.records if "retrying" in r.getMessage()]
        assert killing.fired and len(retries) == 1, f"statement {k}: {len(retries)} retries"
        assert pg.sql(UOW_STATE) == complete, f"statement {k}"
        figures.add("faults: cron-wrapped unit of work", trials=1, backends_killed=1,
                    runs_retried=1, rows_checked=len(complete), duplicates=0)


# -- the pool under faults -------------------------------------------------------------------


def test_a_statement_timeout_mid_transaction_rolls_back_cleanly_with_a_clear_error(pg, figures):
    monps_store.init_db(url=pg.url, application_name=TEST_APP_NAME, statement_timeout=200)
    try:
        with pytest.raises(errors.StatementTimeout, match="DB_STATEMENT_TIMEOUT=200 ms"):
            with monps_store.unit_of_work(actor="fault:timeout"):
                crud.create(TeamQuantumDNA, team_name="Lyon", league="Ligue 1")
                monps_store.db.execute_sql("SELECT pg_sleep(2)")
        assert pg.sql("SELECT count(*) FROM quantum.team_quantum_dna") == [(0,)]
        status = monps_store.pool_status()
        assert (status["in_use"], status["lost"], status["idle"]) == (0, 0, 1)
        # The same connection goes on: no aborted transaction was left on it.
        with monps_store.unit_of_work(actor="fault:timeout"):
            crud.create(TeamQuantumDNA, team_name="Nice", league="Ligue 1")
        assert pg.sql("SELECT team_name FROM quantum.team_quantum_dna") == [("Nice",)]
        assert monps_store.pool_status()["opened"] == 1
    finally:
        monps_store.close_db()
        pg.sql("TRUNCATE quantum.team_quantum_dna CASCADE")
    figures.add("faults: statement timeout", trials=1, rolled_back=1, partial_results=0)


def test_an_ingest_waiting_past_the_statement_timeout_writes_nothing(pg, tmp_path, figures):
    """The wait for another load's lock counts against the timeout like any statement."""
    path = tmp_path / "odds.csv"
    write_odds_csv(path, odds_rows(5, range(10)))
    monps_store.init_db(url=pg.url, application_name=TEST_APP_NAME, statement_timeout=300)
    holder = pg.admin()
    try:
        holder.autocommit = False
        with holder.cursor() as cur:  # another load's transaction-level lock
            cur.execute("SELECT pg_advisory_xact_lock(%s)",
                        (monps_store.database.advisory_lock_key("monps_store.ingest:public.odds"),))
        with pytest.raises(errors.StatementTimeout):
            ingest.ingest_odds(path)
        assert pg.sql("SELECT count(*) FROM public.odds") == [(0,)]
        assert monps_store.pool_status()["in_use"] == 0
    finally:
        holder.rollback()
        holder.close()
        monps_store.close_db()
    figures.add("faults: statement timeout", trials=1, rolled_back=1, partial_results=0)


def test_the_cli_killed_mid_copy_prints_one_error_line_and_writes_nothing(pg, db, tmp_path,
                                                                         figures):
    """The COPY path is where psycopg2 prints a traceback of its own when the connection dies;
    the operator must still see one ``error:`` line and exit 1."""
    path = tmp_path / "big.csv"
    write_odds_csv(path, odds_rows(11, range(1_500)))  # 54,000 rows, three chunks
    env = {"PATH": os.environ.get("PATH", ""), "DATABASE_URL": pg.url,
           "DB_APPLICATION_NAME": "monps_cli_fault"}
    killed_in_copy = 0
    for _ in range(5):
        process = subprocess.Popen([sys.executable, "-m", "monps_store", "ingest", "odds",
                                    str(path)], env=env, text=True, cwd=tmp_path,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        admin = pg.admin()
        with admin.cursor() as cur:
            while process.poll() is None:
                cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE application_name = 'monps_cli_fault' AND state = 'active' "
                            "AND query LIKE 'COPY %%'")  # into the table or the stage
                if cur.fetchall():
                    break
        admin.close()
        out, err = process.communicate(timeout=120)
        if process.returncode == 0:
            pg.sql("TRUNCATE public.odds")
            continue  # the load was faster than the poll: try again
        killed_in_copy += 1
        assert process.returncode == 1
        errors_shown = [line for line in err.splitlines() if line.startswith("error:")]
        assert len(errors_shown) == 1, err
        assert errors_shown[0].startswith("error: lost the database connection"), err
        # The rest is the package's own log lines (WARNING): no traceback from psycopg2.
        assert all(line.startswith(("WARNING ", "error:")) for line in err.splitlines()), err
        assert pg.sql("SELECT count(*) FROM public.odds") == [(0,)]
    assert killed_in_copy >= 1
    figures.add("faults: CLI ingest killed mid-COPY", trials=killed_in_copy,
                backends_killed=killed_in_copy, tracebacks_printed=0, rows_written=0)


# -- server errors the package does not translate --------------------------------------------


def _lock_timeout_url(pg) -> str:
    return pg.url + ("&" if "?" in pg.url else "?") + "options=-c%20lock_timeout%3D300"


@pytest.mark.parametrize("step", ["copy", "merge", "partition"])
def test_a_server_error_in_any_step_of_an_ingest_is_raised_as_crud_raises_it(pg, db, tmp_path,
                                                                              figures, step):
    """A lock timeout (55P03, which the package does not translate) in the COPY, in the merge
    of a chunk that meets stored keys, or in creating a month partition: the caller gets what
    crud raises for the same failure, peewee's OperationalError with the server's message and
    the driver's error chained; nothing is written."""
    import peewee
    import psycopg2.errors

    from monps_store.models import Odds

    path = tmp_path / "odds.csv"
    rows = odds_rows(21, range(100, 102))  # March 2026 only
    write_odds_csv(path, rows)
    if step == "merge":
        ingest.ingest_odds(path)  # stored already: the chunk meets stored keys
        write_odds_csv(path, odds_rows(21, range(100, 102), price_shift=0.5))
    elif step == "copy":
        pg.sql("SELECT public.monps_odds_partition('2026-03-01T00:00Z')")
    else:
        pg.sql("DROP TABLE IF EXISTS public.odds_y2026m03")
    before = pg.sql(ODDS_STATE)
    monps_store.init_db(url=_lock_timeout_url(pg), application_name=TEST_APP_NAME)
    holder = pg.admin()
    holder.autocommit = False
    try:
        with holder.cursor() as cur:
            if step == "merge":  # the COPY meets a stored key at once; the merge waits
                cur.execute("SELECT 1 FROM public.odds FOR UPDATE")
            else:
                cur.execute("LOCK TABLE public.odds IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(peewee.DatabaseError) as raised:
            ingest.ingest_odds(path)
        with pytest.raises(peewee.DatabaseError) as by_crud, monps_store.connection():
            if step == "merge":
                crud.update(crud.get_all(Odds, limit=1)[0], price=Decimal("9.000"))
            else:
                fields = dict(zip(ingest.COLUMNS, rows[0], strict=True))
                crud.create(Odds, **fields | {
                    "price": Decimal(fields["price"]),
                    "commence_time": datetime.datetime.fromisoformat(fields["commence_time"]),
                    "collected_at": datetime.datetime.fromisoformat(fields["collected_at"])})
    finally:
        holder.rollback()
        holder.close()
    error = raised.value
    assert type(error) is type(by_crud.value) is peewee.OperationalError
    assert not isinstance(error, errors.MonpsStoreError)
    assert isinstance(error.orig, psycopg2.errors.LockNotAvailable)
    assert error.orig in (error.__cause__, error.__context__)
    assert str(error).startswith("canceling statement due to lock timeout"), str(error)
    assert pg.sql(ODDS_STATE) == before
    assert pool_is_clean()
    figures.add("faults: untranslated server error in an ingest", trials=1, rows_written=0)


def test_the_cli_prints_one_error_line_for_a_server_error_in_the_copy(pg, db, tmp_path):
    path = tmp_path / "odds.csv"
    write_odds_csv(path, odds_rows(22, range(100, 102)))
    pg.sql("SELECT public.monps_odds_partition('2026-03-01T00:00Z')")
    env = {"PATH": os.environ.get("PATH", ""), "DATABASE_URL": _lock_timeout_url(pg)}
    holder = pg.admin()
    holder.autocommit = False
    try:
        with holder.cursor() as cur:
            cur.execute("LOCK TABLE public.odds IN ACCESS EXCLUSIVE MODE")
        result = subprocess.run([sys.executable, "-m", "monps_store", "ingest", "odds",
                                 str(path)], env=env, text=True, capture_output=True,
                                cwd=tmp_path, timeout=120)
    finally:
        holder.rollback()
        holder.close()
    assert result.returncode == 1
    assert result.stderr == "error: database error: canceling statement due to lock timeout\n"
    assert pg.sql("SELECT count(*) FROM public.odds") == [(0,)]
