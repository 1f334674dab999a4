"""The read cache on the real server: hits once its listener is up, copies for every caller,
dropped by events (this process's at commit, others' through LISTEN), bypassed in
transactions, cleared while its listener is disconnected, off with DB_CACHE=off."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

import monps_store
from monps_store import cache, database, events
from monps_store.errors import InvalidInput
from monps_store.repositories import crud, odds, strategies, teams
from tests.conftest import TEST_APP_NAME
from tests.factories import add_odds, add_strategy, add_team


def wait_until_listening(timeout=10.0):
    """Call a cached read until the cache's listener is connected (calls bypass until then)."""
    deadline = time.monotonic() + timeout
    while not cache.stats()["listening"]:
        teams.get_top_performers()
        assert time.monotonic() < deadline, "the cache listener did not connect"
        time.sleep(0.02)


def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def function_stats(fn) -> dict:
    return cache.stats()["functions"][f"{fn.__module__}.{fn.__qualname__}"]


@pytest.fixture
def teams_table(db):
    for n, roi in enumerate(("12.5", "30.0", "7.25")):
        add_team(f"Team {n}", league="L1", roi=Decimal(roi))
    wait_until_listening()
    cache.clear()


def test_a_repeated_read_is_served_from_the_cache_as_a_copy_of_its_own(teams_table, pg):
    before = function_stats(teams.get_top_performers)
    first = teams.get_top_performers(limit=2)
    again = teams.get_top_performers(2)  # the same arguments, bound to the signature
    after = function_stats(teams.get_top_performers)
    assert after["misses"] - before["misses"] == 1 and after["hits"] - before["hits"] == 1
    assert [t.team_name for t in first] == [t.team_name for t in again] == ["Team 1", "Team 0"]
    # A caller changing what it got changes nothing for the next one.
    again[0].team_name = "changed by a caller"
    again.append("junk")
    third = teams.get_top_performers(limit=2)
    assert [t.team_name for t in third] == ["Team 1", "Team 0"]
    assert third[0] is not first[0]
    # Served without the database: a change made behind the cache's back (no event) is not
    # seen until the TTL runs out. This is the documented limit.
    pg.sql("UPDATE quantum.team_quantum_dna SET roi = 99 WHERE team_name = 'Team 2'")
    assert [t.team_name for t in teams.get_top_performers(limit=2)] == ["Team 1", "Team 0"]


def test_a_write_through_the_package_is_seen_at_once_by_the_process_that_made_it(teams_table):
    assert teams.get_top_performers(limit=1)[0].team_name == "Team 1"
    assert teams.get_top_performers(limit=1)[0].team_name == "Team 1"  # cached
    team = teams.get_by_name("Team 2")
    with monps_store.unit_of_work(actor="test"):
        crud.update(team, roi=Decimal("99"))
    # No wait: the commit dropped the results before returning.
    assert teams.get_top_performers(limit=1)[0].team_name == "Team 2"
    with monps_store.unit_of_work(actor="test"):
        crud.insert_many(type(team), [{"team_name": "Team 9", "league": "L1", "roi": 500}])
    assert teams.get_top_performers(limit=1)[0].team_name == "Team 9"
    crud.delete(teams.get_by_name("Team 9"))  # outside a unit of work: its own transaction
    assert teams.get_top_performers(limit=1)[0].team_name == "Team 2"


def test_a_rolled_back_write_drops_nothing_and_reads_in_a_transaction_bypass(teams_table):
    teams.get_top_performers(limit=1)
    with pytest.raises(RuntimeError), monps_store.unit_of_work():
        crud.update(teams.get_by_name("Team 2"), roi=Decimal("99"))
        # Inside the transaction its own uncommitted write is read, and not kept.
        assert teams.get_top_performers(limit=1)[0].team_name == "Team 2"
        raise RuntimeError("roll back")
    stats = function_stats(teams.get_top_performers)
    assert teams.get_top_performers(limit=1)[0].team_name == "Team 1"
    assert function_stats(teams.get_top_performers)["hits"] == stats["hits"] + 1


