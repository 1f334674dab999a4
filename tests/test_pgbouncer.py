"""Everything through a real PgBouncer in transaction mode, with DB_POOLER=pgbouncer: no
session state kept (the statement timeout is SET LOCAL per transaction, no startup options,
no prepared statements across transactions on the async API)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from decimal import Decimal

import psycopg2
import pytest

import monps_store
from monps_store import aio, config, errors, ingest, legacy, migrate
from monps_store.models import TeamQuantumDNA
from monps_store.repositories import crud, teams
from tests.factories import odds_row
from tests.pgbouncer import pgbouncer_in_front_of
from tests.test_cron import JOB, finish


@pytest.fixture
def bouncer(pg, db):
    with pgbouncer_in_front_of(pg.url) as url:
        yield url
    monps_store.close_db()


def init_behind(url, **settings):
    return monps_store.init_db(config.from_url(url, pooler="pgbouncer", pool_timeout=5,
                                               **settings))


def test_units_of_work_with_savepoints_and_a_statement_timeout_that_fires(pg, bouncer):
    init_behind(bouncer, statement_timeout=200)
    with monps_store.unit_of_work(actor="bouncer"):
        crud.create(TeamQuantumDNA, team_name="Kept", league="L")
        with pytest.raises(RuntimeError):
            with monps_store.unit_of_work():
                crud.create(TeamQuantumDNA, team_name="Undone", league="L")
                raise RuntimeError
    with pytest.raises(errors.StatementTimeout, match="DB_STATEMENT_TIMEOUT=200 ms"):
        with monps_store.unit_of_work():
            monps_store.db.execute_sql("SELECT pg_sleep(2)")
    # No session state leaked to the server connections PgBouncer hands to others.
    assert pg.sql("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                  "AND backend_type = 'client backend' AND query ILIKE 'SET statement%%'"
                  ) == [(0,)]
    assert [t.team_name for t in teams.get_by_league("L")] == ["Kept"]


def test_the_odds_ingest_goes_through_pgbouncer(pg, bouncer):
    init_behind(bouncer)
    rows = [odds_row(selection=s, price=p) for s, p in (("home", "2.100"), ("away", "3.400"))]
    with monps_store.unit_of_work(actor="bouncer"):
        report = ingest.ingest_odds(rows)
    assert report.inserted == 2
    assert pg.sql("SELECT selection, price FROM public.odds ORDER BY 1") == [
        ("away", Decimal("3.400")), ("home", Decimal("2.100"))]


def test_two_overlapping_cron_runs_through_pgbouncer_one_exits_75(pg, bouncer, tmp_path):
    script = tmp_path / "job.py"
    script.write_text(JOB)
    env = {"PATH": os.environ.get("PATH", ""), "DATABASE_URL": bouncer, "DB_POOLER": "pgbouncer",
           "MODE": "overlap"}
    runs = []
    for n in range(2):
        runs.append(subprocess.Popen([sys.executable, str(script)], text=True,
                                     env=env | {"MARKER": str(tmp_path / f"m{n}")},
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE))
        time.sleep(0.3)
    codes = sorted(finish(run)[0] for run in runs)
    assert codes == [0, 75]
    assert pg.sql("SELECT count(*) FROM quantum.team_quantum_dna") == [(100,)]


def test_the_legacy_bridge_through_pgbouncer(pg, bouncer):
    init_behind(bouncer)
    conn = psycopg2.connect(bouncer)
    try:
        conn.cursor().execute("INSERT INTO quantum.team_quantum_dna (team_name, league) "
                              "VALUES ('Raw', 'L')")
        with legacy.use_connection(conn):
            with monps_store.unit_of_work(actor="legacy"):
                crud.create(TeamQuantumDNA, team_name="Orm", league="L")
        conn.commit()
    finally:
        conn.close()
    with legacy.borrow_connection() as borrowed:
        borrowed.cursor().execute("UPDATE quantum.team_quantum_dna SET league = 'M'")
    assert pg.sql("SELECT team_name, league FROM quantum.team_quantum_dna ORDER BY 1") == [
        ("Orm", "M"), ("Raw", "M")]


def test_the_async_api_through_pgbouncer_prepares_nothing_across_transactions(pg, bouncer):
    async def one(n):
        async with aio.unit_of_work(actor=f"t{n}"):
            await aio.run(crud.create, TeamQuantumDNA, team_name=f"A{n}", league="L")
            await aio.run(teams.get_by_name, f"A{n}")

    async def scenario():
        await aio.init_db(config.from_url(bouncer, pooler="pgbouncer", statement_timeout=200,
                                          pool_size=4, max_overflow=4))
        try:
            await asyncio.gather(*(one(n) for n in range(40)))
            with pytest.raises(errors.StatementTimeout):
                async with aio.unit_of_work():
                    await aio.run(lambda: monps_store.database.current().execute_sql(
                        "SELECT pg_sleep(2)"))
            return aio.pool_status()
        finally:
            await aio.close_db()

    status = asyncio.run(scenario())
    assert status["in_use"] == 0
    assert pg.sql("SELECT count(*) FROM quantum.team_quantum_dna") == [(40,)]


def test_migration_commands_behind_pgbouncer_need_a_direct_url(pg, bouncer):
    settings = config.from_url(bouncer, pooler="pgbouncer")
    with pytest.raises(errors.MigrationError, match="MIGRATION_DATABASE_URL"):
        with migrate.Migrations.open(settings):
            pass


def test_db_pooler_is_read_from_the_environment_and_checked():
    settings = config.load_settings({"DATABASE_URL": "postgresql://a@h/d",
                                     "DB_POOLER": "PgBouncer", "DB_STATEMENT_TIMEOUT": "500"},
                                    None)
    assert settings.pooler == "pgbouncer"
    assert "options" not in settings.connect_params()  # PgBouncer refuses startup options
    with pytest.raises(errors.ConfigError, match="DB_POOLER: must be one of none, pgbouncer"):
        config.load_settings({"DATABASE_URL": "postgresql://a@h/d", "DB_POOLER": "odyssey"},
                             None)


def test_check_warns_when_it_finds_a_pooler_in_front_without_the_setting(pg, bouncer, tmp_path):
    from tests.test_cli import cli

    plain = cli("check", env={"DATABASE_URL": bouncer}, cwd=tmp_path)
    assert plain.returncode == 0, plain.stderr
    assert "warning     connected to port" in plain.stdout
    assert "DB_POOLER=pgbouncer" in plain.stdout
    told = cli("check", env={"DATABASE_URL": bouncer, "DB_POOLER": "pgbouncer"}, cwd=tmp_path)
    assert told.returncode == 0 and "warning" not in told.stdout


def test_a_session_setting_changed_by_borrowing_code_does_not_reach_the_next_client(pg, db):
    # One server connection behind PgBouncer: every client gets the one the borrower changed.
    with pgbouncer_in_front_of(pg.url, pool_size=1) as url:
        init_behind(url, statement_timeout=5000)
        with legacy.borrow_connection() as conn:
            conn.cursor().execute("SET work_mem = '7MB'")
        with monps_store.unit_of_work():  # our own SET LOCAL is no change
            with legacy.borrow_connection() as conn:
                conn.cursor().execute("SELECT 1")
        assert monps_store.pool_status()["tainted_discarded"] == 1
        monps_store.close_db()
        other = psycopg2.connect(url)
        try:
            with other.cursor() as cur:
                cur.execute("SHOW work_mem")
                assert cur.fetchone()[0] != "7MB"
                cur.execute("SHOW statement_timeout")
                assert cur.fetchone()[0] == "0"
        finally:
            other.close()


def test_events_published_through_pgbouncer_reach_a_direct_listener_and_the_cache(pg, bouncer,
                                                                                   caplog):
    from monps_store import cache, events

    init_behind(bouncer)
    # Listening needs the server itself: without DATABASE_LISTEN_URL the cache is bypassed
    # (and says why once), and events.listen() refuses.
    with pytest.raises(errors.ConfigError, match="DATABASE_LISTEN_URL"):
        events.listen("team_quantum_dna_changed")
    crud.create(TeamQuantumDNA, team_name="Lyon", league="L")
    before = cache.stats()
    for _ in range(3):
        teams.get_top_performers()
        time.sleep(0.05)
    assert cache.stats()["hits"] == before["hits"] and not cache.stats()["listening"]
    assert "DATABASE_LISTEN_URL" in caplog.text
    monps_store.close_db()

    init_behind(bouncer, listen_url=config.Secret(pg.url))
    with events.listen("team_quantum_dna_changed", timeout=1.0) as listener:
        with monps_store.unit_of_work(actor="bouncer"):  # published through PgBouncer
            crud.create(TeamQuantumDNA, team_name="Nice", league="L")
        (event,) = list(listener)
    assert event.payload["table"] == "quantum.team_quantum_dna"
    deadline = time.monotonic() + 10
    while not cache.stats()["listening"]:
        teams.get_top_performers()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert [t.team_name for t in teams.get_top_performers()] == ["Lyon", "Nice"]
    hits = cache.stats()["hits"]
    teams.get_top_performers()
    assert cache.stats()["hits"] == hits + 1
