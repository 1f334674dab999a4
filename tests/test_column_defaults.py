"""Every Python default of the models is also the column's default in the database, so raw SQL
from legacy code may leave those columns out, as an insert through the models may."""

import datetime
from decimal import Decimal

import pytest

from monps_store.models import (
    ALL_MODELS,
    ChessClassification,
    GoalscorerProfile,
    Odds,
    QuantumFrictionMatrix,
    QuantumStrategy,
    TeamQuantumDNA,
    TrackingCLVPick,
)

UTC = datetime.UTC
AUDIT = {"id", "created_at", "updated_at", "created_by", "updated_by", "change_reason"}

# Only the columns an INSERT must name (NOT NULL, no default); "<team>" and "<other team>"
# stand for the ids of two teams the test creates first.
REQUIRED = {
    ChessClassification: {"code": "PRS", "name": "Pressing"},
    TeamQuantumDNA: {"team_name": "Brest", "league": "Ligue 1"},
    GoalscorerProfile: {"team": "<team>", "player_name": "Ajorque"},
    QuantumFrictionMatrix: {"home_team": "<team>", "away_team": "<other team>",
                            "friction_score": Decimal("42.50")},
    QuantumStrategy: {"team": "<team>", "market": "1x2", "strategy_name": "value",
                      "win_rate": Decimal("55.00"), "roi": Decimal("3.250"), "sample_size": 40},
    TrackingCLVPick: {"agent": "alpha", "match_id": "m1", "market": "1x2", "selection": "home",
                      "bookmaker": "pinnacle", "odds_taken": Decimal("2.050"),
                      "picked_at": datetime.datetime(2024, 9, 1, 12, tzinfo=UTC)},
    Odds: {"match_id": "m1", "league": "Ligue 1", "home_team": "Lyon", "away_team": "Nice",
           "bookmaker": "pinnacle", "market": "1x2", "selection": "home",
           "price": Decimal("2.100"),
           "commence_time": datetime.datetime(2024, 9, 1, 19, tzinfo=UTC),
           "collected_at": datetime.datetime(2024, 9, 1, 12, tzinfo=UTC)},
}


def table(model) -> str:
    return f'"{model._meta.schema}"."{model._meta.table_name}"'


def fields_with_a_python_default():
    return [pytest.param(model, field, id=f"{model.__name__}.{field.name}")
            for model in ALL_MODELS for field in model._meta.sorted_fields
            if field.default is not None]


@pytest.mark.parametrize("model,field", fields_with_a_python_default())
def test_the_column_default_in_the_database_equals_the_python_default(pg, tables, model, field):
    [(expression, column_type)] = pg.sql(
        "SELECT pg_get_expr(d.adbin, d.adrelid), format_type(a.atttypid, a.atttypmod) "
        "FROM pg_attribute a LEFT JOIN pg_attrdef d "
        "ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
        "WHERE a.attrelid = %s::regclass AND a.attname = %s", (table(model), field.column_name))
    assert expression is not None, f"{model.__name__}.{field.name} has no database default"
    [(value,)] = pg.sql(f"SELECT ({expression})::{column_type}")
    python_default = field.default() if callable(field.default) else field.default
    assert value == python_default


def test_every_model_is_covered_with_exactly_its_required_columns():
    required = {model: {f.name for f in model._meta.sorted_fields
                        if not (f.null or f.primary_key or f.default is not None
                                or any(getattr(c, "sql", "").startswith("DEFAULT")
                                       for c in f.constraints or ()))}
                for model in ALL_MODELS}
    assert {model: set(values) for model, values in REQUIRED.items()} == required


def raw_insert(pg, model, values: dict) -> int:
    fields = [model._meta.fields[name] for name in values]
    columns = ", ".join(f.column_name for f in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    [(row_id,)] = pg.sql(f"INSERT INTO {table(model)} ({columns}) VALUES ({placeholders}) "
                         "RETURNING id", tuple(values.values()))
    return row_id


def without_audit(row) -> dict:
    return {name: value for name, value in row.to_dict().items() if name not in AUDIT}


@pytest.mark.parametrize("model", list(REQUIRED), ids=lambda model: model.__name__)
def test_a_raw_insert_naming_only_the_required_columns_gets_what_the_models_would_write(
        pg, db, model):
    values = dict(REQUIRED[model])
    for name, value in values.items():
        if value in ("<team>", "<other team>"):
            team = "Lyon" if value == "<team>" else "Nice"
            values[name] = raw_insert(pg, TeamQuantumDNA, {"team_name": team, "league": "L1"})

    raw = model.get_by_id(raw_insert(pg, model, values))
    pg.sql(f"DELETE FROM {table(model)} WHERE id = %s", (raw.id,))  # frees the natural key
    created = model.get_by_id(model.create(**values).id)

    assert without_audit(raw) == without_audit(created)