def test_an_event_during_a_read_keeps_that_read_out_of_the_cache(db, pg):
    add_team("A", league="L1", roi=Decimal("1"))
    started, proceed = threading.Event(), threading.Event()

    @cache.cached(invalidate_on=("team_quantum_dna_changed",))
    def slow_roi(name):
        value = teams.get_by_name(name).roi
        started.set()
        proceed.wait(5)
        return value

    wait_until_listening()
    proceed.set()
    slow_roi("A")
    assert function_stats(slow_roi)["size"] == 1  # undisturbed, a read is kept
    cache.clear()
    started.clear()
    proceed.clear()
    reader = threading.Thread(target=slow_roi, args=("A",))
    reader.start()
    started.wait(5)  # the old value is read; now a change commits before the read ends
    with monps_store.unit_of_work():
        crud.update(teams.get_by_name("A"), roi=Decimal("2"))
    proceed.set()
    reader.join()
    assert function_stats(slow_roi)["size"] == 0  # the stale value was not kept
    assert slow_roi("A") == Decimal("2")


def test_the_listener_losing_its_connection_clears_the_cache_until_it_is_back(teams_table, pg):
    teams.get_top_performers(limit=1)
    assert function_stats(teams.get_top_performers)["size"] == 1
    (pid,) = pg.backends(f"{TEST_APP_NAME}:listen")
    # A change nobody announces, made while the listener is cut off: it might have missed an
    # event, so nothing it kept may be served.
    pg.sql("UPDATE quantum.team_quantum_dna SET roi = 99 WHERE team_name = 'Team 2'")
    pg.terminate(pid)
    wait_for(lambda: cache.stats()["size"] == 0, timeout=10)
    assert teams.get_top_performers(limit=1)[0].team_name == "Team 2"
    wait_until_listening()
    assert pg.backends(f"{TEST_APP_NAME}:listen") not in ([], [pid])
    teams.get_top_performers(limit=1)
    hits = function_stats(teams.get_top_performers)["hits"]
    assert teams.get_top_performers(limit=1)[0].team_name == "Team 2"
    assert function_stats(teams.get_top_performers)["hits"] == hits + 1


def test_an_ingest_drops_cached_latest_prices_and_strategies_follow_team_changes(db, tmp_path):
    from monps_store import ingest

    add_odds(match_id="m1", price=Decimal("2.000"))
    wait_until_listening()
    assert [str(r.price) for r in odds.latest_prices("m1")] == ["2.000"]
    assert function_stats(odds.latest_prices)["size"] == 1
    csv = tmp_path / "odds.csv"
    csv.write_text(",".join(ingest.COLUMNS) + "\n"
                   "m1,L1,Home,Away,pinnacle,1x2,home,2.500,2026-11-28T20:00:00Z,"
                   "2026-11-28T19:00:00Z\n")
    ingest.ingest_odds(csv)
    assert [str(r.price) for r in odds.latest_prices("m1")] == ["2.500"]

    team = add_team("T", league="L1")
    add_strategy(team, "s", roi="5.000", market="1x2")
    assert strategies.get_best_by_market("1x2")[0].team.league == "L1"
    with monps_store.unit_of_work():
        crud.update(team, league="L2")
    assert strategies.get_best_by_market("1x2")[0].team.league == "L2"


def test_db_cache_off_sends_every_call_to_the_database(pg, tables):
    monps_store.init_db(url=pg.url, application_name=TEST_APP_NAME, cache=False)
    try:
        before = cache.stats()
        for _ in range(5):
            teams.get_top_performers()
        after = cache.stats()
        assert after["enabled"] is False
        assert after["bypassed"] - before["bypassed"] == 5
        assert after["hits"] == before["hits"] and after["size"] == 0
    finally:
        monps_store.close_db()
    settings = monps_store.config.load_settings({"DATABASE_URL": pg.url, "DB_CACHE": "off"},
                                                env_file=None)
    assert settings.cache is False
    assert monps_store.config.load_settings({"DATABASE_URL": pg.url}, env_file=None).cache


def test_the_async_api_shares_the_cache_outside_units_of_work(db, pg):
    from monps_store import aio
    from tests.test_aio import run_async

    add_team("Async", league="L1", roi=Decimal("3"))
    wait_until_listening()
    cache.clear()

    async def scenario():
        first = await aio.run(teams.get_top_performers, limit=1)
        second = await aio.run(teams.get_top_performers, limit=1)
        async with aio.unit_of_work():
            team = await aio.run(teams.get_by_name, "Async")
            await aio.run(crud.update, team, team_name="Renamed")
        third = await aio.run(teams.get_top_performers, limit=1)
        return first, second, third

    before = function_stats(teams.get_top_performers)
    first, second, third = run_async(pg, scenario)
    after = function_stats(teams.get_top_performers)
    assert first[0].team_name == second[0].team_name == "Async"
    assert third[0].team_name == "Renamed"
    assert after["hits"] - before["hits"] >= 1


