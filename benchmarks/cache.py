"""A dashboard's repeated read with and without ``monps_store.cache``, against hand-written SQL
for the same rows, in the same run.

    python benchmarks/cache.py [--scale 0.1] [--rounds 200] [--runs 5] [--url ...]

One dashboard read: the 10 top teams by ROI, the best strategy per team for the 1x2 market
(teams loaded), and the latest prices of 20 matches. Ways, interleaved within each run:

- ``SQL``: the same statements through psycopg2, rows as tuples;
- ``package, no cache``: the repository functions with the cache bypassed (``__wrapped__``);
- ``cached, idle``: the cached functions, nothing changing;
- ``cached, writes``: the cached functions while another process commits an odds change
  (``odds_changed``) every 50 ms, which drops the cached latest prices each time.

A run's figure is the mean per dashboard over ``--rounds`` rounds; the table shows the median
over ``--runs`` runs, and the hit ratio over all of them. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _setup  # noqa: E402

import monps_store  # noqa: E402
from monps_store import cache, demo, sample  # noqa: E402
from monps_store.repositories import odds, strategies, teams  # noqa: E402

MATCHES = 20
TOP = ("SELECT * FROM quantum.team_quantum_dna ORDER BY roi DESC NULLS LAST, team_name "
       "LIMIT 10")
BEST = """
SELECT s.*, t.* FROM quantum.quantum_strategies s
JOIN (SELECT id, row_number() OVER (PARTITION BY team_id ORDER BY roi DESC, win_rate DESC, id)
      AS rank FROM quantum.quantum_strategies
      WHERE market = '1x2' AND is_active AND sample_size >= 0) best ON best.id = s.id
JOIN quantum.team_quantum_dna t ON t.id = s.team_id
WHERE best.rank = 1 ORDER BY s.roi DESC, s.id LIMIT 10
"""
LATEST = ("SELECT DISTINCT ON (bookmaker, market, selection) * FROM public.odds "
          "WHERE match_id = %s ORDER BY bookmaker, market, selection, collected_at DESC")

# Commits a changed price of one match every 50 ms until stdin closes.
WRITER = textwrap.dedent("""
    import sys, threading, time
    from decimal import Decimal
    import monps_store
    from monps_store.repositories import odds

    monps_store.init_db(url=sys.argv[1], application_name="monps_bench_writer")
    row = odds.get_by_match(sys.argv[2])[0]
    key = {name: getattr(row, name) for name in (
        "match_id", "league", "home_team", "away_team", "bookmaker", "market", "selection",
        "commence_time", "collected_at")}
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    n = 0
    while not stop.wait(0.05):
        n += 1
        with monps_store.unit_of_work(actor="bench-writer"):
            odds.upsert([{**key, "price": Decimal("1.5") + Decimal(n % 500) / 1000}])
""")


def dashboard_package(matches, uncached: bool) -> int:
    def call(fn, *args, **kwargs):
        return (fn.__wrapped__ if uncached else fn)(*args, **kwargs)

    rows = len(call(teams.get_top_performers, 10))
    rows += sum(s.team.team_name is not None for s in call(strategies.get_best_by_market, "1x2"))
    for match_id in matches:
        rows += len(call(odds.latest_prices, match_id))
    return rows


def dashboard_sql(cursor, matches) -> int:
    cursor.execute(TOP)
    rows = len(cursor.fetchall())
    cursor.execute(BEST)
    rows += len(cursor.fetchall())
    for match_id in matches:
        cursor.execute(LATEST, (match_id,))
        rows += len(cursor.fetchall())
    return rows


def per_dashboard(fn, rounds: int) -> float:
    start = time.perf_counter()
    for _ in range(rounds):
        fn()
    return (time.perf_counter() - start) / rounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.1, help="of the sample data set")
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--url")
    args = parser.parse_args()
    url = _setup.database_url(args.url)
    print(f"cached dashboard reads; {_setup.machine()}")
    with monps_store.connection() as db:
        for table in ("public.odds", "public.tracking_clv_picks", "quantum.quantum_strategies",
                      "quantum.goalscorer_profiles", "quantum.quantum_friction_matrix",
                      "quantum.team_quantum_dna", "quantum.chess_classifications"):
            db.execute_sql(f"TRUNCATE {table} CASCADE")
    demo.load(sample.SampleData(scale=args.scale), lambda *a, **k: None)
    with monps_store.connection() as db:
        db.execute_sql("ANALYZE")
        ids = [m for (m,) in db.execute_sql("SELECT DISTINCT match_id FROM public.odds")]
    matches = random.Random(1).sample(ids, MATCHES)

    with monps_store.connection() as db:
        cursor = db.connection().cursor()
        rows = dashboard_sql(cursor, matches)
    assert dashboard_package(matches, uncached=True) == rows  # the same rows every way
    deadline = time.monotonic() + 10
    while not cache.stats()["listening"]:  # calls bypass the cache until it listens
        dashboard_package(matches, uncached=False)
        assert time.monotonic() < deadline, "the cache listener did not connect"
        time.sleep(0.05)

    figures = {way: [] for way in ("SQL", "package, no cache", "cached, idle",
                                   "cached, writes")}
    ratios = {"cached, idle": [0, 0], "cached, writes": [0, 0]}

    def cached_run(way):
        before = cache.stats()
        figures[way].append(per_dashboard(lambda: dashboard_package(matches, False),
                                          args.rounds))
        after = cache.stats()
        ratios[way][0] += after["hits"] - before["hits"]
        ratios[way][1] += (after["hits"] + after["misses"] + after["bypassed"]
                           - before["hits"] - before["misses"] - before["bypassed"])

    for _ in range(args.runs):
        with monps_store.connection() as db:
            cursor = db.connection().cursor()
            figures["SQL"].append(per_dashboard(lambda c=cursor: dashboard_sql(c, matches),
                                                args.rounds))
        with monps_store.connection():
            figures["package, no cache"].append(
                per_dashboard(lambda: dashboard_package(matches, True), args.rounds))
        cached_run("cached, idle")
        writer = subprocess.Popen([sys.executable, "-c", WRITER, url, matches[0]],
                                  stdin=subprocess.PIPE, text=True,
                                  env={**os.environ, "PYTHONPATH": os.getcwd()})
        time.sleep(1.0)  # the writer started and writing
        cached_run("cached, writes")
        writer.stdin.close()
        writer.wait(timeout=30)

    base = statistics.median(figures["package, no cache"])
    print(f"\n{'way':20s} {'ms/dashboard':>13s} {'speed-up':>9s} {'hit ratio':>10s}   "
          "(speed-up: against the package without the cache)")
    for way, values in figures.items():
        ms = statistics.median(values) * 1000
        ratio = ratios.get(way)
        shown = f"{ratio[0] / ratio[1]:.3f}" if ratio else "-"
        print(f"{way:20s} {ms:>13.3f} {base * 1000 / ms:>9.1f} {shown:>10s}")
    monps_store.close_db()  # stops the cache's listener before the server goes


if __name__ == "__main__":
    main()
