"""One transaction across repositories; nested scopes are savepoints. Checked with raw SQL
from another session."""

import pytest

import monps_store
from monps_store.errors import NotFound
from monps_store.models import TeamQuantumDNA
from monps_store.repositories import crud, goalscorers, strategies, teams
from tests.factories import add_scorer, add_strategy, add_team


def team_names(pg):
    return [name for (name,) in pg.sql(
        "SELECT team_name FROM quantum.team_quantum_dna ORDER BY team_name")]


def add_team_with_children(name):
    """A team of Ligue 1 with one strategy and one goalscorer: three tables written."""
    team = add_team(name)
    add_strategy(team, "home-fav", "4.2", win_rate="55.5", sample_size=40)
    add_scorer(team, f"{name} striker", goals=9)
    return team


def test_writes_across_repositories_commit_together_on_a_clean_exit(pg, db):
    with monps_store.unit_of_work(actor="test"):
        add_team_with_children("Lyon")
        assert team_names(pg) == []  # another session sees nothing before the commit
    assert team_names(pg) == ["Lyon"]
    assert [s.strategy_name for s in strategies.get_team_strategies("Lyon")] == ["home-fav"]
    assert [g.player_name for g in goalscorers.get_by_team("Lyon")] == ["Lyon striker"]


def test_an_exception_rolls_back_every_repository_write_and_propagates(pg, db):
    with pytest.raises(RuntimeError, match="late failure"):
        with monps_store.unit_of_work(actor="test"):
            add_team_with_children("Lyon")
            raise RuntimeError("late failure")
    assert pg.sql("SELECT (SELECT count(*) FROM quantum.team_quantum_dna), "
                  "(SELECT count(*) FROM quantum.quantum_strategies), "
                  "(SELECT count(*) FROM quantum.goalscorer_profiles)") == [(0, 0, 0)]


def test_a_failing_nested_scope_undoes_only_its_own_part(pg, db):
    with monps_store.unit_of_work(actor="test"):
        crud.create(TeamQuantumDNA, team_name="Kept", league="L")
        with pytest.raises(ValueError):
            with monps_store.unit_of_work():
                crud.create(TeamQuantumDNA, team_name="Undone", league="L")
                raise ValueError("inner failure")
        crud.create(TeamQuantumDNA, team_name="After", league="L")
    assert team_names(pg) == ["After", "Kept"]


def test_a_database_error_in_a_nested_scope_leaves_the_outer_transaction_usable(pg, db):
    with monps_store.unit_of_work(actor="test"):
        crud.create(TeamQuantumDNA, team_name="Kept", league="L")
        with pytest.raises(Exception, match="team_quantum_dna_team_name"):
            with monps_store.unit_of_work():
                crud.create(TeamQuantumDNA, team_name="Kept", league="L")  # duplicate name
        crud.create(TeamQuantumDNA, team_name="Second", league="L")
    assert team_names(pg) == ["Kept", "Second"]


def test_an_explicit_rollback_undoes_the_writes_so_far_and_work_can_go_on(pg, db):
    with monps_store.unit_of_work(actor="test") as uow:
        crud.create(TeamQuantumDNA, team_name="Discarded", league="L")
        uow.rollback()
        crud.create(TeamQuantumDNA, team_name="Committed", league="L")
    assert team_names(pg) == ["Committed"]


def test_a_unit_of_work_returns_its_connection_however_it_ends(db):
    for fail in (False, True, False):
        with pytest.raises(RuntimeError) if fail else _nothing():
            with monps_store.unit_of_work():
                crud.count(TeamQuantumDNA)
                if fail:
                    raise RuntimeError
    assert monps_store.pool_status()["in_use"] == 0
    assert db.is_closed()


def test_a_missing_row_raises_not_found_naming_what_was_looked_for(db):
    with pytest.raises(NotFound, match="team 'Atlantis FC' not found"):
        with monps_store.unit_of_work():
            teams.get_by_name("Atlantis FC")


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
