"""Shared set-up for the benchmarks: a migrated database (embedded unless --url) and the
production-size sample odds written once as CSV."""

from __future__ import annotations

import csv
import os
import platform
from pathlib import Path

import monps_store
from monps_store import config, ingest, sample
from monps_store.migrate import Migrations

BENCH_DIR = Path(os.environ.get("MONPS_BENCH_DIR", ".monps/bench"))


def database_url(url: str | None, **settings) -> str:
    """The benchmark database, migrated; ``url`` or an embedded server in ``BENCH_DIR``. The
    package is initialised on it with ``settings`` (e.g. ``cache=False``)."""
    if not url:
        from monps_store import embedded

        url = embedded.start(BENCH_DIR / "pgdata")
    with Migrations.open(config.from_url(url)) as migrations:
        migrations.apply()
    monps_store.init_db(url=url, **settings)
    return url


def odds_csv(rows: int) -> Path:
    """The first ``rows`` sample odds as a CSV file with a header (written once). Past the
    sample's size, more copies of it with their own match ids (``m17~2``): the same months,
    denser, as when more bookmakers, markets and snapshots are collected."""
    path = BENCH_DIR / f"odds_{rows}.csv"
    if not path.exists() and rows > sample.ODDS_ROWS:
        base = odds_csv(sample.ODDS_ROWS)
        with base.open(encoding="utf-8") as source, path.open("w", encoding="utf-8") as out:
            header = source.readline()
            lines = source.readlines()
            out.write(header)
            written, copy = 0, 0
            while written < rows:
                for line in lines[:rows - written]:
                    match_id, rest = line.split(",", 1)
                    out.write(f"{match_id}~{copy},{rest}" if copy else line)
                written += min(len(lines), rows - written)
                copy += 1
    if not path.exists():
        BENCH_DIR.mkdir(parents=True, exist_ok=True)
        data = sample.SampleData(scale=min(rows / sample.ODDS_ROWS, 1.0))
        with path.open("w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out)
            writer.writerow(ingest.COLUMNS)
            for row in data.odds_rows():
                writer.writerow([row[c] for c in ingest.COLUMNS])
    return path


def machine(server: bool = True) -> str:
    text = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    return f"{text}, PostgreSQL {monps_store.database.server_version()}" if server else text
