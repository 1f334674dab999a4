"""The models against the real database: constraints, delete rules, column types, repr/to_dict."""

import datetime
from decimal import Decimal

import peewee
import pytest

import monps_store
from monps_store.models import ChessClassification, QuantumFrictionMatrix, TeamQuantumDNA
from tests.factories import (
    add_friction,
    add_odds,
    add_pick,
    add_scorer,
    add_strategy,
    add_team,
)

# -- helpers ---------------------------------------------------------------------------------


def rows_in(pg, table):
    return pg.sql(f"SELECT count(*) FROM {table}")[0][0]  # noqa: S608 - fixed test table names


def refused(constraint):
    """A write that must fail on ``constraint``, in its own connection scope and transaction."""
    return pytest.raises(peewee.IntegrityError, match=constraint)


# -- CHECK and unique constraints ------------------------------------------------------------


@pytest.mark.parametrize("price", [Decimal("1.0"), Decimal("0.5")])
def test_an_odds_price_of_one_or_less_is_refused_and_nothing_is_written(db, pg, price):
    with refused("odds_price_check"), monps_store.connection(), db.atomic():
        add_odds(price=price)
    assert rows_in(pg, "public.odds") == 0


def test_the_same_odds_natural_key_cannot_be_stored_twice(db, pg):
    add_odds(price=Decimal("2.100"))
    # Raised by the month partition's copy of the natural-key index.
    with refused(r"Key \(match_id, bookmaker, market, selection, collected_at\)"), \
            monps_store.connection(), db.atomic():
        add_odds(price=Decimal("2.300"))
    assert pg.sql("SELECT price FROM public.odds") == [(Decimal("2.100"),)]


def test_a_friction_row_of_a_team_against_itself_is_refused(db, pg):
    lyon = add_team("Lyon")
    with refused("friction_home_differs_from_away"), monps_store.connection(), db.atomic():
        add_friction(lyon, lyon)
    assert rows_in(pg, "quantum.quantum_friction_matrix") == 0


def test_the_same_friction_pair_cannot_be_stored_twice(db, pg):
    lyon, nice = add_team("Lyon"), add_team("Nice")
    add_friction(lyon, nice, score="40")
    with refused("quantum_friction_matrix_home_team_id_away_team_id"), \
            monps_store.connection(), db.atomic():
        add_friction(lyon, nice, score="90")
    assert pg.sql("SELECT friction_score FROM quantum.quantum_friction_matrix") == [
        (Decimal("40.00"),)]


@pytest.mark.parametrize("odds_taken", [Decimal("1.000"), Decimal("0.800")])
def test_a_pick_taken_at_odds_of_one_or_less_is_refused(db, pg, odds_taken):
    with refused("tracking_clv_picks_odds_taken_check"), monps_store.connection(), db.atomic():
        add_pick(odds_taken=odds_taken)
    assert rows_in(pg, "public.tracking_clv_picks") == 0


@pytest.mark.parametrize("stake", [Decimal("0"), Decimal("-5.00")])
def test_a_pick_with_a_stake_of_zero_or_less_is_refused(db, pg, stake):
    with refused("tracking_clv_picks_stake_check"), monps_store.connection(), db.atomic():
        add_pick(stake=stake)
    assert rows_in(pg, "public.tracking_clv_picks") == 0


def test_a_pick_with_an_unknown_status_is_refused(db, pg):
    with refused("tracking_clv_picks_status_check"), monps_store.connection(), db.atomic():
        add_pick(status="cancelled")
    assert rows_in(pg, "public.tracking_clv_picks") == 0


def test_a_strategy_win_rate_above_one_hundred_is_refused(db, pg):
    lyon = add_team("Lyon")
    with refused("quantum_strategies_win_rate_check"), monps_store.connection(), db.atomic():
        add_strategy(lyon, "value", "1.000", win_rate="100.01", sample_size=10)
    assert rows_in(pg, "quantum.quantum_strategies") == 0


def test_two_teams_cannot_share_a_name(db, pg):
    add_team("Lyon", league="Ligue 1")
    with refused("team_quantum_dna_team_name"), monps_store.connection(), db.atomic():
        add_team("Lyon", league="Serie A")
    assert pg.sql("SELECT team_name, league FROM quantum.team_quantum_dna") == [
        ("Lyon", "Ligue 1")]


# -- foreign-key delete rules ----------------------------------------------------------------


def test_deleting_a_team_deletes_its_friction_rows_strategies_and_goalscorers(db, pg):
    lyon, nice, lens = add_team("Lyon"), add_team("Nice"), add_team("Lens")
    add_friction(lyon, nice)   # Lyon at home
    add_friction(nice, lyon)   # Lyon away
    kept_friction = add_friction(nice, lens)
    add_strategy(lyon)
    kept_strategy = add_strategy(nice)
    add_scorer(lyon, "Lacazette")
    kept_scorer = add_scorer(nice, "Moffi")

    assert lyon.delete_instance() == 1

    assert pg.sql("SELECT team_name FROM quantum.team_quantum_dna ORDER BY team_name") == [
        ("Lens",), ("Nice",)]
    assert pg.sql("SELECT id FROM quantum.quantum_friction_matrix") == [(kept_friction.id,)]
    assert pg.sql("SELECT id FROM quantum.quantum_strategies") == [(kept_strategy.id,)]
    assert pg.sql("SELECT id FROM quantum.goalscorer_profiles") == [(kept_scorer.id,)]
    orphans = pg.sql("""
        SELECT (SELECT count(*) FROM quantum.quantum_friction_matrix f
                WHERE f.home_team_id = %(id)s OR f.away_team_id = %(id)s),
               (SELECT count(*) FROM quantum.quantum_strategies WHERE team_id = %(id)s),
               (SELECT count(*) FROM quantum.goalscorer_profiles WHERE team_id = %(id)s)
    """, {"id": lyon.id})
    assert orphans == [(0, 0, 0)]