def test_bad_cache_arguments_are_refused():
    with pytest.raises(InvalidInput, match="ttl"):
        cache.cached(ttl=0)
    with pytest.raises(InvalidInput, match="maxsize"):
        cache.cached(maxsize=0)
    with pytest.raises(InvalidInput, match="bad channel name"):
        cache.cached(invalidate_on=("Bad-Channel",))


def test_results_are_kept_per_arguments_up_to_maxsize_and_for_ttl_seconds(db):
    calls = []

    @cache.cached(ttl=0.3, invalidate_on=("team_quantum_dna_changed",), maxsize=2)
    def echo(value, unhashable=None):
        calls.append(value)
        return [value]

    wait_until_listening()
    wait_for(lambda: echo(0) and function_stats(echo)["size"] == 1)
    calls.clear()
    echo(1), echo(2), echo(1)   # 1 and 2 kept; 1 is the most recent
    echo(3)                     # 2 goes
    echo(1)
    assert calls == [1, 2, 3]
    echo(2)
    assert calls == [1, 2, 3, 2]
    assert echo(5, unhashable=[1]) == [5] and calls[-1] == 5  # served, never kept
    time.sleep(0.35)
    echo(2)
    assert calls[-1] == 2 and len(calls) == 6  # expired after its TTL


def test_events_publish_for_team_writes_carry_the_ids(db):
    with events.listen("team_quantum_dna_changed", timeout=1.0) as listener:
        team = add_team("Evented", league="L1")
        received = list(listener)
    assert [e.payload for e in received] == [
        {"ids": [team.id], "table": "quantum.team_quantum_dna"}]


def test_an_odds_change_drops_only_the_cached_prices_of_the_matches_it_names(db):
    for match_id in ("m1", "m2", "m3"):
        add_odds(match_id=match_id, price=Decimal("2.000"))
    wait_until_listening()
    for match_id in ("m1", "m2", "m3"):
        odds.latest_prices(match_id)
        odds.latest_prices(match_id, "1x2")
    assert function_stats(odds.latest_prices)["size"] == 6
    with monps_store.unit_of_work():
        odds.upsert([{**{k: v for k, v in odds.get_by_match("m2")[0].to_dict().items()
                         if k in odds.NATURAL_KEY or k in ("league", "home_team", "away_team",
                                                            "commence_time")},
                      "price": Decimal("2.500")}])
    assert function_stats(odds.latest_prices)["size"] == 4  # m1 and m3 stay
    assert [str(r.price) for r in odds.latest_prices("m2")] == ["2.500"]
    hits = function_stats(odds.latest_prices)["hits"]
    odds.latest_prices("m1"), odds.latest_prices("m3", "1x2")
    assert function_stats(odds.latest_prices)["hits"] == hits + 2
    with monps_store.unit_of_work():  # an event that names no match drops every result
        events.publish("odds_changed", {"reason": "bulk correction"})
    assert function_stats(odds.latest_prices)["size"] == 0
    with pytest.raises(InvalidInput, match="does not take"):
        cache.cached(invalidate_on={"odds_changed": "match"})(odds.latest_prices.__wrapped__)


def test_close_db_stops_the_cache_listener_at_once(db, pg):
    wait_until_listening()
    assert pg.backends(f"{TEST_APP_NAME}:listen")
    thread = cache._listener.thread
    monps_store.close_db()
    assert not thread.is_alive()  # interrupted and joined, not left to a poll interval
    assert not cache.stats()["listening"]
    wait_for(lambda: not pg.backends(f"{TEST_APP_NAME}:listen"))


def test_interrupt_wakes_a_listener_waiting_in_another_thread(db):
    with events.listen("demo_changed") as listener:
        threading.Timer(0.2, listener.interrupt).start()
        started = time.monotonic()
        assert listener.next_event(30) is None
        assert time.monotonic() - started < 15  # woken, not timed out
        with monps_store.unit_of_work():
            events.publish("demo_changed", {"still": "listening"})
        assert listener.next_event(2).payload == {"still": "listening"}


