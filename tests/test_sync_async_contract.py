"""One contract, two databases: the sync pool (psycopg2) and the async one (asyncpg) give the
same figures and raise the same errors for the same faults. Each test runs once per side; a
``Side`` runs sync code (the repositories, raw SQL through ``monps_store.db``) the way that
side runs it: on a thread in a unit of work, or in ``aio.run()`` inside ``aio.unit_of_work()``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import monps_store
from monps_store import aio, errors
from monps_store.models import TeamQuantumDNA
from monps_store.repositories import crud
from tests.conftest import TEST_APP_NAME

SETTINGS = {"application_name": TEST_APP_NAME, "pool_size": 1, "max_overflow": 1,
            "pool_timeout": 0.3}


class Side:
    """How one side runs ``fn`` in a unit of work, ``holding`` connections meanwhile."""

    name: str

    def __init__(self, url: str):
        self.url = url

    def pool_status(self) -> dict:
        raise NotImplementedError

    def run(self, fn: Callable[[], Any], holding: int = 0, **settings: Any) -> Any:
        raise NotImplementedError


class Sync(Side):
    name = "sync"

    def pool_status(self) -> dict:
        return monps_store.pool_status()

    def run(self, fn, holding=0, **settings):
        monps_store.init_db(url=self.url, **(SETTINGS | settings))
        release, held = threading.Event(), threading.Barrier(holding + 1, timeout=10)

        def hold() -> None:
            with monps_store.connection():
                monps_store.db.execute_sql("SELECT 1")
                held.wait()
                release.wait(10)

        holders = [threading.Thread(target=hold) for _ in range(holding)]
        for holder in holders:
            holder.start()
        if holding:
            held.wait()
        try:
            with monps_store.unit_of_work():
                return fn()
        finally:
            release.set()
            for holder in holders:
                holder.join(10)


class Async(Side):
    name = "async"

    def pool_status(self) -> dict:
        return self.status

    def run(self, fn, holding=0, **settings):
        async def hold(held: asyncio.Event, release: asyncio.Event) -> None:
            async with aio.connection() as adb:
                await adb.aexecute_sql("SELECT 1")
                held.set()
                await release.wait()

        async def main() -> Any:
            await aio.init_db(url=self.url, **(SETTINGS | settings))
            release = asyncio.Event()
            helds = [asyncio.Event() for _ in range(holding)]
            holders = [asyncio.create_task(hold(held, release)) for held in helds]
            for held in helds:
                await held.wait()
            try:
                async with aio.unit_of_work():
                    return await aio.run(fn)
            finally:
                release.set()
                await asyncio.gather(*holders)
                self.status = aio.pool_status()
                await aio.close_db()

        return asyncio.run(main())


@pytest.fixture(params=[Sync, Async], ids=lambda side: side.name)
def side(request, pg, db) -> Side:
    return request.param(pg.url)


def test_pool_status_has_the_same_keys_and_meaning_on_both(side):
    side.run(lambda: crud.create(TeamQuantumDNA, team_name="Lyon", league="L"))
    status = side.pool_status()
    sync_keys = set(monps_store.database.db.pool_status())
    assert set(status) - {"replicas"} == sync_keys
    assert (status["max_connections"], status["pool_size"], status["max_overflow"]) == (2, 1, 1)
    assert status["in_use"] == 0 and status["opened"] >= 1 and status["exhausted"] == 0


def test_a_pool_with_every_connection_held_raises_pool_exhausted_naming_the_settings(side):
    with pytest.raises(errors.PoolExhausted, match=r"connection pool exhausted: all 2 "
                       r"connections are in use \(DB_POOL_SIZE=1 \+ DB_MAX_OVERFLOW=1\), none "
                       r"came free within DB_POOL_TIMEOUT=0.3s"):
        side.run(lambda: None, holding=2)


def test_a_backend_killed_mid_unit_is_connection_lost_and_nothing_is_written(side, pg):
    def killed() -> None:
        crud.create(TeamQuantumDNA, team_name="Never", league="L")
        pid = monps_store.db.execute_sql("SELECT pg_backend_pid()").fetchone()[0]
        pg.terminate(pid)
        time.sleep(0.2)
        monps_store.db.execute_sql("SELECT 1")

    with pytest.raises(errors.ConnectionLost, match="lost the database connection"):
        side.run(killed)
    assert pg.sql("SELECT count(*) FROM quantum.team_quantum_dna") == [(0,)]


def test_a_statement_over_the_timeout_is_statement_timeout(side):
    with pytest.raises(errors.StatementTimeout, match="DB_STATEMENT_TIMEOUT=100 ms"):
        side.run(lambda: monps_store.db.execute_sql("SELECT pg_sleep(2)"),
                 statement_timeout=100)


def test_a_value_the_server_refuses_is_invalid_value(side):
    with pytest.raises(errors.InvalidValue, match="SQLSTATE 22"):
        side.run(lambda: monps_store.db.execute_sql("SELECT 'not a date'::date"))


def test_a_write_in_a_read_only_transaction_outside_replica_is_read_only_server(side):
    def write() -> None:
        monps_store.db.execute_sql("SET TRANSACTION READ ONLY")
        crud.create(TeamQuantumDNA, team_name="Lyon", league="L")

    with pytest.raises(errors.ReadOnlyServer, match="is read-only"):
        side.run(write)


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_listener_that_loses_its_connection_says_so_reconnects_and_carries_on(kind, pg, db):
    from monps_store import events

    def publish_after() -> None:
        with monps_store.unit_of_work():
            events.publish("demo_changed", {"n": "after"})

    def kill_listener() -> None:
        (pid,) = pg.backends(f"{TEST_APP_NAME}:listen")
        pg.terminate(pid)
        time.sleep(0.2)

    calls: list = []
    if kind == "sync":
        with events.Listener(["demo_changed"], timeout=1.0,
                             on_lost=lambda: calls.append(("lost", listener.connected)),
                             on_reconnect=lambda: calls.append(("reconnected",))) as listener:
            kill_listener()
            assert listener.next_event(3.0) is None  # nothing sent: reconnects, waits
            publish_after()
            after, reconnects = listener.next_event(3.0), listener.reconnects
    else:
        from monps_store.aio.events import AsyncListener

        async def scenario() -> tuple:
            async with AsyncListener(
                    ["demo_changed"], timeout=1.0, settings=monps_store.db.settings,
                    on_lost=lambda: calls.append(("lost", listener.connected)),
                    on_reconnect=lambda: calls.append(("reconnected",))) as listener:
                await asyncio.to_thread(kill_listener)
                assert await listener.next_event(3.0) is None
                await asyncio.to_thread(publish_after)
                return await listener.next_event(3.0), listener.reconnects

        after, reconnects = asyncio.run(scenario())
    assert calls == [("lost", False), ("reconnected",)]  # lost first, already disconnected
    assert after.payload == {"n": "after"} and reconnects == 1
