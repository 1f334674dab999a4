"""One transaction across repositories; nested scopes are savepoints. Checked with raw SQL
from another session."""

import pytest

import monps_store
from monps_store.errors import InvalidInput, NotFound
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


# -- isolation levels --------------------------------------------------------------------------


def transaction_isolation():
    return monps_store.db.execute_sql("SHOW transaction_isolation").fetchone()[0]


@pytest.mark.parametrize("given, shown", [("serializable", "serializable"),
                                          ("REPEATABLE READ", "repeatable read"),
                                          ("repeatable_read", "repeatable read"),
                                          ("read committed", "read committed")])
def test_a_unit_of_work_begins_at_the_isolation_level_it_names(db, given, shown):
    with monps_store.unit_of_work(isolation_level=given):
        assert transaction_isolation() == shown
    with monps_store.unit_of_work():
        assert transaction_isolation() == "read committed"  # the server's default again


def test_a_nested_unit_of_work_cannot_choose_an_isolation_level(pg, db):
    with monps_store.unit_of_work(isolation_level="serializable"):
        add_team("Lyon")
        with pytest.raises(InvalidInput, match="isolation_level='repeatable read'.*outermost"):
            with monps_store.unit_of_work(isolation_level="repeatable read"):
                add_team("Nice")
        with monps_store.unit_of_work():  # a plain savepoint is fine
            add_team("Nice")
    assert team_names(pg) == ["Lyon", "Nice"]


def test_an_unknown_isolation_level_is_refused_naming_it_before_anything_runs(pg, db):
    with pytest.raises(InvalidInput, match="unknown isolation level 'snapshot'"):
        with monps_store.unit_of_work(isolation_level="snapshot"):
            add_team("Lyon")
    assert team_names(pg) == []
    assert monps_store.pool_status()["in_use"] == 0


def test_two_serializable_units_that_conflict_end_with_one_serialization_failure(pg, db):
    # Write skew: each reads the whole table, then inserts. READ COMMITTED lets both commit;
    # SERIALIZABLE refuses one of them (SQLSTATE 40001), which is what a retry is for.
    import threading

    import peewee

    both_read = threading.Barrier(2, timeout=10)
    outcomes = []

    def unit(name):
        try:
            with monps_store.unit_of_work(isolation_level="serializable"):
                monps_store.db.execute_sql("SELECT count(*) FROM quantum.team_quantum_dna")
                both_read.wait()
                add_team(name)
            outcomes.append("committed")
        except peewee.DatabaseError as exc:
            outcomes.append(getattr(exc.orig, "pgcode", None) if hasattr(exc, "orig") else exc)
        finally:
            monps_store.db.close()

    threads = [threading.Thread(target=unit, args=(name,)) for name in ("Lyon", "Nice")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(map(str, outcomes)) == ["40001", "committed"]
    assert len(team_names(pg)) == 1
