"""Goalscorer profiles: by team, top scorers."""

from __future__ import annotations

from monps_store.models import GoalscorerProfile, TeamQuantumDNA, checks
from monps_store.repositories import crud, teams


def get_by_team(team_name: str) -> list[GoalscorerProfile]:
    """The team's scorers, most goals first; NotFound if the team does not exist."""
    team = teams.get_by_name(team_name)
    return list(GoalscorerProfile.select().where(GoalscorerProfile.team == team)
                .order_by(GoalscorerProfile.goals.desc(), GoalscorerProfile.player_name))


def get_top_scorers(limit: int = 10, league: str | None = None) -> list[GoalscorerProfile]:
    """The leading scorers (goals, then expected goals), with ``team`` loaded."""
    crud.check_window(0, limit)
    league = checks.compare(TeamQuantumDNA, "league", league)
    query = GoalscorerProfile.select(GoalscorerProfile, TeamQuantumDNA).join(TeamQuantumDNA)
    if league is not None:
        query = query.where(TeamQuantumDNA.league == league)
    return list(query.order_by(GoalscorerProfile.goals.desc(),
                               GoalscorerProfile.expected_goals.desc(),
                               GoalscorerProfile.player_name).limit(limit))
