"""Row builders shared by the test modules: one place for the rows the tests start from.

Every builder has defaults that make a valid row, and takes keyword overrides for whatever
a test cares about::

    odds_row(selection="away", price="3.100")   # a plain dict, for bulk/upsert paths
    add_odds(match_id="m2")                     # an Odds row, saved
    lyon = add_team("Lyon", roi=Decimal("5.000"))
    add_friction(lyon, add_team("Nice"), "64.50")
    add_strategy(lyon, "bold", "6.000", market="btts")
    add_scorer(lyon, "Lacazette", 11, "9.50")
    add_pick(agent="beta", picked_at=KICK_OFF)

Conventions:

* Money and other fixed-point values are :class:`~decimal.Decimal`. The builders also accept
  them as strings (``"2.100"``) or integers and convert them; never pass floats.
* Datetimes are timezone-aware, in UTC. A naive datetime is refused with ``ValueError``.
* ``add_*`` builders save through ``Model.create`` (so ``BaseModel.save()`` fills the audit
  columns) and return the saved instance; they never go through the code under test.

The defaults: match ``m1`` of Ligue 1, Lyon at home to Nice, kick-off ``KICK_OFF``
(2024-09-01 19:00 UTC), odds collected at ``COLLECTED`` (12:00 UTC the same day) from
``pinnacle`` on the ``1x2`` market, ``home`` selection.
"""

from __future__ import annotations

import datetime
from decimal import Decimal

from monps_store.models import (
    GoalscorerProfile,
    Odds,
    QuantumFrictionMatrix,
    QuantumStrategy,
    TeamQuantumDNA,
    TrackingCLVPick,
)

UTC = datetime.UTC  # datetime.timezone.utc
KICK_OFF = datetime.datetime(2024, 9, 1, 19, 0, tzinfo=UTC)
COLLECTED = datetime.datetime(2024, 9, 1, 12, 0, tzinfo=UTC)

ODDS_DEFAULTS = {
    "match_id": "m1",
    "league": "Ligue 1",
    "home_team": "Lyon",
    "away_team": "Nice",
    "bookmaker": "pinnacle",
    "market": "1x2",
    "selection": "home",
    "price": Decimal("2.100"),
    "commence_time": KICK_OFF,
    "collected_at": COLLECTED,
}

PICK_DEFAULTS = {
    "agent": "alpha",
    "match_id": "m1",
    "market": "1x2",
    "selection": "home",
    "bookmaker": "pinnacle",
    "odds_taken": Decimal("2.050"),
    "stake": Decimal("10.00"),
    "picked_at": COLLECTED,
}


def decimal(value):
    """``value`` as a Decimal (``None`` stays ``None``); strings and ints are converted exactly."""
    if value is None or isinstance(value, Decimal):
        return value
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise TypeError(f"expected a Decimal, str or int, got {value!r}")
    return Decimal(value)


def aware(value):
    """``value`` unchanged if it is a timezone-aware datetime; ValueError if it is naive."""
    if isinstance(value, datetime.datetime) and value.utcoffset() is None:
        raise ValueError(f"test datetimes must be timezone-aware (UTC), got {value!r}")
    return value


def _with(defaults: dict, overrides: dict, money: tuple, moments: tuple) -> dict:
    values = defaults | overrides
    for name in money:
        if name in values:
            values[name] = decimal(values[name])
    for name in moments:
        if name in values:
            values[name] = aware(values[name])
    return values


# -- public ----------------------------------------------------------------------------------


def odds_row(**overrides) -> dict:
    """The field values of one Odds row (see ``ODDS_DEFAULTS``), ``overrides`` applied.

    A plain dict, for ``crud.insert_many``/``odds.upsert``; ``price`` may be given as a string.
    """
    return _with(ODDS_DEFAULTS, overrides, money=("price",),
                 moments=("commence_time", "collected_at"))


def add_odds(**overrides) -> Odds:
    """Save and return one Odds row built by :func:`odds_row`."""
    return Odds.create(**odds_row(**overrides))


def add_pick(**overrides) -> TrackingCLVPick:
    """Save and return one CLV pick (see ``PICK_DEFAULTS``), ``overrides`` applied."""
    values = _with(PICK_DEFAULTS, overrides,
                   money=("odds_taken", "stake", "closing_odds", "clv_percent"),
                   moments=("picked_at", "settled_at"))
    return TrackingCLVPick.create(**values)


# -- quantum ---------------------------------------------------------------------------------


def add_team(name: str, league: str = "Ligue 1", **fields) -> TeamQuantumDNA:
    """Save and return the team ``name`` of ``league``; ``fields`` set any other column
    (``roi=Decimal("5.000")``, ``market_dna={...}``, ``chess_classification=...``)."""
    return TeamQuantumDNA.create(team_name=name, league=league, **fields)


def add_friction(home, away, score="50", **fields) -> QuantumFrictionMatrix:
    """Save and return the friction row of ``home`` (at home) against ``away``."""
    return QuantumFrictionMatrix.create(home_team=home, away_team=away,
                                        friction_score=decimal(score), **fields)


def add_strategy(team, name: str = "value", roi="5.000", *, market: str = "1x2",
                 win_rate="50.00", sample_size: int = 50, is_active: bool = True
                 ) -> QuantumStrategy:
    """Save and return the strategy ``name`` of ``team`` on ``market``."""
    return QuantumStrategy.create(team=team, market=market, strategy_name=name,
                                  roi=decimal(roi), win_rate=decimal(win_rate),
                                  sample_size=sample_size, is_active=is_active)


def add_scorer(team, player: str, goals: int = 3, expected_goals="0", **fields
               ) -> GoalscorerProfile:
    """Save and return the scoring record of ``player`` for ``team``."""
    return GoalscorerProfile.create(team=team, player_name=player, goals=goals,
                                    expected_goals=decimal(expected_goals), **fields)
