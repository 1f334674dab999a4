"""The async API on the real server: the same models and repositories from asyncio tasks,
beside sync threads, under faults (killed backends, exhaustion, cancellation, timeouts)."""

from __future__ import annotations

import asyncio
import datetime
import logging
import subprocess
import sys
import threading
import time
from decimal import Decimal

import peewee
import pytest

import monps_store
from monps_store import aio, errors
from monps_store.models import Odds, QuantumFrictionMatrix, TeamQuantumDNA, TrackingCLVPick
from monps_store.repositories import clv, crud, friction, goalscorers, odds, strategies, teams
from tests.conftest import TEST_APP_NAME
from tests.factories import (
    COLLECTED,
    add_friction,
    add_odds,
    add_pick,
    add_scorer,
    add_strategy,
    add_team,
    odds_row,
)


def run_async(pg, scenario, **settings):
    """Run ``scenario()`` on a fresh event loop with ``aio`` initialised on the test database."""

    async def main():
        await aio.init_db(url=pg.url, **({"application_name": TEST_APP_NAME, "pool_timeout": 5}
                                         | settings))
        try:
            return await scenario()
        finally:
            await aio.close_db()

    return asyncio.run(main())


def rows(pg, sql, params=()):
    return pg.sql(sql, params)


# -- the API -----------------------------------------------------------------------------------


def test_a_unit_of_work_commits_with_the_tasks_actor_and_reason(pg, db):
    async def scenario():
        async with aio.unit_of_work(actor="api:teams", reason="signup"):
            team = await aio.run(crud.create, TeamQuantumDNA, team_name="Lyon", league="L1")
            assert rows(pg, "SELECT count(*) FROM quantum.team_quantum_dna") == [(0,)]
        found = await aio.run(teams.get_by_name, "Lyon")
        return team, found

    team, found = run_async(pg, scenario)
    assert found.id == team.id and found.league == "L1"
    assert rows(pg, "SELECT created_by, updated_by, change_reason FROM quantum.team_quantum_dna") \
        == [("api:teams", "api:teams", "signup")]


def test_an_exception_rolls_the_unit_of_work_back_and_nested_ones_are_savepoints(pg, db):
    async def scenario():
        async with aio.unit_of_work(actor="api"):
            await aio.run(crud.create, TeamQuantumDNA, team_name="Kept", league="L")
            with pytest.raises(RuntimeError):
                async with aio.unit_of_work():
                    await aio.run(crud.create, TeamQuantumDNA, team_name="Undone", league="L")
                    raise RuntimeError
            # A sync unit of work inside aio.run() is a savepoint of the task's transaction too.
            def inner():
                with monps_store.unit_of_work(reason="inner"):
                    crud.create(TeamQuantumDNA, team_name="Inner", league="L")
                    raise KeyError

            with pytest.raises(KeyError):
                await aio.run(inner)
        with pytest.raises(RuntimeError):
            async with aio.unit_of_work():
                await aio.run(crud.create, TeamQuantumDNA, team_name="Gone", league="L")
                raise RuntimeError

    run_async(pg, scenario)
    assert rows(pg, "SELECT team_name FROM quantum.team_quantum_dna") == [("Kept",)]
    assert aio.pool_status() == {"configured": False}


def test_the_errors_are_the_sync_ones(pg, db):
    add_team("Lyon")

    async def scenario():
        with pytest.raises(errors.NotFound, match="Nowhere"):
            await aio.run(teams.get_by_name, "Nowhere")
        with pytest.raises(peewee.IntegrityError):
            async with aio.unit_of_work():
                await aio.run(crud.create, TeamQuantumDNA, team_name="Lyon", league="L")
        with pytest.raises(errors.InvalidValue, match="win_rate"):
            await aio.run(crud.create, TeamQuantumDNA, team_name="X", league="L",
                          win_rate=Decimal("1000"))

        def refused_by_the_server():  # raw SQL past the model checks: SQLSTATE 22003
            return monps_store.database.current().execute_sql(
                "SELECT (%s::integer)::smallint", (70000,))

        with pytest.raises(errors.InvalidValue, match="out of range") as refused:
            await aio.run(refused_by_the_server)
        assert isinstance(refused.value, peewee.DataError)
        return aio.pool_status()

    status = run_async(pg, scenario)
    assert status["in_use"] == 1  # the task's own connection, until the task ends