def test_deleting_a_classification_leaves_its_teams_unclassified(db, pg):
    pressing = ChessClassification.create(code="PRS", name="Pressing")
    other = ChessClassification.create(code="LOW", name="Low block")
    add_team("Lyon", chess_classification=pressing)
    add_team("Lens", chess_classification=pressing)
    add_team("Nice", chess_classification=other)

    assert pressing.delete_instance() == 1

    assert pg.sql("SELECT team_name, chess_classification_id FROM quantum.team_quantum_dna "
                  "ORDER BY team_name") == [("Lens", None), ("Lyon", None), ("Nice", other.id)]
    assert pg.sql("SELECT code FROM quantum.chess_classifications") == [("LOW",)]


# -- schemas and column types ----------------------------------------------------------------


def test_odds_and_picks_live_in_public_and_the_team_tables_in_quantum(db, pg):
    rows = pg.sql("""
        SELECT table_schema, table_name FROM information_schema.tables
        WHERE table_schema IN ('public', 'quantum') AND table_type = 'BASE TABLE'
          AND (table_schema || '.' || table_name)::regclass NOT IN (
              SELECT oid FROM pg_class WHERE relispartition)  -- odds' month partitions
        ORDER BY table_schema, table_name
    """)
    assert rows == [
        ("public", "monps_migrations"),  # the migration history, beside the models
        ("public", "odds"),
        ("public", "tracking_clv_picks"),
        ("quantum", "chess_classifications"),
        ("quantum", "goalscorer_profiles"),
        ("quantum", "quantum_friction_matrix"),
        ("quantum", "quantum_strategies"),
        ("quantum", "team_quantum_dna"),
    ]


def column_types(pg, schema, table):
    rows = pg.sql("""
        SELECT column_name, data_type, numeric_precision, numeric_scale
        FROM information_schema.columns WHERE table_schema = %s AND table_name = %s
    """, (schema, table))
    return {name: (data_type, precision, scale) for name, data_type, precision, scale in rows}


def test_the_eight_dna_vectors_are_jsonb_columns(db, pg):
    types = column_types(pg, "quantum", "team_quantum_dna")
    dna = {name: types[name][0] for name in types if name.endswith("_dna")}
    assert dna == {name: "jsonb" for name in (
        "market_dna", "context_dna", "temporal_dna", "nemesis_dna", "psyche_dna", "roster_dna",
        "physical_dna", "luck_dna")}


def test_the_odds_price_is_numeric_ten_three(db, pg):
    assert column_types(pg, "public", "odds")["price"] == ("numeric", 10, 3)


def test_every_timestamp_column_is_timestamptz(db, pg):
    odds = column_types(pg, "public", "odds")
    picks = column_types(pg, "public", "tracking_clv_picks")
    team = column_types(pg, "quantum", "team_quantum_dna")
    timestamps = {
        "odds.commence_time": odds["commence_time"][0],
        "odds.collected_at": odds["collected_at"][0],
        "odds.created_at": odds["created_at"][0],
        "odds.updated_at": odds["updated_at"][0],
        "picks.picked_at": picks["picked_at"][0],
        "picks.settled_at": picks["settled_at"][0],
        "team.created_at": team["created_at"][0],
        "team.updated_at": team["updated_at"][0],
    }
    assert set(timestamps.values()) == {"timestamp with time zone"}


# -- repr and to_dict ------------------------------------------------------------------------

def test_a_team_repr_shows_its_id_and_name(db):
    lyon = add_team("Lyon")
    assert repr(TeamQuantumDNA.get_by_id(lyon.id)) == (
        f"<TeamQuantumDNA: id={lyon.id} team_name='Lyon'>")


def test_an_unsaved_row_repr_shows_no_id_yet(db):
    assert repr(ChessClassification(code="PRS")) == "<ChessClassification: id=None code='PRS'>"


def test_a_friction_repr_shows_the_team_ids_of_the_pair(db):
    lyon, nice = add_team("Lyon"), add_team("Nice")
    row = add_friction(lyon, nice)
    assert repr(QuantumFrictionMatrix.get_by_id(row.id)) == (
        f"<QuantumFrictionMatrix: id={row.id} home_team={lyon.id} away_team={nice.id}>")


def test_to_dict_returns_plain_values_with_foreign_keys_as_ids(db):
    pressing = ChessClassification.create(code="PRS", name="Pressing")
    lyon = add_team("Lyon", chess_classification=pressing, market_dna={"edge": 1.5},
                    roi=Decimal("4.250"))
    nice = add_team("Nice")
    pair = add_friction(lyon, nice, score="72.5")

    team = TeamQuantumDNA.get_by_id(lyon.id).to_dict()
    assert team["id"] == lyon.id
    assert team["team_name"] == "Lyon"
    assert team["chess_classification"] == pressing.id
    assert team["market_dna"] == {"edge": 1.5}
    assert team["luck_dna"] == {}
    assert team["roi"] == Decimal("4.250")
    assert team["avg_clv"] is None
    assert isinstance(team["created_at"], datetime.datetime)
    assert team["created_at"].utcoffset() is not None

    friction = QuantumFrictionMatrix.get_by_id(pair.id).to_dict()
    assert (friction["home_team"], friction["away_team"]) == (lyon.id, nice.id)
    assert friction["friction_score"] == Decimal("72.50")
