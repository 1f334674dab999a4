"""The friction matrix: one pair, and the high-friction fixtures, with both teams loaded.

Rows come back with ``home_team`` and ``away_team`` already loaded, so reading them costs no
further query: one pair in a single joined query, lists in two queries however many rows (the
rows, then every team they name, by primary key).
"""

from __future__ import annotations

from decimal import Decimal

import peewee
from peewee import Value, fn

from monps_store.errors import NotFound
from monps_store.models import QuantumFrictionMatrix, TeamQuantumDNA, checks
from monps_store.repositories import crud

Friction = QuantumFrictionMatrix


def _eager(query: peewee.ModelSelect[QuantumFrictionMatrix]) -> list[QuantumFrictionMatrix]:
    # Not with_related(): it loads each relation with the whole query again as a subquery
    # (sort and limit included), once per relation. The ids already fetched say which
    # teams to load, in one query for both sides.
    pairs = list(query)
    ids = {p.home_team_id for p in pairs} | {p.away_team_id for p in pairs}
    if ids:
        by_id = {team.id: team for team in TeamQuantumDNA.select().where(
            TeamQuantumDNA.id == fn.ANY(Value(sorted(ids), unpack=False)))}
        for pair in pairs:
            pair.home_team = by_id[pair.home_team_id]
            pair.away_team = by_id[pair.away_team_id]
    return pairs


def get_friction(home_team: str, away_team: str, eager: bool = True) -> QuantumFrictionMatrix:
    """The friction row for the ordered pair of team names; NotFound names the pair."""
    home_team = checks.compare(TeamQuantumDNA, "team_name", home_team, allow_none=False)
    away_team = checks.compare(TeamQuantumDNA, "team_name", away_team, allow_none=False)
    Home, Away = TeamQuantumDNA.alias(), TeamQuantumDNA.alias()
    # The pair is found through a join on both teams anyway: when eager, the same single
    # query also fills home_team and away_team.
    selected = (Friction, Home, Away) if eager else (Friction,)
    query = (Friction.select(*selected)
             .join(Home, on=(Friction.home_team == Home.id), attr="home_team").switch(Friction)
             .join(Away, on=(Friction.away_team == Away.id), attr="away_team")
             .where(Home.team_name == home_team, Away.team_name == away_team))
    rows = list(query)
    if not rows:
        raise NotFound(f"no friction row for {home_team!r} (home) v {away_team!r} (away)")
    return rows[0]


def get_high_friction_matches(threshold: float | Decimal = 70,
                              limit: int | None = None) -> list[QuantumFrictionMatrix]:
    """Pairs whose friction score is at least ``threshold``, highest first."""
    crud.check_window(0, limit)
    threshold = checks.compare(Friction, "friction_score", threshold, allow_none=False)
    query = (Friction.select().where(Friction.friction_score >= threshold)
             .order_by(Friction.friction_score.desc(), Friction.id))
    return _eager(query.limit(limit) if limit is not None else query)


def get_all_pairs() -> list[QuantumFrictionMatrix]:
    """Every pair with both teams loaded."""
    return _eager(Friction.select().order_by(Friction.id))
