"""The time-series reads of ``repositories.odds`` against hand-written SQL for the same result
(psycopg2, rows as tuples), on the sample odds at 1x and at 10x (more copies of the sample in
the same months), in the same run.

    python benchmarks/timeseries.py [--scales 1 10] [--matches 200] [--runs 5] [--url ...]

Each scale is loaded with ``ingest_odds`` into an empty table, then ANALYZEd. Every read runs
for the same ``--matches`` random match ids; a run's figure is the mean per call, the table
shows the median over ``--runs`` runs, interleaved. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _setup  # noqa: E402

import monps_store  # noqa: E402
from monps_store import ingest, sample, unit_of_work  # noqa: E402
from monps_store.repositories import odds  # noqa: E402

LATEST = ("SELECT DISTINCT ON (bookmaker, market, selection) * FROM public.odds "
          "WHERE match_id = %s{extra} ORDER BY bookmaker, market, selection, collected_at DESC")
HAND_WRITTEN = {
    "price_history": ("SELECT * FROM public.odds WHERE match_id = %s AND market = %s AND "
                      "selection = %s ORDER BY collected_at, bookmaker"),
    "latest_prices": LATEST.format(extra=""),
    "closing_prices": LATEST.format(extra=" AND market = %s AND collected_at < commence_time"),
    "best_prices": ("SELECT DISTINCT ON (selection) * FROM (" + LATEST.format(
        extra=" AND market = %s") + ") latest ORDER BY selection, price DESC, bookmaker"),
}
PACKAGE = {
    "price_history": lambda m: odds.price_history(m, "1x2", "home"),
    "latest_prices": lambda m: odds.latest_prices(m),
    "closing_prices": lambda m: odds.closing_prices(m, "1x2"),
    "best_prices": lambda m: odds.best_prices(m, "1x2"),
}
PARAMS = {
    "price_history": lambda m: (m, "1x2", "home"),
    "latest_prices": lambda m: (m,),
    "closing_prices": lambda m: (m, "1x2"),
    "best_prices": lambda m: (m, "1x2"),
}


def per_call(fn, matches) -> float:
    start = time.perf_counter()
    for match_id in matches:
        fn(match_id)
    return (time.perf_counter() - start) / len(matches)


def measure(matches, runs) -> dict:
    figures = {(name, way): [] for name in PACKAGE for way in ("package", "SQL")}
    with monps_store.connection() as db:
        cursor = db.connection().cursor()

        def raw(name):
            def call(match_id):
                cursor.execute(HAND_WRITTEN[name], PARAMS[name](match_id))
                return cursor.fetchall()
            return call

        for name in PACKAGE:  # same results both ways, checked once
            for match_id in matches[:20]:
                ours = [(r.bookmaker, r.market, r.selection, r.price, r.collected_at)
                        for r in PACKAGE[name](match_id)]
                theirs = [(r[10], r[11], r[12], r[13], r[15]) for r in raw(name)(match_id)]
                assert sorted(ours) == sorted(theirs), name
        for _ in range(runs):
            for name in PACKAGE:
                figures[(name, "package")].append(per_call(PACKAGE[name], matches))
                figures[(name, "SQL")].append(per_call(raw(name), matches))
    return {key: statistics.median(values) for key, values in figures.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--matches", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--url")
    args = parser.parse_args()
    # Migrated, the package initialised on it; latest_prices is cached by default, and this
    # measures the query, not the cache (benchmarks/cache.py does that).
    _setup.database_url(args.url, cache=False)
    print(f"time-series reads; {_setup.machine()}")
    results = {}
    for scale in args.scales:
        path = _setup.odds_csv(sample.ODDS_ROWS * scale)
        with monps_store.connection() as db:
            db.execute_sql("TRUNCATE public.odds")
        with unit_of_work(actor="benchmark"):
            report = ingest.ingest_odds(path)
        with monps_store.connection() as db:
            db.execute_sql("ANALYZE public.odds")
            ids = [m for (m,) in db.execute_sql(
                "SELECT DISTINCT match_id FROM public.odds").fetchall()]
        matches = random.Random(scale).sample(ids, min(args.matches, len(ids)))
        results[scale] = (report.rows, measure(matches, args.runs))
    with monps_store.connection() as db:
        db.execute_sql("TRUNCATE public.odds")
    print(f"\n{'read':16s} {'scale':>5s} {'rows':>12s} {'package ms':>11s} {'SQL ms':>8s} "
          f"{'x SQL':>6s}")
    for name in PACKAGE:
        for scale, (rows, figures) in results.items():
            ours, theirs = figures[(name, "package")], figures[(name, "SQL")]
            print(f"{name:16s} {scale:>4d}x {rows:>12,} {ours * 1000:>11.2f} "
                  f"{theirs * 1000:>8.2f} {ours / theirs:>6.2f}")


if __name__ == "__main__":
    main()
