"""Quantum strategies: a team's strategies, the best one per market."""

from __future__ import annotations

from peewee import fn

from monps_store import cache
from monps_store.models import QuantumStrategy, TeamQuantumDNA, checks
from monps_store.repositories import crud, teams


def get_team_strategies(team_name: str, active_only: bool = True) -> list[QuantumStrategy]:
    """The team's strategies, best ROI first; NotFound if the team does not exist."""
    team = teams.get_by_name(team_name)
    query = QuantumStrategy.select().where(QuantumStrategy.team == team)
    if active_only:
        query = query.where(QuantumStrategy.is_active)
    return list(query.order_by(QuantumStrategy.market, QuantumStrategy.roi.desc(),
                               QuantumStrategy.strategy_name))


@cache.cached(ttl=300, invalidate_on=("quantum_strategies_changed",
                                     "team_quantum_dna_changed"))
def get_best_by_market(market: str, min_sample: int = 0, limit: int = 10
                       ) -> list[QuantumStrategy]:
    """For ``market``, each team's best active strategy by ROI (ties: win rate), best first,
    with ``team`` loaded."""
    crud.check_window(0, limit)
    market = checks.compare(QuantumStrategy, "market", market, allow_none=False)
    min_sample = checks.compare(QuantumStrategy, "sample_size", min_sample, allow_none=False)
    ranked = (QuantumStrategy
              .select(QuantumStrategy.id, fn.ROW_NUMBER().over(
                  partition_by=[QuantumStrategy.team],
                  order_by=[QuantumStrategy.roi.desc(), QuantumStrategy.win_rate.desc(),
                            QuantumStrategy.id]).alias("rank"))
              .where(QuantumStrategy.market == market, QuantumStrategy.is_active,
                     QuantumStrategy.sample_size >= min_sample))
    best = ranked.alias("best")
    query = (QuantumStrategy.select(QuantumStrategy, TeamQuantumDNA)
             .join(best, on=(QuantumStrategy.id == best.c.id))
             .switch(QuantumStrategy).join(TeamQuantumDNA)
             .where(best.c.rank == 1)
             .order_by(QuantumStrategy.roi.desc(), QuantumStrategy.id).limit(limit))
    return list(query)
