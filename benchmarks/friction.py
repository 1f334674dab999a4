"""Listing all 3,403 friction pairs with both teams' names: the eager-loading path against N+1
and hand-written JOINs, medians of many runs.

    python benchmarks/friction.py [--runs 21] [--url postgresql://...]

Each variant ends with the same list of (home name, away name, score) tuples, built from what
it fetched: model instances for the peewee variants, raw rows for the psycopg2 JOINs (one
fetching only those three columns, one fetching every column of the pair and both teams, as
the eager path does).
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _setup  # noqa: E402

import monps_store  # noqa: E402
from monps_store import demo, sample  # noqa: E402
from monps_store.models import QuantumFrictionMatrix, TeamQuantumDNA  # noqa: E402
from monps_store.repositories import friction  # noqa: E402

F = QuantumFrictionMatrix


def eager():
    return [(r.home_team.team_name, r.away_team.team_name, r.friction_score)
            for r in friction.get_all_pairs()]


def n_plus_one():
    return [(r.home_team.team_name, r.away_team.team_name, r.friction_score)
            for r in F.select().order_by(F.id)]


def peewee_join():
    home, away = TeamQuantumDNA.alias(), TeamQuantumDNA.alias()
    query = (F.select(F, home, away)
             .join(home, on=(F.home_team == home.id), attr="home_team").switch(F)
             .join(away, on=(F.away_team == away.id), attr="away_team").order_by(F.id))
    return [(r.home_team.team_name, r.away_team.team_name, r.friction_score) for r in query]


def raw_join():
    cursor = monps_store.db.execute_sql(
        "SELECT h.team_name, a.team_name, f.friction_score "
        "FROM quantum.quantum_friction_matrix f "
        "JOIN quantum.team_quantum_dna h ON h.id = f.home_team_id "
        "JOIN quantum.team_quantum_dna a ON a.id = f.away_team_id ORDER BY f.id")
    return cursor.fetchall()


def raw_join_full():
    # The same data the eager path loads: every column of the pair and of both teams.
    cursor = monps_store.db.execute_sql(
        "SELECT f.*, h.*, a.* FROM quantum.quantum_friction_matrix f "
        "JOIN quantum.team_quantum_dna h ON h.id = f.home_team_id "
        "JOIN quantum.team_quantum_dna a ON a.id = f.away_team_id ORDER BY f.id")
    names = [column[0] for column in cursor.description]
    home_at = names.index("team_name")
    away_at = names.index("team_name", home_at + 1)
    score_at = names.index("friction_score")
    return [(row[home_at], row[away_at], row[score_at]) for row in cursor.fetchall()]


VARIANTS = {
    "hand-written JOIN, psycopg2 rows": raw_join,
    "hand-written JOIN, all columns": raw_join_full,
    "peewee JOIN of both teams (models)": peewee_join,
    "monps_store eager (2 queries)": eager,
    "N+1 (lazy foreign keys)": n_plus_one,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--url")
    args = parser.parse_args()
    _setup.database_url(args.url)
    demo.load_reference(sample.SampleData(), lambda line: None)
    print(f"friction listing, {sample.FRICTION_PAIRS:,} pairs, {args.runs} runs, medians; "
          f"{_setup.machine()}")
    timings = {name: [] for name in VARIANTS}
    with monps_store.connection():
        expected = raw_join()
        for _ in range(args.runs):
            for name, fn in VARIANTS.items():  # interleaved: load changes hit all alike
                start = time.perf_counter()
                result = fn()
                timings[name].append(time.perf_counter() - start)
                assert result == expected, name  # every variant returns the same thing
    floor = statistics.median(timings["hand-written JOIN, psycopg2 rows"])
    peewee_join_time = statistics.median(timings["peewee JOIN of both teams (models)"])
    print(f"{'variant':38s} {'median ms':>10s} {'x raw JOIN':>11s} {'x peewee JOIN':>14s}")
    for name, values in timings.items():
        median = statistics.median(values)
        print(f"{name:38s} {median * 1000:10.1f} {median / floor:11.2f} "
              f"{median / peewee_join_time:14.2f}")


if __name__ == "__main__":
    main()
