"""Concurrent web-style requests: monps_store.aio against the SQLAlchemy 2 async ORM on
asyncpg and against monps_store sync on a thread pool, in the same run.

    python benchmarks/async_api.py [--runs 3] [--requests 1500] [--url postgresql://...]

Each request is one unit of work: read a team by its natural key, update it, list 20 friction
rows with both teams loaded (three queries each way: the rows, then the home and the away
teams). Every variant uses a pool of 10 connections. Requests run closed-loop at 10, 50 and
200 concurrent clients (tasks or threads); latency is measured per request, waiting for a
connection included. Needs SQLAlchemy 2 (``pip install 'sqlalchemy[asyncio]'``). Prints
medians over the runs; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _setup  # noqa: E402

import monps_store  # noqa: E402
from monps_store import aio, config, demo, sample  # noqa: E402
from monps_store.models import TeamQuantumDNA  # noqa: E402
from monps_store.repositories import crud, friction, teams  # noqa: E402

POOL = 10
LEVELS = (10, 50, 200)


def handle(name: str, n: int) -> list[tuple[str, str]]:
    """The request, as sync repository code (run by aio.run or by a thread)."""
    team = teams.get_by_name(name)
    crud.update(team, roi=Decimal(n % 1000))
    pairs = friction.get_high_friction_matches(0, 20)
    return [(p.home_team.team_name, p.away_team.team_name) for p in pairs]


async def monps_aio(names, total, clients):
    async def request(n):
        async with aio.unit_of_work(actor="bench"):
            return await aio.run(handle, names[n % len(names)], n)

    return await closed_loop(request, total, clients)


async def closed_loop(request, total, clients):
    latencies = []
    counter = iter(range(total))

    async def client():
        for n in counter:
            start = time.perf_counter()
            result = await request(n)
            latencies.append(time.perf_counter() - start)
            assert len(result) == 20

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return time.perf_counter() - start, latencies


def monps_sync(names, total, clients):
    def request(n):
        start = time.perf_counter()
        with monps_store.unit_of_work(actor="bench"):
            result = handle(names[n % len(names)], n)
        assert len(result) == 20
        return time.perf_counter() - start

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        latencies = list(pool.map(request, range(total)))
    return time.perf_counter() - start, latencies


class SQLAlchemyVariant:
    """The same request on the SQLAlchemy 2 async ORM (asyncpg), tables reflected."""

    async def start(self, url):
        from sqlalchemy import MetaData
        from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
        from sqlalchemy.orm import DeclarativeBase, relationship

        settings = config.from_url(url)
        host = settings.host or ""
        password = f":{settings.password.reveal()}" if settings.password else ""
        dsn = (f"postgresql+asyncpg://{settings.user}{password}@/{settings.database}?host={host}"
               if host.startswith("/") else
               f"postgresql+asyncpg://{settings.user}{password}@{host}:{settings.port}/"
               f"{settings.database}")
        self.engine = create_async_engine(dsn, pool_size=POOL, max_overflow=0, pool_timeout=60)
        metadata = MetaData()
        async with self.engine.connect() as conn:
            await conn.run_sync(lambda sync: metadata.reflect(
                sync, schema="quantum", only=["team_quantum_dna", "quantum_friction_matrix"]))

        class Base(DeclarativeBase):
            pass

        class Team(Base):
            __table__ = metadata.tables["quantum.team_quantum_dna"]

        friction_table = metadata.tables["quantum.quantum_friction_matrix"]

        class Friction(Base):
            __table__ = friction_table
            home_team = relationship(Team, foreign_keys=[friction_table.c.home_team_id])
            away_team = relationship(Team, foreign_keys=[friction_table.c.away_team_id])

        self.Team, self.Friction = Team, Friction
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    async def run(self, names, total, clients):
        from sqlalchemy import select
        from sqlalchemy.orm import selectinload

        Team, Friction = self.Team, self.Friction
        top = (select(Friction)
               .options(selectinload(Friction.home_team), selectinload(Friction.away_team))
               .where(Friction.friction_score >= 0)
               .order_by(Friction.friction_score.desc(), Friction.id).limit(20))

        async def request(n):
            async with self.sessions() as session, session.begin():
                team = (await session.execute(
                    select(Team).where(Team.team_name == names[n % len(names)]))).scalar_one()
                team.roi = Decimal(n % 1000)
                team.updated_at = datetime.datetime.now(datetime.UTC)
                team.updated_by = "bench"
                await session.flush()
                pairs = (await session.execute(top)).scalars().all()
                return [(p.home_team.team_name, p.away_team.team_name) for p in pairs]

        return await closed_loop(request, total, clients)

    async def stop(self):
        await self.engine.dispose()


def summarize(wall, latencies, total):
    ordered = sorted(latencies)
    return (total / wall, ordered[len(ordered) // 2] * 1000,
            ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000)


async def measure(url, names, runs, total):
    await aio.init_db(url=url, pool_size=POOL, max_overflow=0, pool_timeout=60)
    alchemy = SQLAlchemyVariant()
    await alchemy.start(url)
    results = {}  # (variant, level) -> [(throughput, p50, p99), ...]
    try:
        # Warm up: connections opened, statements cached.
        await monps_aio(names, total // 10, POOL)
        await alchemy.run(names, total // 10, POOL)
        await asyncio.to_thread(monps_sync, names, total // 10, POOL)
        for _ in range(runs):
            for clients in LEVELS:  # interleaved: load changes hit every variant alike
                for variant in ("monps_store.aio", "SQLAlchemy async", "monps_store sync"):
                    if variant == "monps_store.aio":
                        wall, lat = await monps_aio(names, total, clients)
                    elif variant == "SQLAlchemy async":
                        wall, lat = await alchemy.run(names, total, clients)
                    else:
                        wall, lat = await asyncio.to_thread(monps_sync, names, total, clients)
                    results.setdefault((variant, clients), []).append(
                        summarize(wall, lat, total))
    finally:
        await alchemy.stop()
        await aio.close_db()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--url")
    args = parser.parse_args()
    url = _setup.database_url(args.url)
    monps_store.init_db(url=url, pool_size=POOL, max_overflow=0, pool_timeout=60)
    demo.load_reference(sample.SampleData(), lambda line: None)
    with monps_store.connection():
        names = [t.team_name for t in crud.get_all(TeamQuantumDNA, order_by="id")]
    print(f"async API: {args.requests} requests per level, pool of {POOL}, {args.runs} runs, "
          f"medians; {_setup.machine()}")
    results = asyncio.run(measure(url, names, args.runs, args.requests))
    print(f"{'clients':>7s} {'variant':18s} {'req/s':>8s} {'p50 ms':>8s} {'p99 ms':>8s} "
          f"{'x SQLA req/s':>12s} {'x SQLA p99':>10s}")
    for clients in LEVELS:
        base = [statistics.median(v) for v in zip(*results[("SQLAlchemy async", clients)],
                                                   strict=True)]
        for variant in ("monps_store.aio", "SQLAlchemy async", "monps_store sync"):
            rate, p50, p99 = (statistics.median(v) for v in zip(*results[(variant, clients)],
                                                                 strict=True))
            print(f"{clients:7d} {variant:18s} {rate:8.0f} {p50:8.1f} {p99:8.1f} "
                  f"{rate / base[0]:12.2f} {p99 / base[2]:10.2f}")


if __name__ == "__main__":
    main()
