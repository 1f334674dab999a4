"""One connection stuck on a backend that stopped answering (SIGSTOP: the server process is
alive and the socket open, but nothing comes back, as with a silent peer) costs only the
caller holding it: every other thread or task checks out, returns, reads ``pool_status()``
and passes ``check_connection()`` meanwhile.

The stuck call itself is released with SIGCONT at the end of each test. "Meanwhile" is
bounded generously (the other callers must be done within ``PATIENCE`` seconds while the
backend is still stopped): a liveness check, not a measure of speed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import time

import pytest

import monps_store
from monps_store import aio
from tests.conftest import TEST_APP_NAME

PATIENCE = 10.0


@pytest.fixture
def stoppable(pg):
    """``stop(pid)``: SIGSTOP a backend of the test server; every stopped one is continued
    at the end, whatever happened."""
    if not pg.can_restart:
        pytest.skip("stopping a backend needs the server this session started")
    stopped = []

    def stop(pid: int) -> None:
        os.kill(pid, signal.SIGSTOP)
        stopped.append(pid)

    yield stop
    for pid in stopped:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def in_background(fn) -> tuple[threading.Thread, dict]:
    box: dict = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the test
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


def test_a_stuck_idle_connection_holds_up_only_the_thread_that_checked_it_out(pg, db,
                                                                              stoppable):
    monps_store.init_db(url=pg.url, application_name=TEST_APP_NAME, pool_size=2,
                        max_overflow=2, pool_timeout=5)
    with monps_store.connection():
        pid = monps_store.db.execute_sql("SELECT pg_backend_pid()").fetchone()[0]
    assert monps_store.pool_status()["idle"] == 1
    stoppable(pid)  # the idle connection's backend stops answering

    def stuck_checkout():  # takes the idle connection; its probe waits for the backend
        with monps_store.connection():
            return monps_store.db.execute_sql("SELECT 1").fetchone()

    stuck, stuck_box = in_background(stuck_checkout)
    time.sleep(0.5)
    assert stuck.is_alive()  # waiting on the stopped backend

    def everyone_else():
        results = []
        for _ in range(3):  # checkouts and returns of healthy connections
            with monps_store.connection():
                results.append(monps_store.db.execute_sql("SELECT 2").fetchone())
        return results, monps_store.pool_status(), monps_store.check_connection()

    others, box = in_background(everyone_else)
    others.join(PATIENCE)
    assert not others.is_alive(), "other threads waited for the stuck connection"
    results, status, healthy = box["value"]
    assert results == [(2,)] * 3 and healthy
    assert status["in_use"] == 1  # the stuck checkout's, nothing else
    os.kill(pid, signal.SIGCONT)
    stuck.join(PATIENCE)
    assert stuck_box == {"value": (1,)}  # the stuck caller carries on once the backend does


def test_a_stuck_async_connection_holds_up_only_the_task_that_holds_it(pg, db, stoppable):
    async def scenario():
        await aio.init_db(url=pg.url, application_name=TEST_APP_NAME, pool_size=2,
                          max_overflow=2, pool_timeout=5)
        try:
            held = asyncio.Event()
            pids = []

            async def stuck_request():
                async with aio.connection() as adb:
                    pids.append((await adb.aexecute_sql("SELECT pg_backend_pid()"))
                                .fetchone()[0])
                    held.set()
                    await asyncio.sleep(0.3)  # meanwhile the backend is stopped
                    return (await adb.aexecute_sql("SELECT 1")).fetchone()

            stuck = asyncio.create_task(stuck_request())
            await held.wait()
            stoppable(pids[0])

            async def one_request(n):
                async with aio.unit_of_work():
                    return await aio.run(lambda: monps_store.db.execute_sql(
                        "SELECT %s::int", (n,)).fetchone()[0])

            start = time.monotonic()
            results = await asyncio.wait_for(
                asyncio.gather(*(one_request(n) for n in range(6))), PATIENCE)
            healthy = await asyncio.wait_for(aio.check_connection(), PATIENCE)
            status = aio.pool_status()
            elapsed = time.monotonic() - start
            assert not stuck.done()  # still waiting on the stopped backend
            os.kill(pids[0], signal.SIGCONT)
            return results, healthy, status, elapsed, await asyncio.wait_for(stuck, PATIENCE)
        finally:
            await aio.close_db()

    results, healthy, status, elapsed, stuck_result = asyncio.run(scenario())
    assert results == list(range(6)) and healthy
    assert status["in_use"] == 1
    assert stuck_result == (1,)
