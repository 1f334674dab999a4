"""Cold start of a cron job: whole fresh processes, median of several runs.

    python benchmarks/cold_start.py [--runs 15] [--url postgresql://...]

Without --url (or MONPS_TEST_DATABASE_URL) an embedded server is started for the run.
Rows: the bare interpreter, ``import monps_store``, ``init_db()`` + one query, and the same
work with plain peewee and (when installed) SQLAlchemy 2, side by side in one run.
Figures vary with the machine and its load: compare rows of the same run, not across runs.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time

CASES = {
    "python -c pass": "pass",
    "import monps_store": "import monps_store",
    "monps_store: init_db(url) + SELECT 1": (
        "import monps_store, os\n"
        "monps_store.init_db(url=os.environ['BENCH_URL'])\n"
        "with monps_store.connection() as db: db.execute_sql('SELECT 1').fetchone()\n"
    ),
    "monps_store: init_db() from env + SELECT 1": (
        "import monps_store\n"
        "monps_store.init_db()\n"
        "with monps_store.connection() as db: db.execute_sql('SELECT 1').fetchone()\n"
    ),
    "plain peewee: connect + SELECT 1": (
        "import os, peewee\n"
        "from monps_store import config\n"
        "s = config.from_url(os.environ['BENCH_URL'])\n"
        "p = s.connect_params()\n"
        "db = peewee.PostgresqlDatabase(s.database, **p)\n"
        "db.execute_sql('SELECT 1').fetchone()\n"
    ),
    "sqlalchemy 2 ORM: engine + SELECT 1": (
        "import os, sqlalchemy, sqlalchemy.orm\n"
        "from monps_store import config\n"
        "s = config.from_url(os.environ['BENCH_URL'])\n"
        "e = sqlalchemy.create_engine('postgresql+psycopg2://', connect_args=s.connect_params())\n"
        "with sqlalchemy.orm.Session(e) as session: session.execute(sqlalchemy.text('SELECT 1'))\n"
    ),
}


def time_process(code: str, env: dict) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--url", default=os.environ.get("MONPS_TEST_DATABASE_URL"))
    args = parser.parse_args()
    url = args.url
    if not url:
        from monps_store import embedded

        url = embedded.start(os.environ.get("MONPS_EMBEDDED_DIR", ".monps/bench-pgdata"))
    env = dict(os.environ, BENCH_URL=url, DATABASE_URL=url)
    try:
        import sqlalchemy  # noqa: F401
    except ImportError:
        del CASES["sqlalchemy 2 ORM: engine + SELECT 1"]

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, {args.runs} runs each (interleaved), median and spread")
    samples = {name: [] for name in CASES}
    for _ in range(args.runs):  # interleaved so that load changes hit every case alike
        for name, code in CASES.items():
            samples[name].append(time_process(code, env))
    for name, values in samples.items():
        values.sort()
        print(f"{name:44s} median {statistics.median(values) * 1000:7.1f} ms   "
              f"min {values[0] * 1000:7.1f}   max {values[-1] * 1000:7.1f}")


if __name__ == "__main__":
    main()
