"""Peak memory (RSS) of a process loading the production-size odds CSV with ingest_odds.

    python benchmarks/ingest_memory.py [--rows 1083270] [--url postgresql://...]

Two loads, each in a fresh child process, so each figure is that process's own peak: into an
empty table, then the same file again (every row a conflict on the natural key, so every chunk
is merged). Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import psycopg2

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _setup  # noqa: E402

from monps_store import config  # noqa: E402

CHILD = """
import resource, sys
import monps_store
from monps_store import ingest
monps_store.init_db(url=sys.argv[1])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with monps_store.unit_of_work(actor="benchmark"):
    report = ingest.ingest_odds(sys.argv[2])
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(f"{report.summary()}")
print(f"peak RSS {peak / 1024:.0f} MiB (after imports and init: {before / 1024:.0f} MiB)")
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_083_270)
    parser.add_argument("--url")
    args = parser.parse_args()
    url = _setup.database_url(args.url)
    path = _setup.odds_csv(args.rows)
    print(f"ingest memory, {args.rows:,} rows from {path.stat().st_size / 2**20:.0f} MiB of "
          f"CSV; {_setup.machine()}")
    conn = psycopg2.connect(**config.from_url(url).connect_params())
    with conn, conn.cursor() as cur:
        cur.execute("TRUNCATE public.odds RESTART IDENTITY")
    conn.close()
    for phase in ("into an empty table", "again (re-ingest)"):
        print(f"{phase}:", flush=True)
        subprocess.run([sys.executable, "-c", CHILD, url, str(path)], check=True)


if __name__ == "__main__":
    main()
