"""Rows returned with their related rows cost a constant number of queries."""

from decimal import Decimal

import pytest
from playhouse.test_utils import count_queries

from monps_store.models import QuantumFrictionMatrix, TeamQuantumDNA
from monps_store.repositories import crud, friction, goalscorers, strategies
from tests.factories import add_scorer, add_strategy


def build_pairs(count):
    """``count`` friction rows between distinct ordered pairs of freshly made teams."""
    size = 2
    while size * (size - 1) < count:
        size += 1
    crud.insert_many(TeamQuantumDNA, [{"team_name": f"T{i:03d}", "league": "L"}
                                      for i in range(size)])
    ids = [t.id for t in TeamQuantumDNA.select(TeamQuantumDNA.id).order_by(TeamQuantumDNA.id)]
    pairs = [(h, a) for h in ids for a in ids if h != a][:count]
    crud.insert_many(QuantumFrictionMatrix, [
        {"home_team": h, "away_team": a, "friction_score": Decimal(50 + n % 50)}
        for n, (h, a) in enumerate(pairs)])


def read_both_teams(rows):
    return [(row.home_team.team_name, row.away_team.team_name) for row in rows]


@pytest.mark.parametrize("rows", [3, 300])
def test_high_friction_matches_load_both_teams_in_three_queries_however_many_rows(db, rows):
    build_pairs(rows)
    with count_queries() as counter:
        found = friction.get_high_friction_matches(threshold=0)
        names = read_both_teams(found)
    assert len(names) == rows
    assert counter.count == 2  # the rows, then every team they name


def test_without_eager_loading_each_row_costs_two_more_queries(db):
    build_pairs(30)
    with count_queries() as counter:
        read_both_teams(QuantumFrictionMatrix.select())
    assert counter.count == 1 + 2 * 30  # the N+1 pattern the eager path avoids


def test_a_single_pair_is_eager_by_default_and_lazy_on_request(db):
    build_pairs(2)
    with count_queries() as eager:
        row = friction.get_friction("T000", "T001")
        assert (row.home_team.team_name, row.away_team.team_name) == ("T000", "T001")
    with count_queries() as lazy:
        row = friction.get_friction("T000", "T001", eager=False)
        assert (row.home_team.team_name, row.away_team.team_name) == ("T000", "T001")
    assert (eager.count, lazy.count) == (1, 3)


def test_best_strategies_and_top_scorers_come_with_their_team_in_one_query(db):
    build_pairs(2)
    for team in TeamQuantumDNA.select():
        add_strategy(team, "s", Decimal(team.id), win_rate=Decimal(50), sample_size=10)
        add_scorer(team, f"p{team.id}", goals=team.id)
    with count_queries() as counter:
        best = [(s.team.team_name, s.roi) for s in strategies.get_best_by_market("1x2")]
        scorers = [(g.team.team_name, g.goals) for g in goalscorers.get_top_scorers()]
    assert counter.count == 2
    assert best == [("T001", Decimal("2.000")), ("T000", Decimal("1.000"))]
    assert scorers == [("T001", 2), ("T000", 1)]
