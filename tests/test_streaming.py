"""Reading a result larger than memory: server-side cursors on ``monps_store.db`` (peewee's
``ServerSide``), ``crud.iterate`` and ``odds.iter_price_history``, sync and through
``aio.run()``. Each read runs in a process of its own, which reports how far its peak resident
memory grew while it read a price history of a million rows."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import textwrap

import pytest

import monps_store
from monps_store import partitions
from monps_store.models import Odds
from monps_store.repositories import crud

ROWS = 1_000_000
BOUND_MB = 40  # a million rows as Python objects or in libpq's buffer take several times this

READER = textwrap.dedent("""
    import asyncio, json, os, sys
    import monps_store
    from monps_store import aio
    from monps_store.models import Odds
    from monps_store.repositories import odds
    from playhouse.postgres_ext import ServerSide

    def peak_kb():
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM"))

    def history():
        return (Odds.select().where(Odds.match_id == "big")
                .order_by(Odds.collected_at))

    async def in_the_bridge():
        await aio.init_db(url=os.environ["DATABASE_URL"])
        try:
            async with aio.unit_of_work():
                return await aio.run(lambda: sum(1 for _ in odds.iter_price_history(
                    "big", "1X2", "home")))
        finally:
            await aio.close_db()

    mode = sys.argv[1]
    monps_store.init_db(url=os.environ["DATABASE_URL"])
    odds.price_history("warm-up", "1X2", "home")  # imports and connections before measuring
    if mode == "async":
        asyncio.run(aio.init_db(url=os.environ["DATABASE_URL"]))
    start = peak_kb()
    if mode == "server_side":
        with monps_store.unit_of_work():
            rows = sum(1 for _ in ServerSide(history()))
    elif mode == "iter_price_history":
        rows = sum(1 for row in odds.iter_price_history("big", "1X2", "home")
                   if row.price > 1)
    elif mode == "async":
        rows = asyncio.run(in_the_bridge())
    elif mode == "client_side":  # the control: the whole result in libpq's buffer
        with monps_store.connection():
            rows = sum(1 for _ in monps_store.db.execute_sql(
                "SELECT * FROM public.odds WHERE match_id = 'big'"))
    print(json.dumps({"rows": rows, "growth_mb": (peak_kb() - start) / 1024}))
""")


@pytest.fixture(scope="module")
def big_history(pg, tmp_path_factory):
    """A million prices of one selection (January 2026, one a second), loaded once."""
    monps_store.init_db(url=pg.url)
    with monps_store.unit_of_work():
        partitions.ensure([(2026, 1)])
    monps_store.close_db()
    pg.sql("INSERT INTO public.odds (match_id, league, home_team, away_team, bookmaker, market, "
           "selection, price, commence_time, collected_at) "
           "SELECT 'big', 'L', 'H', 'A', 'b' || (i %% 3), '1X2', 'home', 2.5 + (i %% 7) * 0.01, "
           "'2026-02-01', timestamptz '2026-01-01 00:00Z' + i * interval '1 second' "
           "FROM generate_series(1, %s) AS i", (ROWS,))
    script = tmp_path_factory.mktemp("streaming") / "reader.py"
    script.write_text(READER)
    yield script
    pg.sql("DELETE FROM public.odds WHERE match_id = 'big'")


def read(pg, script, mode):
    result = subprocess.run([sys.executable, str(script), mode], capture_output=True, text=True,
                            env=os.environ | {"DATABASE_URL": pg.url}, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_reading_the_whole_result_client_side_grows_memory_with_it(pg, big_history):
    # The control: what a server-side cursor that is silently ignored costs.
    report = read(pg, big_history, "client_side")
    print("client_side", report)
    assert report["growth_mb"] > 3 * BOUND_MB


@pytest.mark.parametrize("mode", ["server_side", "iter_price_history", "async"])
def test_a_million_row_price_history_streams_in_bounded_memory(pg, big_history, mode):
    report = read(pg, big_history, mode)
    print(mode, report)
    assert report["rows"] == ROWS
    assert report["growth_mb"] < BOUND_MB, report


def test_iterate_yields_models_in_order_and_leaves_no_transaction_or_cursor_open(pg, db):
    crud.insert_many(Odds, [
        {"match_id": "m", "league": "L", "home_team": "H", "away_team": "A", "bookmaker": "b",
         "market": "1X2", "selection": "home", "price": f"2.{n:03d}",
         "commence_time": datetime.datetime(2026, 2, 1, tzinfo=datetime.UTC),
         "collected_at": datetime.datetime(2026, 1, 1, 0, n, tzinfo=datetime.UTC)}
        for n in range(1, 50)])
    mine = Odds.select().where(Odds.match_id == "m").order_by(Odds.collected_at)
    rows = crud.iterate(mine, batch_size=7)
    first = next(rows)
    assert (first.match_id, str(first.price)) == ("m", "2.001")
    rows.close()  # abandoned early: the cursor and its transaction end here
    assert not monps_store.db.in_transaction()
    assert pg.sql("SELECT count(*) FROM pg_cursors") == [(0,)]
    assert [str(o.price) for o in crud.iterate(mine, batch_size=7)][-1] == "2.049"
    # outside a transaction of the caller's, and in one (a savepoint there)
    with monps_store.unit_of_work():
        assert sum(1 for _ in crud.iterate(mine.tuples(), batch_size=10)) == 49
        assert monps_store.db.in_transaction()


def test_iterate_refuses_a_batch_size_that_is_not_a_positive_whole_number(db):
    with pytest.raises(monps_store.errors.InvalidInput, match="batch_size must be"):
        list(crud.iterate(Odds.select(), batch_size=0))