def test_every_repository_function_runs_through_aio_run(pg, db):
    lyon, nice = add_team("Lyon", roi=Decimal("5.000")), add_team("Nice")
    add_friction(lyon, nice, "80.00")
    add_strategy(lyon, "bold", "6.000", market="btts")
    add_scorer(lyon, "Lacazette", 11, "9.50")
    add_odds()
    add_pick(picked_at=COLLECTED)

    async def scenario():
        got = {}
        async with aio.unit_of_work(actor="api:all"):
            r = aio.run
            got["teams"] = [
                (await r(teams.get_by_name, "Lyon")).team_name,
                len(await r(teams.get_by_league, "Ligue 1")),
                [t.team_name for t in await r(teams.get_top_performers, 1)]]
            pair = await r(friction.get_friction, "Lyon", "Nice")
            high = await r(friction.get_high_friction_matches, 70)
            got["friction"] = [pair.home_team.team_name, high[0].away_team.team_name,
                               len(await r(friction.get_all_pairs))]
            got["strategies"] = [len(await r(strategies.get_team_strategies, "Lyon")),
                                 (await r(strategies.get_best_by_market, "btts"))[0].team.team_name]
            got["goalscorers"] = [(await r(goalscorers.get_by_team, "Lyon"))[0].player_name,
                                  len(await r(goalscorers.get_top_scorers, 5))]
            got["odds"] = [len(await r(odds.get_by_match, "m1")),
                           len(await r(odds.get_by_league, "Ligue 1", limit=5)),
                           await r(odds.upsert, [odds_row(selection="away")])]
            got["clv"] = [len(await r(clv.get_by_agent, "alpha")),
                          len(await r(clv.get_recent_picks, 100000)),
                          (await r(clv.settle)).settled]
            team = await r(crud.get_by_id, TeamQuantumDNA, lyon.id)
            await r(crud.update, team, league="L2")
            got["crud"] = [
                len(await r(crud.get_all, TeamQuantumDNA, order_by="team_name")),
                len(await r(crud.get_by_field, TeamQuantumDNA, "league", "L2")),
                await r(crud.count, Odds),
                await r(crud.insert_many, TeamQuantumDNA,
                        [{"team_name": "Brest", "league": "L1"}]),
                await r(crud.upsert_many, TeamQuantumDNA,
                        [{"team_name": "Brest", "league": "L3"}], conflict=["team_name"],
                        update=["league"]),
                await r(crud.update_where, TeamQuantumDNA, {"roi": Decimal("1.5")},
                        team_name="Nice"),
                await r(crud.bulk_update, [team], ["league"]),
                await r(crud.delete, await r(crud.create, QuantumFrictionMatrix,
                                              home_team=nice, away_team=lyon,
                                              friction_score=Decimal("10")))]
        return got

    got = run_async(pg, scenario)
    assert got == {
        "teams": ["Lyon", 2, ["Lyon"]],
        "friction": ["Lyon", "Nice", 1],
        "strategies": [1, "Lyon"],
        "goalscorers": ["Lacazette", 1],
        "odds": [1, 1, 1],
        "clv": [1, 1, 1],
        "crud": [2, 1, 2, 1, 1, 1, 1, 1],
    }
    assert rows(pg, "SELECT team_name, league, roi FROM quantum.team_quantum_dna ORDER BY 1") == [
        ("Brest", "L3", Decimal("0.000")), ("Lyon", "L2", Decimal("5.000")),
        ("Nice", "Ligue 1", Decimal("1.500"))]
    assert rows(pg, "SELECT closing_odds IS NOT NULL FROM public.tracking_clv_picks") == [(True,)]
    assert rows(pg, "SELECT DISTINCT updated_by FROM quantum.team_quantum_dna "
                    "WHERE team_name <> 'Nice'") == [("api:all",)]


def test_a_lazy_foreign_key_outside_the_bridge_says_what_to_do(pg, db):
    lyon = add_team("Lyon")
    add_friction(lyon, add_team("Nice"), "80.00")

    async def scenario():
        pair = await aio.run(friction.get_friction, "Lyon", "Nice", eager=False)
        with pytest.raises(errors.AsyncBridgeRequired, match=r"aio.run\(fn"):
            pair.home_team  # noqa: B018 - a lazy load on the event loop
        with pytest.raises(errors.AsyncBridgeRequired):
            TeamQuantumDNA.select().count()
        eager = await aio.run(friction.get_friction, "Lyon", "Nice")
        return eager.home_team.team_name, (await aio.run(lambda: pair.away_team.team_name))

    assert run_async(pg, scenario) == ("Lyon", "Nice")
    # Outside the loop, sync code is as before.
    assert teams.get_by_name("Lyon").team_name == "Lyon"