# Keys of every type an event encodes as JSON: the column, the argument a caller passes, the
# value a write publishes (what events send of it: a string for UUID, Decimal, date, datetime),
# and another key whose result must stay cached.
KEYS = {
    "uuid": ("uuid", uuid.UUID(int=1), uuid.UUID(int=1), uuid.UUID(int=2)),
    # Called with 1.5, written as 1.50: one number, whichever way it is spelled.
    "decimal": ("numeric(6,2)", Decimal("1.5"), Decimal("1.50"), Decimal("2.5")),
    "int": ("bigint", 1, "1", 2),  # a publisher that sends ids as text
    "date": ("date", date(2026, 5, 1), date(2026, 5, 1), date(2026, 5, 2)),
    # The same instant, written in UTC and asked for at +02:00.
    "datetime": ("timestamptz", datetime(2026, 5, 1, 12, tzinfo=timezone(timedelta(hours=2))),
                 datetime(2026, 5, 1, 10, tzinfo=UTC),
                 datetime(2026, 5, 1, 11, tzinfo=UTC)),
    "bool": ("boolean", True, True, False),
    "none": ("text", None, None, "x"),
}


def as_text(value):
    return None if value is None else str(value)


@pytest.fixture
def probe(db, pg):
    """A table keyed by a column of the given type, and a function cached on its events
    (``probe_changed``, mapped to its ``key`` argument)."""

    def make(kind):
        column, argument, written, other = KEYS[kind]
        pg.sql(f"CREATE TABLE public.cache_probe (key {column}, label text)")
        pg.sql("INSERT INTO public.cache_probe VALUES ((%s::text)::" + column + ", 'old'), "
               "((%s::text)::" + column + ", 'other')", (as_text(argument), as_text(other)))
        where = f"key IS NOT DISTINCT FROM (%s::text)::{column}"

        @cache.cached(invalidate_on={"probe_changed": "key"})
        def label(key):
            cursor = database.current().execute_sql(
                f"SELECT label FROM public.cache_probe WHERE {where}", (as_text(key),))
            return cursor.fetchone()[0]

        def write(key, text):  # a committed change, and its event
            database.current().execute_sql(
                f"UPDATE public.cache_probe SET label = %s WHERE {where}", (text, as_text(key)))
            events.publish("probe_changed", {"keys": [key]})

        wait_until_listening()
        # Calls bypass the cache until the listener has taken up the new channel.
        wait_for(lambda: label(argument) == "old" and label(other) == "other"
                 and function_stats(label)["size"] == 2, timeout=10)
        return label, write, where, (argument, written, other)

    yield make
    pg.sql("DROP TABLE IF EXISTS public.cache_probe")


@pytest.mark.parametrize("kind", KEYS)
def test_a_committed_change_drops_the_cached_result_for_a_key_of_every_type(probe, pg, kind):
    label, write, where, (argument, written, other) = probe(kind)
    with monps_store.unit_of_work():
        write(written, "new")
    assert function_stats(label)["size"] == 1  # the other key's result stays
    assert label(argument) == "new"
    hits = function_stats(label)["hits"]
    assert label(other) == "other" and function_stats(label)["hits"] == hits + 1
    # Committed by another session: the event reaches this process through its listener.
    pg.sql(f"WITH changed AS (UPDATE public.cache_probe SET label = 'newer' WHERE {where} "
           "RETURNING 1) SELECT pg_notify('probe_changed', %s) FROM changed",
           (as_text(written), events.encode("probe_changed", {"keys": [written]})))
    wait_for(lambda: label(argument) == "newer")


@pytest.mark.parametrize("kind", KEYS)
def test_through_the_async_api_a_committed_change_drops_the_cached_result_for_every_key_type(
        probe, pg, kind):
    from monps_store import aio
    from tests.test_aio import run_async

    label, write, where, (argument, written, other) = probe(kind)

    async def scenario():
        before = await aio.run(label, argument)
        async with aio.unit_of_work():
            await aio.run(write, written, "new")
        return before, await aio.run(label, argument), await aio.run(label, other)

    hits = function_stats(label)["hits"]
    assert run_async(pg, scenario) == ("old", "new", "other")
    assert function_stats(label)["hits"] == hits + 2  # served from the cache: before, other
