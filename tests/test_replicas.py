"""Reads on a real hot standby (tests/replication.py): routing, read-your-writes, lag, a
stopped replica, and no write ever reaching a replica."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time

import peewee
import pytest

import monps_store
from monps_store import aio, config, database, errors, replicas
from monps_store.migrate import Migrations
from monps_store.models import TeamQuantumDNA
from monps_store.repositories import crud, teams
from tests.replication import primary_and_standby


@pytest.fixture(scope="module")
def pair():
    with primary_and_standby() as pair:
        with Migrations.open(config.from_url(pair.primary_url)) as migrations:
            migrations.apply()
        pair.wait_replayed()
        yield pair


@pytest.fixture
def replicated(pair):
    """The package on the primary with the standby as its replica; the standby replaying and
    the tables empty afterwards."""

    def init(**settings):
        base = config.from_url(pair.primary_url, application_name="monps_replica_test",
                               pool_timeout=5, connect_timeout=2, **settings)
        return monps_store.init_db(config.with_replicas(base, [pair.standby_url]))

    yield init
    monps_store.close_db()
    if not (pair.standby_dir / "postmaster.pid").exists():
        pair.start_standby()
    pair.resume_replay()
    pair.sql(pair.primary_url, "TRUNCATE quantum.team_quantum_dna CASCADE")
    pair.wait_replayed()
    replicas.RETRY_SECONDS = 2.0


def served_by_replica() -> bool:
    return database.current().execute_sql("SELECT pg_is_in_recovery()").fetchone()[0]


def names() -> list[str]:
    return sorted(t.team_name for t in teams.get_by_league("L"))


def test_reads_go_to_the_replica_yet_see_this_processs_own_commits(pair, replicated):
    replicated(replica_max_lag_ms=600_000)
    pair.pause_replay()
    # Another session's commit: the paused replica has not replayed it.
    pair.sql(pair.primary_url, "INSERT INTO quantum.team_quantum_dna (team_name, league) "
                               "VALUES ('Other', 'L')")
    with monps_store.replica():
        assert served_by_replica()
        assert names() == []
    # This process's own commit: the replica is behind it, so the primary serves.
    with monps_store.unit_of_work(actor="writer"):
        crud.create(TeamQuantumDNA, team_name="Mine", league="L")
    with monps_store.replica():
        assert not served_by_replica()
        assert names() == ["Mine", "Other"]
    pair.resume_replay()
    pair.wait_replayed()
    with monps_store.replica():  # caught up: the replica serves again
        assert served_by_replica()
        assert names() == ["Mine", "Other"]
    status = monps_store.pool_status()
    assert status["in_use"] == 0
    (replica_status,) = status["replicas"]
    assert (replica_status["state"], replica_status["in_use"]) == ("ok", 0)
    assert replica_status["url"].endswith(f":{pair.standby_port}/postgres")


def test_a_lent_connections_commit_by_its_owner_is_read_back_too(pair, replicated):
    import psycopg2

    from monps_store import legacy

    replicated(replica_max_lag_ms=600_000)
    with monps_store.replica():  # a first scope: this process's position is known
        assert served_by_replica()
    pair.pause_replay()
    conn = psycopg2.connect(pair.primary_url)
    try:
        with legacy.use_connection(conn):
            crud.create(TeamQuantumDNA, team_name="Lent", league="L")
        conn.commit()  # the owner's commit: no commit() of the package's sees it
    finally:
        conn.close()
    with monps_store.replica():
        assert not served_by_replica()
        assert names() == ["Lent"]


def test_another_sessions_later_commit_does_not_hold_this_process_back(pair, replicated):
    replicated(replica_max_lag_ms=600_000)
    with monps_store.unit_of_work(actor="writer"):
        crud.create(TeamQuantumDNA, team_name="Mine", league="L")
    pair.wait_replayed()
    pair.pause_replay()
    pair.sql(pair.primary_url, "INSERT INTO quantum.team_quantum_dna (team_name, league) "
                               "VALUES ('Other', 'L')")
    with monps_store.replica():  # the replica has this process's commit: it serves
        assert served_by_replica()
        assert names() == ["Mine"]


def test_a_replica_past_the_lag_limit_leaves_reads_to_the_primary(pair, replicated, caplog):
    replicated(replica_max_lag_ms=200)
    pair.pause_replay()
    pair.sql(pair.primary_url, "INSERT INTO quantum.team_quantum_dna (team_name, league) "
                               "VALUES ('Other', 'L')")
    time.sleep(0.5)
    with caplog.at_level(logging.WARNING, logger="monps_store.replicas"):
        for _ in range(3):
            with monps_store.replica():
                assert not served_by_replica()
                assert names() == ["Other"]
    lagging = [r for r in caplog.records if "lagging" in r.getMessage()]
    assert len(lagging) == 1  # a state change is logged once, not per scope
    assert monps_store.pool_status()["replicas"][0]["state"] == "lagging"
    pair.resume_replay()
    pair.wait_replayed()
    with monps_store.replica():
        assert served_by_replica()


def test_a_stopped_replica_leaves_reads_to_the_primary_until_it_is_back(pair, replicated):
    replicated()
    replicas.RETRY_SECONDS = 0.2
    pair.stop_standby()
    for _ in range(3):
        with monps_store.replica():
            assert not served_by_replica()
            assert names() == []
    assert monps_store.pool_status()["replicas"][0]["state"] == "unreachable"
    pair.start_standby()
    time.sleep(0.3)
    with monps_store.replica():
        assert served_by_replica()


@pytest.mark.parametrize("on", ["replica", "primary"])
def test_a_write_inside_replica_is_refused_and_changes_nothing(pair, replicated, on):
    replicated(replica_max_lag_ms=600_000)
    if on == "primary":
        pair.stop_standby()
    with pytest.raises(errors.ReplicaWriteRefused, match="read-only"):
        with monps_store.replica():
            assert served_by_replica() is (on == "replica")
            crud.create(TeamQuantumDNA, team_name="Written", league="L")
    with pytest.raises(errors.ReplicaWriteRefused):
        with monps_store.replica():
            database.current().execute_sql(
                "UPDATE quantum.team_quantum_dna SET league = 'x'")
    assert pair.sql(pair.primary_url, "SELECT count(*) FROM quantum.team_quantum_dna") == [(0,)]
    assert monps_store.pool_status()["in_use"] == 0


def test_replica_inside_an_open_transaction_is_refused(pair, replicated):
    replicated()
    with monps_store.unit_of_work():
        with pytest.raises(errors.MonpsStoreError, match="open transaction"):
            with monps_store.replica():
                pass


def test_replica_urls_are_read_and_masked_like_database_url():
    settings = config.load_settings({
        "DATABASE_URL": "postgresql://app:primary-secret@db/monps",
        "DATABASE_REPLICA_URLS": "postgresql://app:replica-secret@r1/monps , "
                                 "postgresql://app:replica-secret@r2:6432/monps",
        "DB_REPLICA_MAX_LAG_MS": "250"}, None)
    assert [r.display_url for r in settings.replicas] == [
        "postgresql://app:***@r1:5432/monps", "postgresql://app:***@r2:6432/monps"]
    assert settings.replica_max_lag_ms == 250
    for text in (repr(settings), str(settings.describe())):
        assert "replica-secret" not in text and "primary-secret" not in text
    with pytest.raises(errors.ConfigError, match=r"DATABASE_REPLICA_URLS \(replica 2\)"):
        config.load_settings({"DATABASE_URL": "postgresql://a@db/m",
                              "DATABASE_REPLICA_URLS": "postgresql://a@r/m,mysql://a@r/m"}, None)


def test_check_reports_each_replica_in_text_and_json(pair, replicated, tmp_path):
    from tests.test_cli import cli

    down = "postgresql://postgres:replica-canary@127.0.0.1:1/postgres"
    env = {"DATABASE_URL": pair.primary_url, "DB_CONNECT_TIMEOUT": "2",
           "DATABASE_REPLICA_URLS": f"{pair.standby_url},{down}"}
    text = cli("check", env=env, cwd=tmp_path)
    assert text.returncode == 1  # one replica cannot serve
    standby = re.escape(pair.standby_url)
    assert re.search(rf"^replica     ok, in recovery, lag [0-9.]+ ms  {standby}$", text.stdout,
                     re.M), text.stdout
    assert "replica     FAILED  postgresql://postgres:***@127.0.0.1:1/postgres" in text.stdout
    report = json.loads(cli("check", "--json", env=env, cwd=tmp_path).stdout)
    assert [(r["reachable"], r.get("in_recovery")) for r in report["replicas"]] == [
        (True, True), (False, None)]
    assert "replica-canary" not in text.stdout + text.stderr + json.dumps(report)
    env["DATABASE_REPLICA_URLS"] = pair.standby_url
    assert cli("check", env=env, cwd=tmp_path).returncode == 0


# -- the async API -----------------------------------------------------------------------------


def async_served_by_replica():
    return aio.run(lambda: database.current().execute_sql(
        "SELECT pg_is_in_recovery()").fetchone()[0])


def run_on_replicas(pair, scenario, **settings):
    async def main():
        base = config.from_url(pair.primary_url, application_name="monps_replica_test",
                               pool_timeout=5, connect_timeout=2, **settings)
        await aio.init_db(config.with_replicas(base, [pair.standby_url]))
        try:
            return await scenario()
        finally:
            await aio.close_db()

    return asyncio.run(main())


def test_async_reads_go_to_the_replica_yet_see_the_tasks_own_commits(pair, replicated):
    pair.pause_replay()
    pair.sql(pair.primary_url, "INSERT INTO quantum.team_quantum_dna (team_name, league) "
                               "VALUES ('Other', 'L')")

    async def scenario():
        seen = []
        async with aio.replica():
            seen.append((await async_served_by_replica(), await aio.run(names)))
        async with aio.unit_of_work(actor="async-writer"):
            await aio.run(crud.create, TeamQuantumDNA, team_name="Mine", league="L")
        async with aio.replica():
            seen.append((await async_served_by_replica(), await aio.run(names)))
            with pytest.raises(errors.ReplicaWriteRefused):
                async with aio.unit_of_work():  # a savepoint of the read-only scope
                    await aio.run(crud.create, TeamQuantumDNA, team_name="No", league="L")
        await asyncio.to_thread(pair.resume_replay)
        await asyncio.to_thread(pair.wait_replayed)
        async with aio.replica():
            seen.append((await async_served_by_replica(), await aio.run(names)))
        status = aio.pool_status()
        return seen, status

    seen, status = run_on_replicas(pair, scenario, replica_max_lag_ms=600_000)
    assert seen == [(True, []), (False, ["Mine", "Other"]), (True, ["Mine", "Other"])]
    assert status["in_use"] == 0 and status["replicas"][0]["in_use"] == 0
    assert status["replicas"][0]["state"] == "ok"


def test_async_reads_fall_back_to_the_primary_when_the_replica_is_stopped(pair, replicated):
    pair.stop_standby()

    async def scenario():
        async with aio.replica():
            served = await async_served_by_replica()
        return served, aio.pool_status()["replicas"][0]["state"]

    assert run_on_replicas(pair, scenario) == (False, "unreachable")


# -- a read-only server outside replica() ------------------------------------------------------


def write_outside_replica(url: str, api: str) -> Exception:
    """The error a write raises on ``url`` outside any replica() scope, sync or async."""
    probe = "CREATE TABLE public.monps_write_probe (i int)"
    if api == "sync":
        monps_store.init_db(url=url, pool_timeout=5, connect_timeout=2)
        try:
            with pytest.raises(Exception) as raised, monps_store.connection():
                monps_store.db.execute_sql(probe)
        finally:
            monps_store.close_db()
        return raised.value

    async def main():
        await aio.init_db(url=url, pool_timeout=5, connect_timeout=2)
        try:
            with pytest.raises(Exception) as raised:
                await aio.run(lambda: database.current().execute_sql(probe))
            return raised.value
        finally:
            await aio.close_db()

    return asyncio.run(main())


@pytest.fixture
def read_only_session(pg, empty_database):
    """A database whose sessions are read-only (default_transaction_read_only = on)."""
    name = empty_database.partition("?")[0].rsplit("/", 1)[1]
    pg.sql(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
    return empty_database


@pytest.mark.parametrize("api", ["sync", "async"])
@pytest.mark.parametrize("server", ["read-only session", "standby"])
def test_a_write_on_a_read_only_server_outside_replica_names_the_server_not_replica(
        request, server, api):
    url = (request.getfixturevalue("read_only_session") if server == "read-only session"
           else request.getfixturevalue("pair").standby_url)
    error = write_outside_replica(url, api)
    message = str(error)
    assert "replica()" not in message, message
    assert f"the server at {config.from_url(url).display_url} is read-only" in message, message
    assert "nothing was written" in message
    assert "DATABASE_URL" in message and "target_session_attrs=read-write" in message
    assert isinstance(error, errors.ReadOnlyServer) and isinstance(error, peewee.InternalError)
    assert not isinstance(error, errors.ReplicaWriteRefused)


@pytest.mark.parametrize("api", ["sync", "async"])
def test_a_write_inside_replica_on_the_primary_keeps_the_replica_message(pg, db, api):
    """No replicas configured: the primary serves the scope, read-only."""
    create = (crud.create, TeamQuantumDNA)

    async def main():
        await aio.init_db(url=pg.url, pool_timeout=5)
        try:
            async with aio.replica():
                await aio.run(*create, team_name="No", league="L")
        finally:
            await aio.close_db()

    with pytest.raises(errors.ReplicaWriteRefused) as raised:
        if api == "sync":
            with monps_store.replica():
                create[0](create[1], team_name="No", league="L")
        else:
            asyncio.run(main())
    assert str(raised.value).startswith("a write inside replica(), which is read-only ("), \
        str(raised.value)
    assert pg.sql("SELECT count(*) FROM quantum.team_quantum_dna") == [(0,)]
