"""Past one server: reads on 0 and 1 replica, and the server connections of 200 short clients
with and without PgBouncer in transaction mode, on a real primary and hot standby built by the
test harness (tests/replication.py) and a real PgBouncer (tests/pgbouncer.py).

    python benchmarks/replicas_pooler.py [--runs 3] [--seconds 5] [--threads 8] [--clients 200]
                                         [--think 0.5]

Reads: ``--threads`` threads call a repository listing (the 50 top teams, then the 50
highest-friction pairs with both teams loaded) for ``--seconds``; with 0 replicas on the
primary, with 1 inside ``replica()``. Primary and standby share this machine's cores, so the
figure is the cost of the replica scope (its health check, the read-only transaction), not
the capacity a second machine adds.

Short clients: ``--clients`` processes start at once, each as a cron job would: init_db, a
unit of work reading a team, ``--think`` seconds of its own work (its session open), a unit
of work updating the team, close_db, exit. A monitor samples the server's client
backends every 5 ms. Needs PgBouncer (Debian: ``apt-get install pgbouncer``). Prints medians
over the runs; asserts nothing.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg2  # noqa: E402

import monps_store  # noqa: E402
from monps_store import config, demo, sample  # noqa: E402
from monps_store.migrate import Migrations  # noqa: E402
from monps_store.repositories import crud, friction, teams  # noqa: E402
from tests.pgbouncer import pgbouncer_in_front_of  # noqa: E402
from tests.replication import primary_and_standby  # noqa: E402

MAX_CONNECTIONS = 300  # on the server, so that 200 direct clients can all connect
BOUNCER_POOL = 20


def listing() -> int:
    top = teams.get_top_performers(50)
    pairs = friction.get_high_friction_matches(0, 50)
    return len(top) + sum(len(p.home_team.team_name) > 0 for p in pairs)


def reads_per_second(settings: config.Settings, in_replica: bool, threads: int,
                     seconds: float) -> float:
    # The cache off: a read in replica() bypasses it, and this compares the databases.
    monps_store.init_db(settings, cache=False)
    done = [0] * threads
    stop = time.monotonic() + seconds

    def worker(n):
        while time.monotonic() < stop:
            if in_replica:
                with monps_store.replica():
                    listing()
            else:
                with monps_store.connection():
                    listing()
            done[n] += 1

    workers = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    served = monps_store.pool_status()["replicas"]
    monps_store.close_db()
    if in_replica:
        assert served and served[0]["state"] == "ok", served  # the replica really served
    return sum(done) / seconds


def client(url: str, pooler: str, name: str, n: int, think: float, start, results) -> None:
    start.wait()
    began = time.perf_counter()
    try:
        monps_store.init_db(config.from_url(url, pooler=pooler, pool_size=1, max_overflow=0,
                                            connect_timeout=30, application_name="bench"))
        with monps_store.unit_of_work(actor="bench"):
            team = teams.get_by_name(name)
        time.sleep(think)  # the job's own work between its two units: the session stays open
        with monps_store.unit_of_work(actor="bench"):
            crud.update(team, roi=Decimal(n))
        monps_store.close_db()
        results.put(("ok", time.perf_counter() - began))
    except Exception as exc:  # noqa: BLE001 - a benchmark counts failures by kind
        results.put((type(exc).__name__, time.perf_counter() - began))


def short_clients(url: str, server_url: str, pooler: str, names: list[str],
                  clients: int, think: float) -> dict:
    monps_store.close_db()
    fork = multiprocessing.get_context("fork")
    start, results = fork.Barrier(clients + 1), fork.Queue()
    peak, sampling = [0], threading.Event()

    def monitor():
        conn = psycopg2.connect(server_url)
        conn.autocommit = True
        with conn.cursor() as cur:
            while not sampling.is_set():
                cur.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = "
                            "'client backend' AND pid <> pg_backend_pid()")
                peak[0] = max(peak[0], cur.fetchone()[0])
                time.sleep(0.005)
        conn.close()

    processes = [fork.Process(target=client, args=(url, pooler, names[n % len(names)], n,
                                                    think, start, results)) for n in range(clients)]
    for p in processes:
        p.start()
    # Only now a thread: a fork while it is inside libpq's connect copies a held GSSAPI lock
    # into the child, which then hangs in its own connect.
    watcher = threading.Thread(target=monitor)
    watcher.start()
    start.wait()
    began = time.perf_counter()
    outcomes = [results.get(timeout=300) for _ in processes]
    wall = time.perf_counter() - began
    for p in processes:
        p.join()
    sampling.set()
    watcher.join()
    latencies = sorted(t for kind, t in outcomes if kind == "ok")
    failed = {}
    for kind, _ in outcomes:
        if kind != "ok":
            failed[kind] = failed.get(kind, 0) + 1
    return {"peak": peak[0], "wall": wall, "failed": failed,
            "p50": statistics.median(latencies) if latencies else float("nan"),
            "max": latencies[-1] if latencies else float("nan")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--think", type=float, default=0.5)
    args = parser.parse_args()

    with primary_and_standby(f"-c max_connections={MAX_CONNECTIONS}") as pair:
        with Migrations.open(config.from_url(pair.primary_url)) as migrations:
            migrations.apply()
        monps_store.init_db(url=pair.primary_url)
        demo.load_reference(sample.SampleData(), say=lambda line: None)
        names = sorted(t.team_name for t in teams.get_top_performers(1000))
        monps_store.close_db()
        pair.wait_replayed()
        (version,), = pair.sql(pair.primary_url, "SHOW server_version")
        print(f"PostgreSQL {version} primary + hot standby on one machine "
              f"({multiprocessing.cpu_count()} cores); {len(names)} teams")

        primary = config.from_url(pair.primary_url, pool_size=args.threads, max_overflow=0)
        with_replica = config.with_replicas(primary, [pair.standby_url])
        reads = {"0 replicas (primary)": [], "1 replica, in replica()": []}
        for _ in range(args.runs):
            reads["0 replicas (primary)"].append(
                reads_per_second(primary, False, args.threads, args.seconds))
            reads["1 replica, in replica()"].append(
                reads_per_second(with_replica, True, args.threads, args.seconds))
        base = statistics.median(reads["0 replicas (primary)"])
        print(f"\nRepository listing, {args.threads} threads, {args.seconds:g} s, "
              f"median of {args.runs}")
        print(f"{'set-up':<28}{'listings/s':>12}{'ratio':>8}")
        for label, figures in reads.items():
            median = statistics.median(figures)
            print(f"{label:<28}{median:>12.0f}{median / base:>8.2f}")

        with pgbouncer_in_front_of(pair.primary_url, pool_size=BOUNCER_POOL) as bouncer_url:
            variants = {"direct": (pair.primary_url, "none"),
                        f"PgBouncer (pool {BOUNCER_POOL})": (bouncer_url, "pgbouncer")}
            clients = {label: [] for label in variants}
            for _ in range(args.runs):
                for label, (url, pooler) in variants.items():
                    clients[label].append(short_clients(url, pair.primary_url, pooler, names,
                                                        args.clients, args.think))
        print(f"\n{args.clients} concurrent short clients (processes, {args.think:g} s between "
              f"their two units of work), median of {args.runs}")
        print(f"{'set-up':<22}{'peak server conns':>18}{'all done s':>12}{'p50 s':>8}"
              f"{'max s':>8}  failed")
        for label, runs in clients.items():
            med = {key: statistics.median(r[key] for r in runs)
                   for key in ("peak", "wall", "p50", "max")}
            failed = {}
            for r in runs:
                for kind, count in r["failed"].items():
                    failed[kind] = failed.get(kind, 0) + count
            print(f"{label:<22}{med['peak']:>18.0f}{med['wall']:>12.2f}{med['p50']:>8.2f}"
                  f"{med['max']:>8.2f}  {failed or 0}")


if __name__ == "__main__":
    main()
