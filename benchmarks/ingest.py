"""Odds ingest side by side: monps_store against raw COPY, execute_values, plain peewee and the
SQLAlchemy 2 ORM, on the production-size sample (1,083,270 rows), medians of several runs.

    python benchmarks/ingest.py [--rows 1083270] [--runs 3] [--url postgresql://...]

Every method reads the same CSV file (reading and parsing it is part of the job). "insert"
loads into an empty table; "re-ingest" loads the same rows again, every one a conflict on the
natural key (raw COPY cannot do that: its insert time is the yardstick for both). Needs
SQLAlchemy 2 installed (``pip install sqlalchemy``) for its row. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path

import psycopg2
import psycopg2.extras

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _setup  # noqa: E402

import monps_store  # noqa: E402
from monps_store import config, ingest, partitions, unit_of_work  # noqa: E402
from monps_store.models import Odds  # noqa: E402

COLUMNS = ingest.COLUMNS
KEY = ingest.KEY
VALUES = ingest.VALUES


def typed_rows(path: Path):
    """The CSV as tuples of Python values (what row-based libraries are given)."""
    parse = datetime.datetime.fromisoformat
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        next(reader)
        for m, league, home, away, book, market, sel, price, commence, collected in reader:
            yield (m, league, home, away, book, market, sel, Decimal(price), parse(commence),
                   parse(collected))


def batches(iterable, size):
    batch = []
    for item in iterable:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def raw_connection(url):
    return psycopg2.connect(**config.from_url(url).connect_params())


# -- the methods: each loads `path` into public.odds; `conflict` = upsert on the natural key ---


def raw_copy(url, path, conflict):
    if conflict:
        return None
    conn = raw_connection(url)
    with conn, conn.cursor() as cur, path.open(encoding="utf-8") as f:
        cur.copy_expert(f"COPY public.odds ({', '.join(COLUMNS)}) FROM STDIN "
                        "WITH (FORMAT csv, HEADER)", f)
    conn.close()
    return True


def execute_values(url, path, conflict):
    sql = f"INSERT INTO public.odds ({', '.join(COLUMNS)}) VALUES %s"
    if conflict:
        sql += (f" ON CONFLICT ({', '.join(KEY)}) DO UPDATE SET "
                + ", ".join(f"{c} = EXCLUDED.{c}" for c in VALUES) + ", updated_at = now()")
    conn = raw_connection(url)
    with conn, conn.cursor() as cur:
        psycopg2.extras.execute_values(cur, sql, typed_rows(path), page_size=1000)
    conn.close()
    return True


def peewee_insert_many(url, path, conflict):
    fields = [getattr(Odds, c) for c in COLUMNS]
    with monps_store.connection() as db, db.atomic():
        for batch in batches(typed_rows(path), 1000):
            query = Odds.insert_many(batch, fields=fields)
            if conflict:
                query = query.on_conflict(conflict_target=[getattr(Odds, c) for c in KEY],
                                          preserve=[getattr(Odds, c) for c in VALUES])
            query.execute()
    return True


def sqlalchemy_orm(url, path, conflict):
    try:
        import sqlalchemy as sa
        from sqlalchemy.dialects.postgresql import insert as pg_insert
        from sqlalchemy.orm import DeclarativeBase, Session, mapped_column
    except ImportError:
        return None

    class Base(DeclarativeBase):
        pass

    class SAOdds(Base):
        __tablename__ = "odds"
        __table_args__ = {"schema": "public"}
        id = mapped_column(sa.BigInteger, primary_key=True)
        match_id = mapped_column(sa.Text)
        league = mapped_column(sa.Text)
        home_team = mapped_column(sa.Text)
        away_team = mapped_column(sa.Text)
        bookmaker = mapped_column(sa.Text)
        market = mapped_column(sa.Text)
        selection = mapped_column(sa.Text)
        price = mapped_column(sa.Numeric(10, 3))
        commence_time = mapped_column(sa.DateTime(timezone=True))
        collected_at = mapped_column(sa.DateTime(timezone=True))

    engine = sa.create_engine("postgresql+psycopg2://",
                              connect_args=config.from_url(url).connect_params())
    statement = sa.insert(SAOdds)
    if conflict:
        upsert = pg_insert(SAOdds)
        statement = upsert.on_conflict_do_update(
            index_elements=list(KEY), set_={c: getattr(upsert.excluded, c) for c in VALUES})
    with Session(engine) as session, session.begin():
        for batch in batches(typed_rows(path), 10_000):
            session.execute(statement, [dict(zip(COLUMNS, row, strict=True)) for row in batch])
    engine.dispose()
    return True


def monps(url, path, conflict):
    with unit_of_work(actor="benchmark"):
        ingest.ingest_odds(path)
    return True


METHODS = {
    "raw psycopg2 COPY (the limit)": raw_copy,
    "monps_store ingest_odds": monps,
    "psycopg2 execute_values": execute_values,
    "peewee insert_many (1000/batch)": peewee_insert_many,
    "SQLAlchemy 2 ORM bulk insert": sqlalchemy_orm,
}


def truncate(url):
    conn = raw_connection(url)
    with conn, conn.cursor() as cur:
        cur.execute("TRUNCATE public.odds RESTART IDENTITY")
    conn.close()


def make_partitions(path: Path) -> int:
    """The month partitions the file's rows need (raw COPY and the row-based methods do not
    create them; truncating keeps them)."""
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        at = next(reader).index("collected_at")
        months = {partitions.month_of(datetime.datetime.fromisoformat(row[at]))
                  for row in reader}
    with monps_store.connection() as db, db.atomic():
        partitions.ensure(months)
    return len(months)


def timed(fn, *args):
    start = time.perf_counter()
    done = fn(*args)
    return time.perf_counter() - start if done else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_083_270)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--url")
    parser.add_argument("--only", nargs="*", help="substrings of method names to run")
    args = parser.parse_args()
    url = _setup.database_url(args.url)
    path = _setup.odds_csv(args.rows)
    methods = {name: fn for name, fn in METHODS.items()
               if not args.only or any(part in name for part in args.only)}
    months = make_partitions(path)
    print(f"odds ingest, {args.rows:,} rows ({months} month partitions), {args.runs} runs, "
          f"medians; {_setup.machine()}")
    results = {name: {"insert": [], "reingest": []} for name in methods}
    for run in range(args.runs):
        for name, fn in methods.items():
            truncate(url)
            insert = timed(fn, url, path, False)
            reingest = timed(fn, url, path, True)
            for phase, seconds in (("insert", insert), ("reingest", reingest)):
                if seconds is not None:
                    results[name][phase].append(seconds)
            print(f"  run {run + 1} {name}: insert {insert and round(insert, 1)} s, "
                  f"re-ingest {reingest and round(reingest, 1)} s", flush=True)
    truncate(url)
    copy = statistics.median(results[next(iter(methods))]["insert"] or [float("nan")])
    print(f"\n{'method':34s} {'insert s':>9s} {'rows/s':>9s} {'x COPY':>7s} "
          f"{'re-ingest s':>12s} {'x COPY':>7s}")
    for name, phases in results.items():
        cells = []
        for phase in ("insert", "reingest"):
            if phases[phase]:
                median = statistics.median(phases[phase])
                cells.append((median, median / copy))
            else:
                cells.append(None)
        ins, rein = cells
        rate = f"{args.rows / ins[0]:,.0f}" if ins else "-"
        print(f"{name:34s} {ins[0] if ins else float('nan'):9.1f} {rate:>9s} "
              f"{ins[1] if ins else float('nan'):7.2f} "
              + (f"{rein[0]:12.1f} {rein[1]:7.2f}" if rein else f"{'-':>12s} {'-':>7s}"))


if __name__ == "__main__":
    main()