def test_tasks_started_inside_a_unit_of_work_are_refused_instead_of_escaping_it(pg, db):
    async def scenario():
        with pytest.raises(errors.ForeignTaskError, match="one after another"):
            async with aio.unit_of_work(actor="parent"):
                await aio.run(crud.create, TeamQuantumDNA, team_name="Parent", league="L")
                await asyncio.gather(
                    aio.run(crud.create, TeamQuantumDNA, team_name="Child1", league="L"),
                    aio.run(crud.create, TeamQuantumDNA, team_name="Child2", league="L"))

        async def own_unit(n):  # a task that is its own unit of work is fine anywhere
            async with aio.unit_of_work(actor=f"own-{n}"):
                await aio.run(crud.create, TeamQuantumDNA, team_name=f"Own{n}", league="L")

        await asyncio.gather(own_unit(1), own_unit(2))
        return aio.pool_status()

    status = run_async(pg, scenario)
    assert status["in_use"] == 0
    assert rows(pg, "SELECT team_name FROM quantum.team_quantum_dna ORDER BY 1") == [
        ("Own1",), ("Own2",)]


# -- both worlds at once -----------------------------------------------------------------------


def test_two_hundred_tasks_on_a_pool_of_five_plus_five_keep_their_own_actors(pg, db):
    async def one(n):
        async with aio.unit_of_work(actor=f"task-{n}", reason=f"r{n}"):
            await asyncio.sleep(0)  # interleave the tasks inside their transactions
            await aio.run(crud.create, TeamQuantumDNA, team_name=f"T{n}", league="L")
            await asyncio.sleep(0)
            team = await aio.run(teams.get_by_name, f"T{n}")
            await aio.run(crud.update, team, roi=Decimal(n))

    async def scenario():
        await asyncio.gather(*(one(n) for n in range(200)))
        return aio.pool_status()

    status = run_async(pg, scenario, pool_size=5, max_overflow=5, pool_timeout=30)
    assert (status["in_use"], status["exhausted"]) == (0, 0)
    assert status["opened"] <= 10
    written = rows(pg, "SELECT team_name, created_by, updated_by, change_reason, roi "
                       "FROM quantum.team_quantum_dna")
    assert len(written) == 200
    for name, created_by, updated_by, reason, roi in written:
        n = int(name[1:])
        assert (created_by, updated_by, reason, roi) == (f"task-{n}", f"task-{n}", f"r{n}",
                                                          Decimal(n))


def test_a_sync_thread_and_async_tasks_write_with_the_same_models_at_once(pg, db):
    started = threading.Event()
    sync_done = []

    def sync_writer():
        started.wait(10)
        for n in range(30):
            with monps_store.unit_of_work(actor="sync-thread"):
                crud.create(TeamQuantumDNA, team_name=f"S{n}", league="sync")
        sync_done.append(monps_store.db.connection().get_backend_pid()
                         if not monps_store.db.is_closed() else None)

    async def one(n):
        async with aio.unit_of_work(actor="async-task"):
            await aio.run(crud.create, TeamQuantumDNA, team_name=f"A{n}", league="async")
            await asyncio.sleep(0.001)

    async def scenario():
        thread = threading.Thread(target=sync_writer)
        thread.start()
        started.set()
        await asyncio.gather(*(one(n) for n in range(30)))
        await asyncio.to_thread(thread.join, 30)

    run_async(pg, scenario, pool_size=3, max_overflow=0)
    assert sync_done == [None]  # the thread's scopes gave their connection back
    assert rows(pg, "SELECT league, created_by, count(*) FROM quantum.team_quantum_dna "
                    "GROUP BY 1, 2 ORDER BY 1") == [("async", "async-task", 30),
                                                    ("sync", "sync-thread", 30)]


# -- faults ------------------------------------------------------------------------------------


