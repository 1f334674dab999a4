"""Odds as a partitioned time series: the in-place conversion and its rollback, partitions made
by the write paths, retention, the time-series reads and their plans."""

from __future__ import annotations

import datetime
import json
import logging
import os
import subprocess
import sys
from decimal import Decimal

import peewee
import psycopg2
import pytest

import monps_store
from monps_store import config, drift, ingest, partitions, testing
from monps_store.migrate import Migrations
from monps_store.models import ALL_MODELS, Odds
from monps_store.repositories import clv, odds
from tests.factories import add_odds, add_pick

UTC = datetime.UTC


def at(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text).replace(tzinfo=UTC)


def query(url, sql, params=()):
    conn = psycopg2.connect(url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else None
    finally:
        conn.close()


def months_with_partitions(pg) -> list[str]:
    return [name for (name,) in pg.sql(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'public.odds'::regclass ORDER BY 1")]


# -- the conversion ----------------------------------------------------------------------------

ROWS = """
INSERT INTO public.odds (match_id, league, home_team, away_team, bookmaker, market, selection,
                         price, commence_time, collected_at, created_by, change_reason)
SELECT 'm' || (n %% 300), 'L', 'H', 'A', 'b' || (n %% 3), '1x2', 'home', 1.5 + n %% 97 / 100.0,
       '2025-01-01 UTC'::timestamptz + n * interval '2 hours',
       '2025-01-01 UTC'::timestamptz + n * interval '1 hour', 'loader', 'seed ' || n
FROM generate_series(1, 9000) n
"""
SNAPSHOT = "SELECT * FROM public.odds ORDER BY id"


def unpartitioned_odds():
    """Odds as the models declared it before 003_partition_odds."""

    class Unpartitioned(Odds):
        id = peewee.BigAutoField()

        class Meta:
            table_name = "odds"
            schema = "public"
            constraints = []
            table_settings = []

    return [Unpartitioned if model is Odds else model for model in ALL_MODELS]


def test_an_unpartitioned_table_with_rows_converts_and_rolls_back_with_identical_rows(
        empty_database):
    settings = config.from_url(empty_database)
    with Migrations.open(settings) as migrations:
        migrations.apply(to="002_column_defaults")
        query(empty_database, ROWS)
        before = query(empty_database, SNAPSHOT)
        assert migrations.apply() == ["003_partition_odds"]
        assert query(empty_database, SNAPSHOT) == before
        assert query(empty_database, "SELECT pg_get_partkeydef('public.odds'::regclass)") == [
            ("RANGE (collected_at)",)]
        # 9,000 hours from 2025-01-01: January 2025 to January 2026, one partition each.
        names = [n for (n,) in query(empty_database, "SELECT c.relname FROM pg_inherits i "
                                     "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = "
                                     "'public.odds'::regclass ORDER BY 1")]
        assert names == [f"odds_y2025m{m:02d}" for m in range(1, 13)] + ["odds_y2026m01"]
        database = migrations.database
        assert drift.compare(database) == []
        # The next id continues the old sequence.
        (next_id,) = query(empty_database, "SELECT nextval('public.odds_id_seq')")[0]
        assert next_id == 9001

        assert migrations.rollback() == ["003_partition_odds"]
        assert query(empty_database, SNAPSHOT) == before
        assert query(empty_database, "SELECT pg_get_partkeydef('public.odds'::regclass)") == [
            (None,)]
        assert drift.compare(database, unpartitioned_odds()) == []
        assert drift.compare(database) != []  # today's models want the partitioned table
        assert migrations.apply() == ["003_partition_odds"]
        assert query(empty_database, SNAPSHOT) == before
        assert drift.compare(database) == []


def test_a_conversion_that_would_lose_rows_raises_and_changes_nothing(empty_database,
                                                                     tmp_path):
    import shutil

    from monps_store import migrate

    # The shipped migrations, with 003's copy made to drop every tenth row.
    directory = tmp_path / "migrations"
    shutil.copytree(migrate.default_dir(), directory, ignore=shutil.ignore_patterns("__py*"))
    script = directory / "003_partition_odds.py"
    text = script.read_text()
    copy = 'migrator.sql(f"INSERT INTO public.odds SELECT * FROM public.{old}")'
    assert copy in text
    script.write_text(text.replace(copy, copy[:-2] + ' WHERE id %% 10 <> 0")'))  # migrate only
    with Migrations.open(config.from_url(empty_database), directory) as migrations:
        migrations.apply(to="002_column_defaults")
        query(empty_database, ROWS)
        before = query(empty_database, SNAPSHOT)
        with pytest.raises(monps_store.errors.MigrationError,
                           match="9000 rows before, 8100 after; nothing was changed"):
            migrations.apply()
        assert query(empty_database, SNAPSHOT) == before
        assert query(empty_database, "SELECT pg_get_partkeydef('public.odds'::regclass)") == [
            (None,)]
        assert [name for name, _ in migrations.applied()] == ["001_initial",
                                                              "002_column_defaults"]


# -- partitions made by the write paths ----------------------------------------------------


def test_rows_for_a_month_without_a_partition_create_it_on_every_write_path(db, pg, tmp_path):
    path = tmp_path / "odds.csv"
    path.write_text(",".join(ingest.COLUMNS) + "\n"
                    "m1,L,H,A,b,1x2,home,2.5,2030-05-02T00:00Z,2030-05-01T02:00+05:00\n"
                    "m1,L,H,A,b,1x2,away,2.5,2030-05-02T00:00Z,2030-05-31T23:30-01:00\n")
    before = set(months_with_partitions(pg))
    report = ingest.ingest_odds(path)
    assert report.inserted == 2
    # 2030-05-01T02:00+05:00 is April 30 in UTC; 2030-05-31T23:30-01:00 is June 1.
    assert set(months_with_partitions(pg)) - before == {"odds_y2030m04", "odds_y2030m06"}
    assert pg.sql("SELECT tableoid::regclass::text FROM public.odds ORDER BY collected_at") == [
        ("odds_y2030m04",), ("odds_y2030m06",)]

    odds.upsert([{"match_id": "m2", "league": "L", "home_team": "H", "away_team": "A",
                  "bookmaker": "b", "market": "1x2", "selection": "home",
                  "price": Decimal("2.1"), "commence_time": at("2031-02-01T00:00"),
                  "collected_at": at("2031-01-15T00:00")}])
    add_odds(collected_at=at("2032-03-03T00:00"), match_id="m3")  # save()
    assert {"odds_y2031m01", "odds_y2032m03"} <= set(months_with_partitions(pg))
    assert pg.sql("SELECT count(*) FROM public.odds") == [(4,)]
    assert not [n for n in months_with_partitions(pg) if "default" in n]


def test_two_concurrent_ingests_needing_the_same_new_month_both_succeed(db, pg, tmp_path):
    paths = []
    for n in range(2):
        path = tmp_path / f"odds{n}.csv"
        lines = [",".join(ingest.COLUMNS)] + [
            f"c{n}-{i},L,H,A,b,1x2,home,2.5,2033-07-02T00:00Z,2033-07-01T{i % 24:02d}:00Z"
            for i in range(3000)]
        path.write_text("\n".join(lines) + "\n")
        paths.append(path)
    env = {"PATH": os.environ.get("PATH", ""), "DATABASE_URL": pg.url}
    runs = [subprocess.Popen([sys.executable, "-m", "monps_store", "ingest", "odds", str(p)],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for p in paths]
    results = [(r.wait(120), *r.communicate()) for r in runs]
    assert [code for code, _, _ in results] == [0, 0], results
    assert pg.sql("SELECT tableoid::regclass::text, count(*) FROM public.odds GROUP BY 1") == [
        ("odds_y2033m07", 6000)]


def test_retention_drops_exactly_the_months_before_the_kept_ones(db, pg):
    now = at("2040-06-15T10:00")
    for month in range(1, 7):
        add_odds(collected_at=at(f"2040-{month:02d}-10T00:00"), match_id=f"r{month}")
    created = partitions.create_ahead(2, now=now)
    assert created == ["odds_y2040m07", "odds_y2040m08"]  # June had rows already
    with monps_store.connection():
        dropped = partitions.drop_older(3, now=now)
    # Other tests' older months go too: everything before March 2040.
    assert [name for name in dropped if name.startswith("odds_y2040")] == [
        "odds_y2040m01", "odds_y2040m02"]
    assert all(name < "odds_y2040m03" for name in dropped)
    remaining = [p.name for p in partitions.listing() if p.name.startswith("odds_y2040")]
    assert remaining == [f"odds_y2040m{m:02d}" for m in range(3, 9)]
    assert sorted(m for (m,) in pg.sql("SELECT match_id FROM public.odds")) == [
        "r3", "r4", "r5", "r6"]
    with monps_store.connection() as database, database.atomic():  # the last month of all
        partitions.ensure({(9999, 12)})
    pg.sql("ANALYZE public.odds")  # the listing's rows are the planner's estimates
    listed = {p.name: p for p in partitions.listing()}
    assert listed["odds_y9999m12"].end == datetime.datetime.max.replace(tzinfo=UTC)
    assert listed["odds_y2040m03"].estimated_rows == 1 and listed["odds_y2040m03"].bytes > 0
    assert listed["odds_y2040m03"].start == at("2040-03-01T00:00")
    assert listed["odds_y2040m03"].end == at("2040-04-01T00:00")
    with pytest.raises(monps_store.errors.InvalidInput, match="retain must be"):
        partitions.drop_older(0)


def test_the_partitions_command_lists_creates_ahead_and_refuses_to_drop_without_yes(db, pg):
    add_odds(collected_at=at("2020-01-10T00:00"), match_id="old")
    env = {"PATH": os.environ.get("PATH", ""), "DATABASE_URL": pg.url}

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "monps_store", "partitions", *args],
                              env=env, capture_output=True, text=True, timeout=120)

    pg.sql("ANALYZE public.odds")  # the listing's rows are the planner's estimates
    listed = cli()
    assert listed.returncode == 0, listed.stderr
    assert any(line.startswith("odds_y2020m01") and " 1 " in f" {line} "
               for line in listed.stdout.splitlines()), listed.stdout
    ahead = cli("--ahead", "2")
    assert ahead.returncode == 0, ahead.stderr
    this = partitions.current_month()
    for n in range(3):
        y, m = partitions.add_months(this, n)
        assert f"odds_y{y:04d}m{m:02d}" in months_with_partitions(pg)
    refused = cli("--retain", "12")
    assert refused.returncode == 2
    assert "--yes" in refused.stderr
    assert "odds_y2020m01" in months_with_partitions(pg)
    dropped = cli("--retain", "12", "--yes")
    assert dropped.returncode == 0, dropped.stderr
    assert "odds_y2020m01" in dropped.stdout
    assert "odds_y2020m01" not in months_with_partitions(pg)
    assert pg.sql("SELECT count(*) FROM public.odds WHERE match_id = 'old'") == [(0,)]
    as_json = cli("--json")
    assert as_json.returncode == 0
    assert all({"name", "start", "end", "estimated_rows", "bytes"} <= set(p)
               for p in json.loads(as_json.stdout))


def test_the_listing_counts_no_rows_and_gives_the_planners_estimate_or_none(db, pg):
    """A count(*) per partition never analysed took 8 s after a load: the listing reads the
    catalog only, and a partition the planner knows nothing about has no row figure."""
    for n in range(7):
        add_odds(collected_at=at("2039-05-10T00:00") + datetime.timedelta(hours=n),
                 match_id=f"e{n}")
    with testing.query_count() as queries, monps_store.connection():
        before = {p.name: p for p in partitions.listing()}
    assert queries.count == 1 and "count(" not in queries.statements[0].lower(), \
        queries.statements
    assert before["odds_y2039m05"].estimated_rows is None  # never analysed: not a guess
    pg.sql("ANALYZE public.odds")  # reaches every partition
    with monps_store.connection():
        after = {p.name: p for p in partitions.listing()}
    assert after["odds_y2039m05"].estimated_rows == 7


def test_the_partitions_command_labels_rows_as_estimates_and_unknown_before_analyze(db, pg):
    add_odds(collected_at=at("2038-07-10T00:00"), match_id="est")
    env = {"PATH": os.environ.get("PATH", ""), "DATABASE_URL": pg.url}

    def cli(*args):
        result = subprocess.run([sys.executable, "-m", "monps_store", "partitions", *args],
                                env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        return result.stdout

    text = cli()
    assert "rows (est.)" in text.splitlines()[0], text
    line = next(line for line in text.splitlines() if line.startswith("odds_y2038m07"))
    assert "unknown" in line, text
    assert "ANALYZE" in text.splitlines()[-1], text
    entry = next(p for p in json.loads(cli("--json")) if p["name"] == "odds_y2038m07")
    assert entry["estimated_rows"] is None and "rows" not in entry
    pg.sql("ANALYZE public.odds")
    entry = next(p for p in json.loads(cli("--json")) if p["name"] == "odds_y2038m07")
    assert entry["estimated_rows"] == 1


# -- the time-series reads ---------------------------------------------------------------------

KICK_OFF = at("2041-03-10T20:00")


@pytest.fixture
def series(db):
    def price(bookmaker, selection, hours_before, value, market="1x2", match_id="s1"):
        add_odds(match_id=match_id, bookmaker=bookmaker, market=market, selection=selection,
                 price=Decimal(value), commence_time=KICK_OFF,
                 collected_at=KICK_OFF - datetime.timedelta(hours=hours_before))

    # Over three months: February, March before kick-off, March after it.
    price("pinnacle", "home", 24 * 20, "2.10")
    price("pinnacle", "home", 5, "2.20")
    price("pinnacle", "home", 1, "2.25")
    price("pinnacle", "home", -1, "2.40")  # in play: after kick-off
    price("bet365", "home", 24 * 20, "2.05")
    price("bet365", "home", 2, "2.30")
    price("bet365", "away", 2, "3.60")
    price("pinnacle", "away", 2, "3.50")
    price("pinnacle", "over", 3, "1.90", market="ou2.5")
    price("pinnacle", "home", 4, "9.99", match_id="other")


def test_price_history_is_oldest_first_for_one_or_every_bookmaker(series):
    history = odds.price_history("s1", "1x2", "home", "pinnacle")
    assert [str(r.price) for r in history] == ["2.100", "2.200", "2.250", "2.400"]
    every = odds.price_history("s1", "1x2", "home")
    assert [(r.bookmaker, str(r.price)) for r in every] == [
        ("bet365", "2.050"), ("pinnacle", "2.100"), ("pinnacle", "2.200"), ("bet365", "2.300"),
        ("pinnacle", "2.250"), ("pinnacle", "2.400")]
    windowed = odds.price_history("s1", "1x2", "home", since=at("2041-03-01T00:00"))
    assert len(windowed) == 4


def test_latest_closing_and_best_prices(series):
    latest = odds.latest_prices("s1")
    assert [(r.bookmaker, r.market, r.selection, str(r.price)) for r in latest] == [
        ("bet365", "1x2", "away", "3.600"), ("bet365", "1x2", "home", "2.300"),
        ("pinnacle", "1x2", "away", "3.500"), ("pinnacle", "1x2", "home", "2.400"),
        ("pinnacle", "ou2.5", "over", "1.900")]
    closing = odds.closing_prices("s1", "1x2")
    assert [(r.bookmaker, r.selection, str(r.price)) for r in closing] == [
        ("bet365", "away", "3.600"), ("bet365", "home", "2.300"),
        ("pinnacle", "away", "3.500"), ("pinnacle", "home", "2.250")]  # not the in-play 2.40
    best = odds.best_prices("s1", "1x2")
    assert [(r.selection, r.bookmaker, str(r.price)) for r in best] == [
        ("away", "bet365", "3.600"), ("home", "pinnacle", "2.400")]
    assert odds.best_prices("nothing", "1x2") == []
    with pytest.raises(monps_store.errors.InvalidInput):
        odds.latest_prices(None)


def statements_of(call, caplog) -> list[tuple[str, tuple]]:
    """The SELECT statements ``call()`` sends, from peewee's debug log of each query."""
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="peewee"):
        call()
    return [r.msg for r in caplog.records
            if isinstance(r.msg, tuple) and r.msg[0].lstrip().startswith("SELECT")]


def test_every_time_series_read_uses_indexes_and_a_window_prunes_partitions(series, pg,
                                                                            caplog):
    march = {"since": at("2041-03-01T00:00"), "until": at("2041-04-01T00:00")}
    with monps_store.connection() as database, database.atomic():
        partitions.ensure({(2041, 1), (2041, 6)})  # months the window must leave out
    all_months = set(months_with_partitions(pg))
    assert {"odds_y2041m02", "odds_y2041m03"} <= all_months and len(all_months) > 2
    reads = {
        "price_history": lambda **w: odds.price_history("s1", "1x2", "home", **w),
        "price_history by bookmaker": lambda **w: odds.price_history("s1", "1x2", "home",
                                                                     "pinnacle", **w),
        "latest_prices": lambda **w: odds.latest_prices("s1", **w),
        "closing_prices": lambda **w: odds.closing_prices("s1", "1x2", **w),
        "best_prices": lambda **w: odds.best_prices("s1", "1x2", **w),
    }
    pg.sql("ANALYZE public.odds")
    for name, read in reads.items():
        for window in ({}, march):
            (statement,) = statements_of(lambda r=read, w=window: r(**w), caplog)
            # Off, a sequential scan is chosen only where no index can serve the query (tiny
            # test partitions would otherwise be read whole whatever their indexes).
            with monps_store.connection() as database, database.atomic():
                database.execute_sql("SET LOCAL enable_seqscan = off")
                shown = "\n".join(row[0] for row in database.execute_sql(
                    "EXPLAIN " + statement[0], statement[1]).fetchall())
            assert "Seq Scan" not in shown, (name, shown)
            scanned = {p for p in all_months if p in shown}
            if window:
                assert scanned == {"odds_y2041m03"}, (name, shown)
            else:
                assert scanned == all_months, (name, shown)


def test_a_partition_being_created_blocks_neither_reads_nor_writes(db, pg):
    add_odds(collected_at=at("2024-09-02T00:00"), match_id="before")  # September exists
    creating = pg.admin()  # a transaction that creates a month and stays open
    other = pg.admin()
    try:
        with creating.cursor() as cur:
            cur.execute("BEGIN")
            cur.execute("SELECT public.monps_odds_partition('2050-01-15 UTC')")
        with other.cursor() as cur:
            cur.execute("SET lock_timeout = '2s'")  # a blocked statement fails instead of waiting
            cur.execute("SELECT count(*) FROM public.odds")
            assert cur.fetchone() == (1,)
            cur.execute("INSERT INTO public.odds (match_id, league, home_team, away_team, "
                        "bookmaker, market, selection, price, commence_time, collected_at) "
                        "VALUES ('during', 'L', 'H', 'A', 'b', '1x2', 'home', 2, "
                        "'2024-09-03 UTC', '2024-09-02 12:00 UTC')")
    finally:
        with creating.cursor() as cur:
            cur.execute("ROLLBACK")
        creating.close()
        other.close()
    assert pg.sql("SELECT count(*) FROM public.odds") == [(2,)]
    assert "odds_y2050m01" not in months_with_partitions(pg)  # rolled back with its creator


def executed_partitions(plan: str, months: set[str]) -> set[str]:
    """The month partitions an ``EXPLAIN ANALYZE`` text plan shows as read at least once."""
    return {month for line in plan.splitlines() for month in months
            if month in line and "never executed" not in line}


def test_clv_settlement_reads_only_the_months_it_needs_around_each_pick(series, pg):
    with monps_store.connection() as database, database.atomic():
        partitions.ensure({(2041, 1), (2041, 6)})
    months = set(months_with_partitions(pg))
    pg.sql("ANALYZE public.odds")

    def months_read(picked_at) -> tuple[set[str], set[str]]:
        """The months read looking at prices since the pick, then at the earlier ones."""
        add_pick(agent="a", match_id="s1", selection="home", odds_taken="2.300",
                 picked_at=picked_at)
        with monps_store.connection() as database, database.atomic() as transaction:
            database.execute_sql("SET LOCAL enable_seqscan = off")
            plan = "\n".join(row[0] for row in database.execute_sql(
                "EXPLAIN ANALYZE " + clv._SETTLE, (None, KICK_OFF, KICK_OFF, "test", "plan")))
            transaction.rollback()
        pg.sql("DELETE FROM public.tracking_clv_picks")
        assert "Seq Scan on odds" not in plan, plan
        since, earlier = plan.split("SubPlan 2")
        earlier = earlier.split("CTE settled")[0]
        return executed_partitions(since, months), executed_partitions(earlier, months)

    before_march = {"odds_y2041m01", "odds_y2041m02"}
    # Six hours before kick-off: the closing price (one hour before) came after the pick.
    # January and February are never read; the earlier prices are not looked at at all.
    since, earlier = months_read(KICK_OFF - datetime.timedelta(hours=6))
    assert "odds_y2041m03" in since and not since & before_march, since
    assert earlier == set()
    # Half an hour before: no price since the pick, so the earlier ones are searched from the
    # pick's month backwards. No later month is read for them, and the search stops in March,
    # where the closing price is, before it reaches February's older price of the same line.
    since, earlier = months_read(KICK_OFF - datetime.timedelta(minutes=30))
    assert "odds_y2041m03" in since and not since & before_march, since
    assert earlier == {"odds_y2041m03"}
