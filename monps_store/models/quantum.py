"""Models in the ``quantum`` schema: team profiles and what is derived from them.

Delete rules: a team's friction rows, strategies and goalscorer profiles belong to it and are
deleted with it (CASCADE); deleting a tactical classification leaves its teams unclassified
(SET NULL) rather than deleting them.
"""

from __future__ import annotations

from peewee import (
    SQL,
    AutoField,
    BooleanField,
    Check,
    DecimalField,
    ForeignKeyField,
    IntegerField,
    JSONField,
    TextField,
)

from monps_store.models.base import AuditedModel

DNA_VECTORS = ("market_dna", "context_dna", "temporal_dna", "nemesis_dna", "psyche_dna",
               "roster_dna", "physical_dna", "luck_dna")
# Every Python default is also the column's SQL default, so that raw SQL from legacy code may
# leave the column out as an insert through the models may (tests/test_column_defaults.py).
ZERO = SQL("DEFAULT 0")


def _dna():
    return JSONField(default=dict, constraints=[SQL("DEFAULT '{}'::jsonb")])


def _decimal(digits, places, **kwargs):
    return DecimalField(max_digits=digits, decimal_places=places, auto_round=False, **kwargs)


class ChessClassification(AuditedModel):
    """One of the twelve tactical profiles a team is classified into."""

    id = AutoField()
    code = TextField(unique=True)
    name = TextField(unique=True)
    description = TextField(default="", constraints=[SQL("DEFAULT ''")])
    traits = JSONField(default=dict, constraints=[SQL("DEFAULT '{}'::jsonb")])

    natural_key = ("code",)

    class Meta:
        table_name = "chess_classifications"
        schema = "quantum"


class TeamQuantumDNA(AuditedModel):
    """A team: its league, tactical class, eight DNA vectors and betting performance."""

    id = AutoField()
    team_name = TextField(unique=True)
    league = TextField(index=True)
    chess_classification = ForeignKeyField(ChessClassification, null=True, on_delete="SET NULL",
                                           backref="teams")
    market_dna = _dna()
    context_dna = _dna()
    temporal_dna = _dna()
    nemesis_dna = _dna()
    psyche_dna = _dna()
    roster_dna = _dna()
    physical_dna = _dna()
    luck_dna = _dna()
    matches_played = IntegerField(default=0, constraints=[ZERO, Check("matches_played >= 0")])
    total_bets = IntegerField(default=0, constraints=[ZERO, Check("total_bets >= 0")])
    win_rate = _decimal(5, 2, default=0, constraints=[ZERO, Check("win_rate BETWEEN 0 AND 100")])
    roi = _decimal(10, 3, default=0, constraints=[ZERO])
    total_pnl = _decimal(12, 2, default=0, constraints=[ZERO])
    avg_clv = _decimal(10, 3, null=True)

    natural_key = ("team_name",)
    publish_changes = True  # team_quantum_dna_changed: cached reads depend on it
    # Figures get_top_performers() may rank by.
    PERFORMANCE_FIELDS = ("roi", "win_rate", "total_pnl", "avg_clv", "total_bets")

    class Meta:
        table_name = "team_quantum_dna"
        schema = "quantum"


class QuantumFrictionMatrix(AuditedModel):
    """How two teams' styles collide, for one ordered pair (home, away)."""

    id = AutoField()
    # index=False where the unique index below already leads with the column.
    home_team = ForeignKeyField(TeamQuantumDNA, on_delete="CASCADE", backref="home_frictions",
                                index=False)
    away_team = ForeignKeyField(TeamQuantumDNA, on_delete="CASCADE", backref="away_frictions")
    friction_score = _decimal(6, 2, constraints=[Check("friction_score BETWEEN 0 AND 100")])
    style_clash = _decimal(6, 2, null=True)
    tempo_friction = _decimal(6, 2, null=True)
    chaos_potential = _decimal(6, 2, null=True)
    predicted_goals = _decimal(5, 2, null=True)
    matches_analyzed = IntegerField(default=0, constraints=[ZERO, Check("matches_analyzed >= 0")])

    natural_key = ("home_team", "away_team")

    class Meta:
        table_name = "quantum_friction_matrix"
        schema = "quantum"
        indexes = ((("home_team", "away_team"), True),)
        constraints = [
            Check("home_team_id <> away_team_id", name="friction_home_differs_from_away"),
        ]


class QuantumStrategy(AuditedModel):
    """A betting strategy's record for one team and market."""

    id = AutoField()
    team = ForeignKeyField(TeamQuantumDNA, on_delete="CASCADE", backref="strategies", index=False)
    market = TextField()
    strategy_name = TextField()
    win_rate = _decimal(5, 2, constraints=[Check("win_rate BETWEEN 0 AND 100")])
    roi = _decimal(10, 3)
    sample_size = IntegerField(constraints=[Check("sample_size >= 0")])
    is_active = BooleanField(default=True, constraints=[SQL("DEFAULT true")])

    natural_key = ("team", "market", "strategy_name")
    publish_changes = True  # quantum_strategies_changed: cached reads depend on it

    class Meta:
        table_name = "quantum_strategies"
        schema = "quantum"
        indexes = ((("team", "market", "strategy_name"), True),)


class GoalscorerProfile(AuditedModel):
    """A player's scoring record for a team."""

    id = AutoField()
    team = ForeignKeyField(TeamQuantumDNA, on_delete="CASCADE", backref="goalscorers",
                           index=False)
    player_name = TextField()
    position = TextField(null=True)
    goals = IntegerField(default=0, constraints=[ZERO, Check("goals >= 0")])
    assists = IntegerField(default=0, constraints=[ZERO, Check("assists >= 0")])
    expected_goals = _decimal(6, 2, default=0, constraints=[ZERO, Check("expected_goals >= 0")])
    minutes_played = IntegerField(default=0, constraints=[ZERO, Check("minutes_played >= 0")])
    shots = IntegerField(default=0, constraints=[ZERO, Check("shots >= 0")])
    penalty_goals = IntegerField(default=0, constraints=[ZERO, Check("penalty_goals >= 0")])

    natural_key = ("team", "player_name")

    class Meta:
        table_name = "goalscorer_profiles"
        schema = "quantum"
        indexes = ((("team", "player_name"), True), (("goals",), False))