def test_a_backend_killed_in_one_task_is_connection_lost_there_and_nothing_else(pg, db):
    killed = asyncio.Event

    async def victim(ready, go):
        with pytest.raises(errors.ConnectionLost):
            async with aio.unit_of_work(actor="victim"):
                await aio.run(crud.create, TeamQuantumDNA, team_name="Victim", league="L")
                pid = await aio.run(lambda: monps_store.database.current().execute_sql(
                    "SELECT pg_backend_pid()").fetchone()[0])
                ready.set_result(pid)
                await go.wait()
                await aio.run(crud.create, TeamQuantumDNA, team_name="Victim2", league="L")
        # The task's next unit of work gets a new connection.
        async with aio.unit_of_work(actor="victim"):
            await aio.run(crud.create, TeamQuantumDNA, team_name="Retried", league="L")

    async def bystander(n):
        for i in range(5):
            async with aio.unit_of_work(actor="bystander"):
                await aio.run(crud.create, TeamQuantumDNA, team_name=f"B{n}-{i}", league="L")
            await asyncio.sleep(0.01)

    async def scenario():
        ready, go = asyncio.get_running_loop().create_future(), killed()
        task = asyncio.create_task(victim(ready, go))
        pid = await ready
        others = asyncio.gather(*(bystander(n) for n in range(4)))
        await asyncio.to_thread(pg.terminate, pid)
        go.set()
        await task
        await others
        return aio.pool_status()

    status = run_async(pg, scenario, pool_size=3, max_overflow=2)
    assert status["in_use"] == 0 and status["lost"] == 1 and status["dead_discarded"] >= 1
    names = {n for (n,) in rows(pg, "SELECT team_name FROM quantum.team_quantum_dna")}
    assert "Victim" not in names and "Victim2" not in names and "Retried" in names
    assert len([n for n in names if n.startswith("B")]) == 20


def test_an_exhausted_pool_raises_pool_exhausted_after_the_wait_timeout(pg, db, caplog):
    caplog.set_level(logging.INFO, logger="monps_store")

    async def holder(hold):
        async with aio.connection():
            await aio.run(teams.get_by_league, "L")
            await hold.wait()

    async def scenario():
        hold = asyncio.Event()
        holders = [asyncio.create_task(holder(hold)) for _ in range(2)]
        await asyncio.sleep(0.3)
        assert caplog.records == []  # all in use, nobody waiting: nothing to say
        with pytest.raises(errors.PoolExhausted, match="DB_POOL_TIMEOUT=0.5s") as exhausted:
            async with aio.connection():
                await aio.run(teams.get_by_league, "L")
        hold.set()
        await asyncio.gather(*holders)
        async with aio.connection():  # served once one is free
            await aio.run(teams.get_by_league, "L")
        return exhausted.value, aio.pool_status()

    error, status = run_async(pg, scenario, pool_size=1, max_overflow=1, pool_timeout=0.5)
    assert "2 connections" in str(error)
    assert (status["exhausted"], status["in_use"]) == (1, 0)
    assert [r.getMessage() for r in caplog.records] == [
        "async connection pool saturated: all 2 connections in use, callers wait up to "
        "DB_POOL_TIMEOUT", "async connection pool no longer saturated: 1 of 2 in use"]


def test_a_task_cancelled_inside_a_unit_of_work_rolls_back_and_gives_its_connection_back(pg, db):
    async def slow_write():
        async with aio.unit_of_work(actor="cancelled"):
            await aio.run(crud.create, TeamQuantumDNA, team_name="Never", league="L")
            await aio.run(lambda: monps_store.database.current().execute_sql(
                "SELECT pg_sleep(10)"))

    async def scenario():
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):
                await slow_write()
        task = asyncio.create_task(slow_write())  # a client that goes away
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0)
        async with aio.unit_of_work(actor="after"):
            await aio.run(crud.create, TeamQuantumDNA, team_name="After", league="L")
        return aio.pool_status()

    status = run_async(pg, scenario, pool_size=1, max_overflow=0)
    assert status["in_use"] == 0
    assert rows(pg, "SELECT team_name FROM quantum.team_quantum_dna") == [("After",)]
    assert rows(pg, "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%%' "
                    "AND state = 'active'") == [(0,)]


def test_a_statement_timeout_is_statement_timeout_and_the_connection_stays_usable(pg, db):
    async def scenario():
        with pytest.raises(errors.StatementTimeout, match="DB_STATEMENT_TIMEOUT=100 ms"):
            async with aio.unit_of_work():
                await aio.run(lambda: monps_store.database.current().execute_sql(
                    "SELECT pg_sleep(2)"))
        async with aio.unit_of_work(actor="after"):
            await aio.run(crud.create, TeamQuantumDNA, team_name="After", league="L")
        return aio.pool_status()

    status = run_async(pg, scenario, statement_timeout=100)
    assert status["lost"] == 0
    assert rows(pg, "SELECT team_name FROM quantum.team_quantum_dna") == [("After",)]


