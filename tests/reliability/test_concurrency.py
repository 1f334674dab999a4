"""Several processes at once: overlapping odds loads, migrations, cron runs of the same job.

Each is a real ``monps-store`` or job process, as operators and cron start them."""

from __future__ import annotations

import datetime
import itertools
import os
import random
import subprocess
import sys
import tempfile
import textwrap
import time

from monps_store import ingest
from tests.conftest import Server
from tests.reliability.faults import odds_rows, write_odds_csv

LOADS = 4
PRICE = ingest.COLUMNS.index("price")
KEY_AT = [ingest.COLUMNS.index(column) for column in ingest.KEY]


def natural_key(values):
    """A CSV row's natural key, ``collected_at`` as an instant (as the table compares it)."""
    *text, collected_at = (values[i] for i in KEY_AT)
    return (*text, datetime.datetime.fromisoformat(collected_at).timestamp())


def start(url, *args, script=None, env=None):
    environment = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"),
                   "DATABASE_URL": url} | (env or {})
    command = [sys.executable, str(script)] if script else [sys.executable, "-m", "monps_store",
                                                            *args]
    return subprocess.Popen(command, env=environment, text=True, cwd=tempfile.gettempdir(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(process, timeout=180):
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def test_four_overlapping_loads_at_once_equal_a_serial_load_with_no_deadlock(pg, db, tmp_path,
                                                                            figures):
    """Each file covers 700 matches, sliding by 160: neighbours share most of their keys, with
    different prices. Rows are shuffled, so each load's two chunks lock keys all over the
    table; without serialising the loads they deadlock."""
    files = []
    for i in range(LOADS):
        rows = odds_rows(100 + i, range(i * 160, i * 160 + 700), price_shift=i / 10)
        random.Random(i).shuffle(rows)
        path = tmp_path / f"feed{i}.csv"
        write_odds_csv(path, rows)
        files.append((path, rows))
    runs = [start(pg.url, "ingest", "odds", str(path)) for path, _ in files]
    results = [finish(run) for run in runs]
    for code, out, err in results:
        assert code == 0, err
        assert "deadlock" not in err.lower()
        assert out.startswith("odds: 25,200 rows read")

    stored = {(*row[:4], row[4].timestamp()): row[5] for row in pg.sql(
        "SELECT match_id, bookmaker, market, selection, collected_at, price::text "
        "FROM public.odds")}
    assert pg.sql("SELECT count(*) FROM public.odds") == [(len(stored),)]  # no duplicates

    def serial(order):  # the last load's price wins
        return {natural_key(values): values[PRICE] for index in order
                for values in files[index][1]}

    matching = [order for order in itertools.permutations(range(LOADS))
                if serial(order) == stored]
    assert matching, "the final data equals no serial order of the four loads"
    figures.add("concurrency: overlapping odds loads", processes=LOADS,
                rows_loaded=sum(len(rows) for _, rows in files), rows_checked=len(stored),
                serial_orders_compared=24, duplicates=0, deadlocks_surfaced=0)


def test_four_migrate_runs_at_once_apply_the_schema_once(empty_database, figures):
    runs = [start(empty_database, "migrate") for _ in range(4)]
    results = [finish(run) for run in runs]
    assert [code for code, _, _ in results] == [0, 0, 0, 0], [err for _, _, err in results]
    outputs = sorted(out for _, out, _ in results)
    assert outputs == ["applied 001_initial\napplied 002_column_defaults\n"
                       "applied 003_partition_odds\n"] + [
        "nothing to migrate: the database is up to date\n"] * 3
    assert Server(empty_database).sql("SELECT name FROM public.monps_migrations ORDER BY id") == [
        ("001_initial",), ("002_column_defaults",), ("003_partition_odds",)]
    check = finish(start(empty_database, "check"))
    assert check[0] == 0, check
    figures.add("concurrency: migrations", processes=4, migrations_applied_once=2,
                drift_after=0)


JOB = textwrap.dedent("""
    import os, pathlib
    from monps_store import cron, db
    from monps_store.models import TeamQuantumDNA
    from monps_store.repositories import crud

    @cron.job("overlap-job", backoff=0.05)
    def main():
        crud.upsert_many(TeamQuantumDNA, [{"team_name": f"T{i:03d}", "league": "L"}
                                          for i in range(100)], conflict=["team_name"])
        pathlib.Path(os.environ["MARKER"]).touch()  # the lock is held from here on
        db.execute_sql("SELECT pg_sleep(float8 %s)", (os.environ.get("HOLD", "0"),))

    main()
""")


def test_overlapping_cron_runs_exit_75_having_done_nothing(pg, db, tmp_path, figures):
    script = tmp_path / "job.py"
    script.write_text(JOB)
    first = start(pg.url, script=script, env={"MARKER": str(tmp_path / "first"), "HOLD": "4"})
    deadline = time.monotonic() + 60
    while not (tmp_path / "first").exists():
        assert first.poll() is None and time.monotonic() < deadline, finish(first)
        time.sleep(0.05)
    overlapping = [start(pg.url, script=script, env={"MARKER": str(tmp_path / f"o{i}")})
                   for i in range(3)]
    for run in overlapping:
        code, _, err = finish(run)
        assert code == 75, err
        assert "job overlap-job skipped: another run holds the lock, nothing done" in err
        assert len(err.strip().splitlines()) == 1
    assert not any((tmp_path / f"o{i}").exists() for i in range(3))  # their work never ran
    code, _, err = finish(first)
    assert code == 0, err
    assert pg.sql("SELECT count(*), count(DISTINCT team_name) FROM quantum.team_quantum_dna"
                  ) == [(100, 100)]
    after = finish(start(pg.url, script=script, env={"MARKER": str(tmp_path / "after")}))
    assert after[0] == 0, after  # the lock went with the first run's transaction
    figures.add("concurrency: overlapping cron runs", processes=5, runs_skipped_exit_75=3,
                runs_completed=2, work_done_twice=0)
