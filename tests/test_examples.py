"""The examples README shows are real files, and they run."""

import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_readme_shows_the_example_verbatim(example):
    assert example.read_text() in (ROOT / "README.md").read_text()


def run(example, url, **extra):
    env = {"PATH": os.environ.get("PATH", ""), "DATABASE_URL": url} | extra
    return subprocess.run([sys.executable, str(example)], env=env, capture_output=True,
                          text=True, timeout=120)


def test_the_cron_example_runs_and_is_idempotent(pg, db):
    for _ in range(2):
        result = run(ROOT / "examples" / "cron_job.py", pg.url)
        assert result.returncode == 0, result.stderr
        assert "job team-figures ok in" in result.stderr
    assert pg.sql("SELECT team_name, roi, created_by FROM quantum.team_quantum_dna "
                  "ORDER BY team_name") == [("Lyon", Decimal("4.250"), "cron:team-figures"),
                                            ("Nice", Decimal("-1.100"), "cron:team-figures")]


def test_the_legacy_example_commits_both_kinds_of_writes(pg, db):
    pg.sql("INSERT INTO quantum.team_quantum_dna (team_name, league, matches_played, total_bets,"
           " win_rate, roi, total_pnl) VALUES ('Lyon', 'L1', 0, 0, 0, 0, 0)")
    result = run(ROOT / "examples" / "legacy_script.py", pg.url)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "2 teams in Ligue 1\n"
    assert pg.sql("SELECT team_name, league FROM quantum.team_quantum_dna ORDER BY 1") == [
        ("Brest", "Ligue 1"), ("Lyon", "Ligue 1")]


@pytest.mark.parametrize("through", ["direct", "pgbouncer"])
def test_the_fastapi_example_serves_requests_in_units_of_work(pg, db, monkeypatch, through):
    import asyncio
    import contextlib

    import httpx

    from monps_store import aio
    from tests.factories import add_friction, add_team
    from tests.pgbouncer import pgbouncer_in_front_of

    stack = contextlib.ExitStack()
    if through == "pgbouncer":
        monkeypatch.setenv("DATABASE_URL", stack.enter_context(pgbouncer_in_front_of(pg.url)))
        monkeypatch.setenv("DB_POOLER", "pgbouncer")
    else:
        monkeypatch.setenv("DATABASE_URL", pg.url)
    monkeypatch.syspath_prepend(str(ROOT))
    from examples.fastapi_app import app

    lyon = add_team("Lyon", league="Ligue 1")
    add_friction(lyon, add_team("Nice"), "80.00")

    async def requests():
        async with app.router.lifespan_context(app):  # opens and closes the async pool
            transport = httpx.ASGITransport(app=app)  # in process: no network
            async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
                got = [await client.get("/teams/Lyon"),
                       await client.put("/teams/Lyon/roi", params={"roi": "4.250"}),
                       await client.put("/teams/Lyon/roi", params={"roi": "NaN"}),
                       await client.get("/teams/Nowhere"),
                       await client.get("/friction", params={"threshold": "70"})]
                committed = pg.sql("SELECT roi, updated_by, change_reason "
                                   "FROM quantum.team_quantum_dna WHERE team_name = 'Lyon'")
                return got, committed, aio.pool_status()

    with stack:
        (team, updated, refused, missing, pairs), committed, status = asyncio.run(requests())
    assert (team.status_code, team.json()) == (200, {"team_name": "Lyon", "league": "Ligue 1",
                                                     "roi": "0.000"})
    assert (updated.status_code, updated.json()) == (200, {"team_name": "Lyon",
                                                           "roi": "4.250"})
    assert refused.status_code == 422  # FastAPI's own validation: no unit of work ran
    assert missing.status_code == 404 and "Nowhere" in missing.json()["detail"]
    assert pairs.json() == [{"home": "Lyon", "away": "Nice", "friction_score": "80.00"}]
    assert committed == [(Decimal("4.250"), "api", "web request")]  # before the response
    assert status["in_use"] == 0


def test_the_cron_and_legacy_examples_run_through_pgbouncer(pg, db):
    from tests.pgbouncer import pgbouncer_in_front_of

    pg.sql("INSERT INTO quantum.team_quantum_dna (team_name, league) VALUES ('Lyon', 'L1')")
    with pgbouncer_in_front_of(pg.url) as url:
        for example in ("cron_job.py", "legacy_script.py"):
            result = run(ROOT / "examples" / example, url, DB_POOLER="pgbouncer")
            assert result.returncode == 0, (example, result.stderr)
    assert pg.sql("SELECT team_name, league FROM quantum.team_quantum_dna ORDER BY 1") == [
        ("Brest", "Ligue 1"), ("Lyon", "Ligue 1"), ("Nice", "Ligue 1")]