def test_a_refused_connection_is_connect_failed_without_the_password(pg, db):
    async def scenario():
        await aio.init_db(url="postgresql://app:canary-secret@127.0.0.1:1/monps",
                          connect_timeout=2)
        assert not await aio.check_connection()
        with pytest.raises(errors.ConnectFailed) as failed:
            await aio.run(teams.get_by_league, "L")
        await aio.close_db()
        return failed.value

    error = asyncio.run(scenario())
    assert isinstance(error, peewee.OperationalError)
    assert "127.0.0.1:1" in str(error) and "canary-secret" not in str(error)
    assert "canary-secret" not in repr(error.__cause__)


def test_init_db_reads_the_environment_like_the_sync_one(pg, db, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", pg.url)
    monkeypatch.setenv("DB_POOL_SIZE", "2")
    monkeypatch.setenv("DB_MAX_OVERFLOW", "1")
    monkeypatch.setenv("DB_APPLICATION_NAME", "monps_async_env")

    async def scenario():
        settings = await aio.init_db()
        async with aio.connection():
            name = await aio.run(lambda: monps_store.database.current().execute_sql(
                "SELECT current_setting('application_name')").fetchone()[0])
        status = aio.pool_status()
        await aio.close_db()
        return settings, name, status

    settings, name, status = asyncio.run(scenario())
    assert name == "monps_async_env"
    assert (status["max_connections"], status["pool_size"]) == (3, 2)
    assert settings.password is None or "***" in repr(settings)


def test_importing_the_package_imports_neither_asyncpg_nor_greenlet():
    code = ("import sys, monps_store, monps_store.repositories, monps_store.models; "
            "print(sorted(m for m in ('asyncpg', 'greenlet', 'asyncio') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_sync_code_keeps_working_in_threads_while_aio_is_configured(pg, db):
    add_team("Lyon")
    seen = []

    async def scenario():
        seen.append(await asyncio.to_thread(lambda: teams.get_by_name("Lyon").team_name))
        seen.append((await aio.run(teams.get_by_name, "Lyon")).team_name)

    run_async(pg, scenario)
    assert seen == ["Lyon", "Lyon"]


def test_timestamps_and_decimals_round_trip_exactly(pg, db):
    moment = datetime.datetime(2024, 9, 1, 12, 0, 0, 123456, tzinfo=datetime.UTC)

    async def scenario():
        async with aio.unit_of_work():
            await aio.run(crud.create, TrackingCLVPick, agent="a", match_id="m", market="1x2",
                          selection="home", bookmaker="b", odds_taken=Decimal("2.050"),
                          stake=Decimal("10.00"), picked_at=moment)
        return await aio.run(clv.get_by_agent, "a")

    (pick,) = run_async(pg, scenario)
    assert (pick.picked_at, str(pick.odds_taken), str(pick.stake)) == (moment, "2.050", "10.00")


@pytest.mark.embedded_only
def test_a_server_restart_under_async_tasks_fails_units_cleanly_and_they_recover(restartable,
                                                                                pg, db):
    outcomes = {"ok": 0, "ConnectionLost": 0}
    committed = {"After"}

    async def worker(n, stop):
        i = 0
        while not stop.is_set():
            try:
                async with aio.unit_of_work(actor=f"w{n}"):
                    await aio.run(crud.create, TeamQuantumDNA, team_name=f"W{n}-{i}", league="L")
                outcomes["ok"] += 1
                committed.add(f"W{n}-{i}")
            except errors.ConnectionLost:  # ConnectFailed too, while the server is down
                outcomes["ConnectionLost"] += 1
                await asyncio.sleep(0.05)
            i += 1

    async def scenario():
        stop = asyncio.Event()
        workers = [asyncio.create_task(worker(n, stop)) for n in range(4)]
        await asyncio.sleep(0.5)
        await asyncio.to_thread(restartable.restart)
        await asyncio.sleep(1.0)
        stop.set()
        await asyncio.gather(*workers)
        async with aio.unit_of_work(actor="after"):
            await aio.run(crud.create, TeamQuantumDNA, team_name="After", league="L")
        return aio.pool_status()

    status = run_async(pg, scenario, pool_size=2, max_overflow=2, connect_timeout=5)
    assert status["in_use"] == 0
    assert outcomes["ok"] > 0 and outcomes["ConnectionLost"] >= 1, outcomes
    # Every unit reported committed is there; a failed one may be there only if the server
    # committed it as the connection went (the COMMIT's answer lost), never half.
    names = {n for (n,) in rows(pg, "SELECT team_name FROM quantum.team_quantum_dna")}
    assert committed <= names
    assert len(names - committed) <= outcomes["ConnectionLost"]


def test_a_connection_older_than_pool_recycle_is_replaced_on_checkout(pg, db):
    async def backend():
        async with aio.connection():
            return await aio.run(
                lambda: monps_store.database.current().execute_sql(
                    "SELECT pg_backend_pid()").fetchone()[0])

    async def scenario():
        start = time.monotonic()
        seen = [(0.0, await backend())]
        while time.monotonic() - start < 1.6:  # busy (never idle 1 s), but growing old
            await asyncio.sleep(0.1)
            seen.append((time.monotonic() - start, await backend()))
        return seen, aio.pool_status()

    seen, status = run_async(pg, scenario, pool_size=1, max_overflow=0, pool_recycle=1)
    first = seen[0][1]
    assert {pid for age, pid in seen if age < 0.9} == {first}  # young: kept
    assert {pid for age, pid in seen if age > 1.1} & {first} == set()  # past 1 s: replaced
    assert status["recycled"] == 1
    assert first not in [pid for (pid,) in pg.sql(
        "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (TEST_APP_NAME,))]


# -- isolation levels --------------------------------------------------------------------------


async def _isolation(adb):
    cursor = await adb.aexecute_sql("SHOW transaction_isolation")
    return cursor.fetchone()[0]


def test_an_async_unit_of_work_begins_at_the_isolation_level_it_names(pg, db):
    async def scenario():
        seen = []
        async with aio.unit_of_work(isolation_level="serializable"):
            async with aio.connection() as adb:
                seen.append(await _isolation(adb))
                with pytest.raises(errors.InvalidInput, match="outermost"):
                    async with aio.unit_of_work(isolation_level="read committed"):
                        pass
        async with aio.unit_of_work():
            async with aio.connection() as adb:
                seen.append(await _isolation(adb))
        with pytest.raises(errors.InvalidInput, match="unknown isolation level 'chaos'"):
            async with aio.unit_of_work(isolation_level="chaos"):
                pass
        return seen

    assert run_async(pg, scenario) == ["serializable", "read committed"]


def test_the_settings_isolation_level_is_every_async_transactions_default(pg, db):
    async def scenario():
        async with aio.unit_of_work():
            async with aio.connection() as adb:
                return await _isolation(adb)

    assert run_async(pg, scenario, isolation_level="REPEATABLE READ") == "repeatable read"


# -- monps_store.db in the bridge ----------------------------------------------------------------


def test_db_inside_aio_run_is_the_tasks_database_and_a_cancel_does_not_block_the_loop(pg, db):
    ticks = []

    async def ticker():
        while True:
            ticks.append(time.monotonic())
            await asyncio.sleep(0.05)

    async def slow_write():
        async with aio.unit_of_work(actor="cancelled"):
            await aio.run(crud.create, TeamQuantumDNA, team_name="Never", league="L")
            await aio.run(lambda: monps_store.db.execute_sql("SELECT pg_sleep(5)"))

    async def scenario():
        tick = asyncio.create_task(ticker())
        task = asyncio.create_task(slow_write())
        await asyncio.sleep(0.5)
        during = len(ticks)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        tick.cancel()
        return during, aio.pool_status()

    during, status = run_async(pg, scenario, pool_size=1, max_overflow=0)
    assert during >= 5  # the loop kept running while the statement waited on the server
    assert status["in_use"] == 0
    assert rows(pg, "SELECT count(*) FROM quantum.team_quantum_dna") == [(0,)]  # rolled back


def test_peewee_code_written_against_db_runs_in_the_tasks_transaction(pg, db):
    def peewee_style(name):
        with monps_store.db.connection_context():
            with monps_store.db.atomic():  # a savepoint of the task's unit of work
                monps_store.db.execute_sql(
                    "INSERT INTO quantum.team_quantum_dna (team_name, league) VALUES (%s, 'L')",
                    (name,))
            return (monps_store.db.in_transaction(),
                    monps_store.db.execute_sql("SELECT pg_backend_pid()").fetchone()[0])

    async def scenario():
        with pytest.raises(RuntimeError, match="undo"):
            async with aio.unit_of_work() as unit:
                in_transaction, pid = await aio.run(peewee_style, "Rolled back")
                async with aio.connection() as adb:
                    own = (await adb.aexecute_sql("SELECT pg_backend_pid()")).fetchone()[0]
                assert (in_transaction, pid) == (True, own)
                raise RuntimeError("undo the unit of work")
        async with aio.unit_of_work():
            await aio.run(peewee_style, "Kept")
        del unit

    run_async(pg, scenario)
    assert rows(pg, "SELECT team_name FROM quantum.team_quantum_dna") == [("Kept",)]


def test_db_in_the_bridge_needs_no_sync_init_and_serves_two_hundred_tasks(pg, db):
    monps_store.close_db()
    monps_store.db.init(None)  # an async-only application: the sync pool is never configured

    async def one(n):
        async with aio.unit_of_work():
            return await aio.run(lambda: monps_store.db.execute_sql(
                "SELECT %s::int", (n,)).fetchone()[0])

    async def scenario():
        return await asyncio.gather(*(one(n) for n in range(200))), aio.pool_status()

    results, status = run_async(pg, scenario, pool_size=5, max_overflow=5, pool_timeout=30)
    assert results == list(range(200))
    assert (status["in_use"], status["exhausted"]) == (0, 0)


def test_db_used_on_the_event_loop_outside_aio_run_is_refused_instead_of_blocking(pg, db):
    async def scenario():
        for use in (lambda: monps_store.db.execute_sql("SELECT 1"),
                    monps_store.db.atomic, monps_store.db.connection_context,
                    monps_store.db.connect):
            with pytest.raises(errors.AsyncBridgeRequired, match=r"aio.run\(fn"):
                use()
        return monps_store.db.is_closed()  # no I/O: allowed

    assert run_async(pg, scenario) is True
    assert monps_store.db.execute_sql("SELECT 1").fetchone() == (1,)  # a thread: as before
    monps_store.db.close()


# -- closing or replacing the pool with requests in flight ---------------------------------------


@pytest.mark.parametrize("how", ["close_db", "init_db again"])
def test_a_pool_closed_or_replaced_under_running_tasks_closes_their_connections_quietly(
        pg, db, caplog, how):
    caplog.set_level(logging.DEBUG, logger="monps_store")

    async def request(n, started):
        async with aio.unit_of_work(actor=f"request-{n}"):
            await aio.run(crud.create, TeamQuantumDNA, team_name=f"T{n}", league="L")
            started.release()
            await aio.run(lambda: monps_store.db.execute_sql("SELECT pg_sleep(0.3)"))

    async def scenario():
        started = asyncio.Semaphore(0)
        requests = [asyncio.create_task(request(n, started)) for n in range(3)]
        for _ in requests:
            await started.acquire()  # every request holds its connection, mid-statement
        old = aio._db
        if how == "close_db":
            await aio.close_db()
        else:
            await aio.init_db(url=pg.url, application_name=TEST_APP_NAME, pool_timeout=5)
        outcomes = await asyncio.gather(*requests, return_exceptions=True)
        return outcomes, old.pool_status()

    outcomes, old_status = run_async(pg, scenario, pool_timeout=0.1)
    assert outcomes == [None, None, None]  # the requests in flight finished
    assert (old_status["dead_discarded"], old_status["lost"], old_status["in_use"]) == (0, 0, 0)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert rows(pg, "SELECT count(*) FROM quantum.team_quantum_dna") == [(3,)]
    assert rows(pg, "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                (TEST_APP_NAME,)) == [(0,)]  # nothing left open on the server


def test_closing_the_pool_cuts_off_what_is_still_in_use_after_its_timeout_and_says_so_once(
        pg, db, caplog):
    caplog.set_level(logging.INFO, logger="monps_store")

    async def request(n, started):
        async with aio.unit_of_work():
            await aio.run(crud.create, TeamQuantumDNA, team_name=f"Cut off {n}", league="L")
            started.release()
            await aio.run(lambda: monps_store.db.execute_sql("SELECT pg_sleep(5)"))

    async def scenario():
        started = asyncio.Semaphore(0)
        requests = [asyncio.create_task(request(n, started)) for n in range(2)]
        for _ in requests:
            await started.acquire()
        old = aio._db
        await aio.close_db(timeout=0.2)
        return await asyncio.gather(*requests, return_exceptions=True), old.pool_status()

    outcomes, old_status = run_async(pg, scenario)
    assert [type(outcome) for outcome in outcomes] == [errors.ConnectionLost] * 2
    assert old_status["dead_discarded"] == 0
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [
        "closing the async pool: 2 connection(s) still in use after 0.2s were cut off"]
    assert rows(pg, "SELECT count(*) FROM quantum.team_quantum_dna") == [(0,)]


def test_the_async_database_takes_pwasyncios_constructor_parameters(pg, db):
    from monps_store.aio.pool import AsyncMonpsDatabase

    params = monps_store.config.from_url(pg.url).connect_params()
    name = params.pop("dbname")
    params.pop("options", None)
    params.pop("connect_timeout")

    async def scenario():
        adb = AsyncMonpsDatabase(name, pool_size=3, pool_min_size=1, acquire_timeout=2,
                                 isolation_level="SERIALIZABLE", **params)
        try:
            async with adb:
                async with adb.atomic():
                    level = (await adb.aexecute_sql("SHOW transaction_isolation")).fetchone()
            return level, adb.pool_status()
        finally:
            await adb.close_pool()

    level, status = asyncio.run(scenario())
    assert level == ("serializable",)
    assert (status["max_connections"], status["wait_timeout"], status["in_use"]) == (3, 2, 0)


def test_an_async_database_copied_from_its_connect_params_reaches_the_same_server(pg, db):
    # peewee's idiom, used by pwasyncio's own tests: type(db)(db.database, **db.connect_params)
    from monps_store.aio.pool import AsyncMonpsDatabase

    async def scenario():
        original = AsyncMonpsDatabase(monps_store.config.from_url(pg.url))
        copy = type(original)(original.database, pool_size=2, **original.connect_params)
        try:
            return (await copy.aexecute_sql("SELECT current_database()")).fetchone()[0]
        finally:
            await copy.close_pool()
            await original.close_pool()

    assert asyncio.run(scenario()) == monps_store.config.from_url(pg.url).database


def test_a_connection_returned_after_its_pool_was_replaced_is_closed_and_let_go(pg, db):
    from monps_store.aio.pool import AsyncMonpsDatabase

    async def scenario():
        adb = AsyncMonpsDatabase(monps_store.config.from_url(pg.url))
        adb.close_timeout = 0.2
        try:
            conn = await adb.aconnect()
            adb._state.reset()  # a task that still holds it when the pool goes
            await adb.close_pool()
            await adb.aexecute_sql("SELECT 1")  # a new pool
            await adb._release_conn(conn)
            return conn.conn, adb.pool_status()
        finally:
            await adb.close_pool()

    wrapped, status = asyncio.run(scenario())
    assert wrapped is None  # closed, not kept or handed to the new pool
    assert (status["dead_discarded"], status["lost"]) == (0, 0)


def test_after_a_close_that_cut_connections_off_a_new_pool_reports_its_losses_again(pg, db,
                                                                                    caplog):
    from monps_store.aio.pool import AsyncMonpsDatabase

    caplog.set_level(logging.INFO, logger="monps_store")

    async def scenario():
        adb = AsyncMonpsDatabase(monps_store.config.from_url(pg.url))
        adb.close_timeout = 0.2
        started = asyncio.Event()

        async def stuck():
            async with adb:
                started.set()
                await adb.aexecute_sql("SELECT pg_sleep(5)")

        task = asyncio.create_task(stuck())
        await started.wait()
        await asyncio.sleep(0.1)
        await adb.close_pool()  # cuts the stuck request off
        await asyncio.gather(task, return_exceptions=True)
        caplog.clear()
        try:  # the same database, a new pool: a connection lost now is news again
            with pytest.raises(errors.ConnectionLost):
                async with adb.atomic():
                    pid = (await adb.aexecute_sql("SELECT pg_backend_pid()")).fetchone()[0]
                    await asyncio.to_thread(pg.terminate, pid)
                    await asyncio.sleep(0.2)
                    await adb.aexecute_sql("SELECT 1")
            await adb.aclose()
            return [(r.levelno, r.getMessage()) for r in caplog.records]
        finally:
            await adb.close_pool()

    records = asyncio.run(scenario())
    assert [level for level, message in records
            if message.startswith("database connection lost")] == [logging.WARNING]
