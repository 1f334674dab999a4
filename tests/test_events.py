"""Change events on LISTEN/NOTIFY, on the real server: delivered on commit only, in order,
none lost while connected; a listener whose backend is killed reconnects and says so."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

import monps_store
from monps_store import events
from monps_store.errors import ConfigError, InvalidInput


def publish(channel, payload, actor="test"):
    with monps_store.unit_of_work(actor=actor):
        events.publish(channel, payload)


def test_a_committed_event_arrives_and_a_rolled_back_one_never_does(db):
    with events.listen("demo_changed", timeout=1.0) as listener:
        with pytest.raises(RuntimeError), monps_store.unit_of_work():
            events.publish("demo_changed", {"n": "rolled back"})
            raise RuntimeError("abandon the unit of work")
        publish("demo_changed", {"n": 1, "when": "committed"})
        received = list(listener)
    assert [(e.channel, e.payload) for e in received] == [
        ("demo_changed", {"n": 1, "when": "committed"})]
    assert received[0].pid > 0


def test_an_event_inside_a_unit_of_work_is_sent_at_commit_not_before(db):
    with events.listen("demo_changed") as listener:
        with monps_store.unit_of_work():
            events.publish("demo_changed", {"n": 1})
            assert listener.next_event(0.3) is None  # not committed yet
        assert listener.next_event(2.0).payload == {"n": 1}


def test_events_arrive_in_the_order_published_across_transactions(db):
    with events.listen("a_changed", "b_changed", timeout=1.0) as listener:
        for n in range(5):
            with monps_store.unit_of_work():
                events.publish("a_changed" if n % 2 else "b_changed", {"n": n})
                events.publish("a_changed", {"n": n, "second": True})
        received = list(listener)
    assert [(e.channel, e.payload["n"], "second" in e.payload) for e in received] == [
        (ch, n, second) for n in range(5)
        for ch, second in ((("a_changed" if n % 2 else "b_changed"), False),
                           ("a_changed", True))]


def test_publishing_outside_a_unit_of_work_or_with_bad_input_is_refused(db):
    with pytest.raises(InvalidInput, match="outside a unit of work"):
        events.publish("demo_changed", {})
    with monps_store.unit_of_work():
        for bad in ("Odds", "odds-changed", "", "9lives", "x" * 64, None, "drop table;"):
            with pytest.raises(InvalidInput, match="bad channel name"):
                events.publish(bad, {})
        with pytest.raises(InvalidInput, match="cannot be sent as JSON"):
            events.publish("demo_changed", {"when": object()})
        with pytest.raises(InvalidInput, match="cannot be sent as JSON"):
            events.publish("demo_changed", {"nan": float("nan")})
    with pytest.raises(InvalidInput, match="at least one channel"):
        events.listen()
    for timeout in (-1, "5", True, float("nan")):
        with pytest.raises(InvalidInput, match="timeout must be a number of seconds"):
            events.listen("demo_changed", timeout=timeout)


def test_an_oversized_payload_is_refused_whole_and_a_batched_list_is_split_to_fit(db):
    ids = [f"match-{n:06d}-" + "é" * 10 for n in range(2000)]  # about 50 kB as JSON
    with events.listen("big_changed", timeout=1.0) as listener:
        with pytest.raises(InvalidInput, match=r"is \d+ bytes as JSON .* at most 7999"), \
                monps_store.unit_of_work():
            events.publish("big_changed", {"match_ids": ids})
        with monps_store.unit_of_work():
            sent = events.publish_batched("big_changed", "match_ids", ids, source="test")
        received = list(listener)
    assert sent == len(received) > 1
    assert [i for e in received for i in e.payload["match_ids"]] == ids
    assert all(e.payload["source"] == "test" for e in received)
    assert all(len(json.dumps(e.payload, ensure_ascii=False, separators=(",", ":"))
                   .encode()) <= events.MAX_PAYLOAD_BYTES for e in received)
    with monps_store.unit_of_work(), pytest.raises(InvalidInput, match="alone does not fit"):
        events.publish_batched("big_changed", "rows", ["x" * 9000])


def test_ten_thousand_events_published_while_connected_all_arrive(db):
    count = 10_000
    with events.listen("bulk_changed", timeout=5.0) as listener:
        def publisher():
            for start in range(0, count, 500):  # 20 transactions of 500 events each
                with monps_store.unit_of_work():
                    for n in range(start, start + 500):
                        events.publish("bulk_changed", {"n": n})

        thread = threading.Thread(target=publisher)
        thread.start()
        received = [event.payload["n"] for event in itertools.islice(listener, count)]
        thread.join()
    assert received == list(range(count))


def test_a_listener_whose_backend_is_killed_reconnects_and_calls_on_reconnect(db, pg):
    calls = []
    with events.listen("demo_changed", timeout=10.0,
                       on_reconnect=lambda: calls.append(time.monotonic())) as listener:
        publish("demo_changed", {"n": 1})
        assert listener.next_event(2.0).payload == {"n": 1}
        (pid,) = pg.backends(f"{'monps_test'}:listen")
        pg.terminate(pid)
        publish("demo_changed", {"n": "lost"})  # while nobody listens: gone for good
        # The loss is noticed at the next wait; the listener is back within the backoff.
        assert listener.next_event(1.0) is None
        assert calls and listener.connected and listener.reconnects == 1
        assert pg.backends("monps_test:listen") not in ([], [pid])
        publish("demo_changed", {"n": 2})
        assert listener.next_event(2.0).payload == {"n": 2}


def test_listening_behind_a_transaction_pooler_needs_a_direct_url(pg):
    settings = monps_store.config.from_url(pg.url, pooler="pgbouncer")
    with pytest.raises(ConfigError, match="DATABASE_LISTEN_URL"):
        events.Listener(["demo_changed"], settings=settings)
    direct = monps_store.config.from_url(
        pg.url, pooler="pgbouncer", listen_url=monps_store.config.Secret(pg.url))
    with events.Listener(["demo_changed"], settings=direct) as listener:
        assert listener.connected
        assert "pgbouncer" not in repr(listener)


def test_the_listen_command_prints_events_as_json_lines(db, pg):
    env = {**os.environ, "DATABASE_URL": pg.url, "DB_APPLICATION_NAME": "monps_cli"}
    process = subprocess.Popen([sys.executable, "-m", "monps_store", "listen", "demo_changed",
                                "other_changed"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while not pg.backends("monps_cli:listen") and time.monotonic() < deadline:
            time.sleep(0.05)
        publish("demo_changed", {"n": 1})
        publish("other_changed", ["x"])
        first = json.loads(process.stdout.readline())
        second = json.loads(process.stdout.readline())
        (pid,) = pg.backends("monps_cli:listen")
        pg.terminate(pid)
        while pg.backends("monps_cli:listen") in ([], [pid]) and time.monotonic() < deadline:
            time.sleep(0.05)
        # Its backend may show before its LISTEN runs: publish until one is printed.
        printed = threading.Event()

        def keep_publishing():
            while not printed.wait(0.1):
                publish("demo_changed", {"n": "after the reconnection"})

        publisher = threading.Thread(target=keep_publishing)
        publisher.start()
        try:
            third = json.loads(process.stdout.readline())
        finally:
            printed.set()
            publisher.join()
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=10)
    assert (first["channel"], first["payload"]) == ("demo_changed", {"n": 1})
    assert (second["channel"], second["payload"]) == ("other_changed", ["x"])
    assert isinstance(first["pid"], int)
    assert third["payload"] == {"n": "after the reconnection"}
    assert "listen: reconnected; events sent while disconnected were missed" in stderr
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr


# -- the async twin ----------------------------------------------------------------------------


def test_the_async_listener_gets_committed_events_reconnects_and_awaits_on_reconnect(db, pg):
    import asyncio

    from monps_store import aio
    from tests.test_aio import run_async

    async def scenario():
        resynced = []

        async def resync():
            resynced.append(True)

        async with aio.listen("demo_changed", "other_changed", timeout=1.0,
                              on_reconnect=resync) as listener:
            async with aio.unit_of_work():
                await aio.run(events.publish, "demo_changed", {"n": 1})
                assert await listener.next_event(0.3) is None  # not committed yet
            with pytest.raises(RuntimeError):
                async with aio.unit_of_work():
                    await aio.run(events.publish, "other_changed", {"n": "rolled back"})
                    raise RuntimeError("abandon")
            await asyncio.to_thread(publish, "other_changed", {"n": 2})  # from a sync thread
            first = [(e.channel, e.payload) async for e in listener]
            (pid,) = pg.backends("monps_test:listen")
            pg.terminate(pid)
            await asyncio.sleep(0.2)
            second_event = await listener.next_event(3.0)  # nothing sent: reconnects, waits
            await asyncio.to_thread(publish, "demo_changed", {"n": 3})
            third = await listener.next_event(3.0)
            return first, second_event, third, resynced, listener.reconnects

    first, second, third, resynced, reconnects = run_async(pg, scenario)
    assert first == [("demo_changed", {"n": 1}), ("other_changed", {"n": 2})]
    assert second is None
    assert third.payload == {"n": 3}
    assert resynced == [True] and reconnects == 1


def test_the_async_listener_calls_on_lost_when_it_notices_a_loss_then_on_reconnect(db, pg):
    import asyncio

    from monps_store.aio.events import AsyncListener
    from tests.test_aio import run_async

    async def scenario():
        calls = []

        async def lost():  # awaited, like on_reconnect
            calls.append(("lost", listener.connected))

        async with AsyncListener(["demo_changed"], timeout=1.0, on_lost=lost,
                                 on_reconnect=lambda: calls.append(("reconnected",))) as listener:
            (pid,) = pg.backends("monps_test:listen")
            pg.terminate(pid)
            await asyncio.sleep(0.2)
            assert await listener.next_event(3.0) is None  # nothing sent: reconnects, waits
            await asyncio.to_thread(publish, "demo_changed", {"n": "after"})
            after = await listener.next_event(3.0)
            return calls, after, listener.reconnects

    calls, after, reconnects = run_async(pg, scenario)
    assert calls == [("lost", False), ("reconnected",)]  # lost first, already disconnected
    assert after.payload == {"n": "after"} and reconnects == 1


def test_an_event_published_on_a_lent_legacy_connection_goes_with_the_owners_commit(db, pg):
    import psycopg2

    from monps_store import legacy

    conn = psycopg2.connect(pg.url)
    try:
        with events.listen("demo_changed", timeout=0.5) as listener:
            with legacy.use_connection(conn):
                events.publish("demo_changed", {"n": "rolled back by the owner"})
            conn.rollback()
            with legacy.use_connection(conn):
                events.publish("demo_changed", {"n": "committed by the owner"})
            assert listener.next_event(0.3) is None  # the owner has not committed yet
            conn.commit()
            received = list(listener)
    finally:
        conn.close()
    assert [e.payload for e in received] == [{"n": "committed by the owner"}]
