"""Teams and their quantum DNA: by name, by league, top performers."""

from __future__ import annotations

from monps_store import cache
from monps_store.errors import InvalidInput, NotFound
from monps_store.models import TeamQuantumDNA, checks
from monps_store.repositories import crud


def get_by_name(team_name: str) -> TeamQuantumDNA:
    """The team called ``team_name``; NotFound names it."""
    team_name = checks.compare(TeamQuantumDNA, "team_name", team_name, allow_none=False)
    team = TeamQuantumDNA.get_or_none(TeamQuantumDNA.team_name == team_name)
    if team is None:
        raise NotFound(f"team {team_name!r} not found")
    return team


def get_by_league(league: str) -> list[TeamQuantumDNA]:
    """The league's teams, by name."""
    league = checks.compare(TeamQuantumDNA, "league", league, allow_none=False)
    return list(TeamQuantumDNA.select().where(TeamQuantumDNA.league == league)
                .order_by(TeamQuantumDNA.team_name))


@cache.cached(ttl=300, invalidate_on=("team_quantum_dna_changed",))
def get_top_performers(limit: int = 10, by: str = "roi",
                       league: str | None = None) -> list[TeamQuantumDNA]:
    """The ``limit`` best teams by the performance figure ``by`` (one of
    ``TeamQuantumDNA.PERFORMANCE_FIELDS``), ties broken by name; NULL figures last."""
    crud.check_window(0, limit)
    if by not in TeamQuantumDNA.PERFORMANCE_FIELDS:
        raise InvalidInput(f"cannot rank teams by {by!r}; choose one of "
                           f"{', '.join(TeamQuantumDNA.PERFORMANCE_FIELDS)}")
    metric = crud.field(TeamQuantumDNA, by)
    league = checks.compare(TeamQuantumDNA, "league", league)
    query = TeamQuantumDNA.select()
    if league is not None:
        query = query.where(TeamQuantumDNA.league == league)
    return list(query.order_by(metric.desc(nulls="LAST"), TeamQuantumDNA.team_name).limit(limit))
