"""The main job, end to end on the sample data: load, settle CLV, report.

``monps-store demo`` migrates first, then calls :func:`load` and :func:`report`. Everything
goes through the package's ordinary paths (the odds through :func:`ingest.ingest_odds`, the
friction report through the eager-loading repository function), and every load is an upsert:
running the demo again changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable

from monps_store import database, ingest, sample
from monps_store.models import (
    ChessClassification,
    GoalscorerProfile,
    Odds,
    QuantumFrictionMatrix,
    QuantumStrategy,
    TeamQuantumDNA,
    TrackingCLVPick,
)
from monps_store.repositories import clv, crud, friction
from monps_store.uow import unit_of_work

Say = Callable[[str], None]


def load(data: sample.SampleData, say: Say, progress=None) -> None:
    """Upsert the reference data, stream the odds through the ingest path, upsert the picks,
    settle CLV. Each step is its own unit of work."""
    load_reference(data, say)
    load_odds(data, say, progress)
    load_picks(data, say)


def load_reference(data: sample.SampleData, say: Say) -> None:
    """Classifications, teams, friction pairs, strategies, goalscorers (upserts)."""
    with unit_of_work(actor="demo", reason="sample reference data"):
        crud.upsert_many(ChessClassification, data.classifications(), conflict=["code"])
        codes = {c.code: c.id for c in ChessClassification.select()}
        crud.upsert_many(TeamQuantumDNA, [t | {"chess_classification": codes[
            t["chess_classification"]]} for t in data.teams()], conflict=["team_name"])
        ids = {t.team_name: t.id for t in TeamQuantumDNA.select(TeamQuantumDNA.id,
                                                                TeamQuantumDNA.team_name)}
        crud.upsert_many(QuantumFrictionMatrix, [
            p | {"home_team": ids[p["home_team"]], "away_team": ids[p["away_team"]]}
            for p in data.friction_pairs()], conflict=["home_team", "away_team"])
        crud.upsert_many(QuantumStrategy, [s | {"team": ids[s["team"]]}
                                           for s in data.strategies()],
                         conflict=["team", "market", "strategy_name"])
        crud.upsert_many(GoalscorerProfile, [g | {"team": ids[g["team"]]}
                                             for g in data.goalscorers()],
                         conflict=["team", "player_name"])
    say(f"reference data: {len(codes)} classifications, {len(ids)} teams, "
        f"{sample.FRICTION_PAIRS:,} friction pairs, {sample.GOALSCORERS:,} goalscorers")


def load_odds(data: sample.SampleData, say: Say, progress=None) -> None:
    with unit_of_work(actor="demo", reason="sample odds"):
        report = ingest.ingest_odds(data.odds_rows(), progress=progress)
    say(f"odds: {report.summary()}")


def load_picks(data: sample.SampleData, say: Say) -> None:
    """The agents' picks (never reopening a settled one), then CLV settlement."""
    with unit_of_work(actor="demo", reason="sample picks"):
        # Only what the agent chose may change: never reopen a settled pick.
        crud.upsert_many(TrackingCLVPick, data.picks(), conflict=list(
            TrackingCLVPick.natural_key), update=["odds_taken", "stake"])
        settled = clv.settle()
    say(f"settle-clv: settled {settled.settled:,} pick(s); {settled.still_open:,} still open")


_BEST_AGENTS = """
SELECT agent, count(*), round(avg(clv_percent), 3)
FROM public.tracking_clv_picks WHERE status = 'settled'
GROUP BY agent ORDER BY avg(clv_percent) DESC, agent LIMIT %s
"""


def report(say: Say, top: int = 5) -> None:
    """Row counts, the agents with the best average CLV, the highest-friction fixtures (both
    teams loaded eagerly), and the pool figures."""
    with database.connection() as db:
        counts = {model.__name__: crud.count(model) for model in (
            Odds, TrackingCLVPick, TeamQuantumDNA, QuantumFrictionMatrix, GoalscorerProfile,
            ChessClassification, QuantumStrategy)}
        say("rows        " + " | ".join(f"{name} {n:,}" for name, n in counts.items()))
        say("best CLV    agent      picks   avg CLV %")
        for agent, picks, average in db.execute_sql(_BEST_AGENTS, (top,)).fetchall():
            say(f"            {agent:<10} {picks:>5}   {average:>+8.3f}")
        say("friction    highest-friction fixtures")
        for row in friction.get_high_friction_matches(threshold=0, limit=top):
            say(f"            {row.home_team.team_name} v {row.away_team.team_name}"
                f"   {row.friction_score}")
    status = database.pool_status()
    say(f"pool        max_connections={status['max_connections']} in_use={status['in_use']} "
        f"idle={status['idle']} opened={status['opened']} "
        f"dead_discarded={status['dead_discarded']}")
