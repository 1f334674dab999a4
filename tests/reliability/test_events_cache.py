"""Events and the cache across processes: an ingest committed by one process drops a cached
read in another, measured from the commit to the invalidation, over 200 trials."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import textwrap
import threading
import time
from decimal import Decimal

from monps_store import cache
from monps_store.errors import ConnectionLost
from monps_store.repositories import odds
from tests.factories import add_odds
from tests.test_cache import function_stats, wait_until_listening

TRIALS = 200

# Ingests one row per line read from stdin (the price given), inside a unit of work, and
# prints the wall-clock time just before the commit and just after it returned.
PUBLISHER = textwrap.dedent("""
    import sys, time
    import monps_store
    from monps_store import ingest

    monps_store.init_db(url=sys.argv[1], application_name="monps_publisher")
    header = ",".join(ingest.COLUMNS)
    path = sys.argv[2]
    print("ready", flush=True)
    for number, line in enumerate(sys.stdin):
        price = line.strip()
        with open(path, "w") as out:
            out.write(header + "\\n" + f"m1,L1,Home,Away,pinnacle,1x2,home,{price},"
                      "2026-11-28T20:00:00Z,2026-11-28T19:00:00Z\\n")
        with monps_store.unit_of_work(actor="publisher"):
            ingest.ingest_odds(path)
            before = time.time()
        after = time.time()
        print(before, after, flush=True)
""")


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def test_an_ingest_in_another_process_drops_a_cached_read_here(db, pg, tmp_path, monkeypatch,
                                                               figures):
    add_odds(match_id="m1", price=Decimal("1.500"))
    wait_until_listening()
    invalidated = threading.Event()
    seen_at = []
    original = cache.invalidate

    def recording(channel, payload=None):
        original(channel, payload)
        if channel == "odds_changed":
            seen_at.append(time.time())
            invalidated.set()

    monkeypatch.setattr(cache, "invalidate", recording)
    publisher = subprocess.Popen(
        [sys.executable, "-c", PUBLISHER, pg.url, str(tmp_path / "one.csv")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": os.getcwd()})
    after_commit, before_commit, stale = [], [], 0
    try:
        assert publisher.stdout.readline().strip() == "ready"
        for trial in range(TRIALS):
            price = f"{2 + trial / 1000:.3f}"
            odds.latest_prices("m1")
            hits = function_stats(odds.latest_prices)["hits"]
            cached = odds.latest_prices("m1")  # served from the cache
            assert function_stats(odds.latest_prices)["hits"] == hits + 1
            invalidated.clear()
            publisher.stdin.write(price + "\n")
            publisher.stdin.flush()
            before, after = map(float, publisher.stdout.readline().split())
            assert invalidated.wait(5), f"trial {trial}: no invalidation within 5 s"
            fresh = odds.latest_prices("m1")
            stale += str(fresh[0].price) != price
            assert str(cached[0].price) != price
            after_commit.append((seen_at[-1] - after) * 1e3)
            before_commit.append((seen_at[-1] - before) * 1e3)
    finally:
        publisher.stdin.close()
        publisher.wait(timeout=30)
    assert stale == 0
    print(f"\ninvalidation after the publisher's commit, ms over {TRIALS} trials: "
          f"from before COMMIT p50 {statistics.median(before_commit):.3f} "
          f"p99 {percentile(before_commit, 0.99):.3f}; from its return "
          f"p50 {statistics.median(after_commit):.3f} p99 {percentile(after_commit, 0.99):.3f}")
    figures.add("events: cross-process cache invalidation", trials=TRIALS, stale_reads=stale,
                p50_us_from_commit=round(statistics.median(before_commit) * 1000),
                p99_us_from_commit=round(percentile(before_commit, 0.99) * 1000))


def test_a_listener_and_the_cache_come_back_after_a_server_restart(restartable, db, figures):
    import monps_store
    from monps_store import events
    from monps_store.repositories import teams
    from tests.factories import add_team

    add_team("Before", league="L1")
    wait_until_listening()
    assert teams.get_top_performers()[0].team_name == "Before"
    assert cache.stats()["size"] >= 1
    resynced = []
    with events.listen("demo_changed", on_reconnect=lambda: resynced.append(1)) as listener:
        restartable.restart()
        # The loss is noticed at the next wait, then the listener retries until the server
        # accepts connections again.
        deadline = time.monotonic() + 30
        while not resynced:
            assert listener.next_event(0.2) is None
            assert time.monotonic() < deadline, "the listener did not reconnect"
        # The pool's connections died with the server: the first unit of work says so
        # (ConnectionLost, "retry the unit of work"), the retry runs on a new one.
        for attempt in range(3):
            try:
                with monps_store.unit_of_work():
                    events.publish("demo_changed", {"after": "restart"})
                break
            except ConnectionLost:
                assert attempt < 2
        assert listener.next_event(5.0).payload == {"after": "restart"}
    assert resynced == [1]
    # A change nobody announced: the cache dropped what it held when its listener lost the
    # connection, so the next read sees it.
    restartable.sql("INSERT INTO quantum.team_quantum_dna (team_name, league, roi) "
                    "VALUES ('Raw', 'L1', 200)")
    assert teams.get_top_performers()[0].team_name == "Raw"
    wait_until_listening(timeout=30)
    with monps_store.unit_of_work():
        add_team("After", league="L1", roi=Decimal("300"))
    assert teams.get_top_performers()[0].team_name == "After"
    figures.add("events: server restart", restarts=1, listeners_reconnected=2, stale_reads=0)
