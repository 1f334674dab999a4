"""Every write path fills the timestamp and audit columns; checked with raw SQL."""

import getpass
import os
import socket
import sys
import threading
from decimal import Decimal

import pytest

import monps_store
from monps_store import audit
from monps_store.models import Odds, TeamQuantumDNA
from monps_store.repositories import crud, odds
from tests.conftest import TEST_APP_NAME
from tests.factories import odds_row


def audit_row(pg, table):
    rows = pg.sql(f"SELECT created_at, updated_at, created_by, updated_by, change_reason "
                  f"FROM {table} ORDER BY id")
    assert rows, f"no row in {table}"
    return rows


def test_create_inside_a_unit_of_work_records_actor_reason_and_times(pg, db):
    before = audit.now()
    with monps_store.unit_of_work(actor="cron:teams", reason="season refresh"):
        crud.create(TeamQuantumDNA, team_name="Lyon", league="Ligue 1")
    [(created_at, updated_at, created_by, updated_by, reason)] = audit_row(
        pg, "quantum.team_quantum_dna")
    assert (created_by, updated_by, reason) == ("cron:teams", "cron:teams", "season refresh")
    assert before <= created_at == updated_at <= audit.now()


def test_an_update_keeps_who_created_the_row_and_records_who_changed_it(pg, db):
    with monps_store.unit_of_work(actor="alice", reason="first"):
        team = crud.create(TeamQuantumDNA, team_name="Lyon", league="Ligue 1")
    with monps_store.unit_of_work(actor="bob", reason="fix league"):
        crud.update(team, league="Ligue 2")
    [(created_at, updated_at, created_by, updated_by, reason)] = audit_row(
        pg, "quantum.team_quantum_dna")
    assert (created_by, updated_by, reason) == ("alice", "bob", "fix league")
    assert updated_at > created_at


def test_without_an_actor_the_default_names_application_user_host_and_script(pg, db):
    crud.create(TeamQuantumDNA, team_name="Lyon", league="Ligue 1")
    [(_, _, created_by, updated_by, reason)] = audit_row(pg, "quantum.team_quantum_dna")
    script = os.path.basename(sys.argv[0])
    expected = f"{TEST_APP_NAME}:{getpass.getuser()}@{socket.gethostname()}:{script}"
    assert created_by == updated_by == expected
    assert reason is None


def test_nested_scopes_override_what_they_set_and_inherit_the_rest(pg, db):
    with monps_store.unit_of_work(actor="outer", reason="outer reason"):
        crud.create(TeamQuantumDNA, team_name="A", league="L")
        with monps_store.unit_of_work(actor="inner"):
            crud.create(TeamQuantumDNA, team_name="B", league="L")
            with monps_store.audit_context(reason="innermost reason"):
                crud.create(TeamQuantumDNA, team_name="C", league="L")
        crud.create(TeamQuantumDNA, team_name="D", league="L")
    rows = pg.sql("SELECT team_name, created_by, change_reason FROM quantum.team_quantum_dna "
                  "ORDER BY team_name")
    assert rows == [("A", "outer", "outer reason"), ("B", "inner", "outer reason"),
                    ("C", "inner", "innermost reason"), ("D", "outer", "outer reason")]


def test_a_thread_sees_the_audit_context_only_when_started_with_it(pg, db):
    def write(name):
        with monps_store.unit_of_work():
            crud.create(TeamQuantumDNA, team_name=name, league="L")

    with monps_store.audit_context(actor="parent", reason="why"):
        plain = threading.Thread(target=write, args=("plain",))
        bound = threading.Thread(target=audit.bind(write), args=("bound",))
        for thread in (plain, bound):
            thread.start()
            thread.join()
    rows = dict(pg.sql("SELECT team_name, created_by FROM quantum.team_quantum_dna"))
    assert rows["bound"] == "parent"
    assert rows["plain"] == audit.default_actor()


def test_a_blank_actor_is_refused():
    with pytest.raises(ValueError, match="actor must not be blank"):
        with monps_store.audit_context(actor="  "):
            pass


def test_insert_many_fills_the_audit_columns(pg, db):
    with monps_store.unit_of_work(actor="cron:odds", reason="bulk"):
        assert crud.insert_many(Odds, [odds_row(), odds_row(selection="away")]) == 2
    rows = audit_row(pg, "public.odds")
    assert [(r[2], r[3], r[4]) for r in rows] == [("cron:odds", "cron:odds", "bulk")] * 2
    assert all(r[0] is not None and r[0] == r[1] for r in rows)


def test_an_upsert_refreshes_the_audit_columns_only_of_rows_it_changes(pg, db):
    with monps_store.unit_of_work(actor="first", reason="load"):
        assert odds.upsert([odds_row(price="2.10"), odds_row(price="3.40", selection="away")]) == 2
    with monps_store.unit_of_work(actor="second", reason="reload"):
        assert odds.upsert([odds_row(price="2.20"), odds_row(price="3.40", selection="away")]) == 1
    rows = pg.sql("SELECT selection, price, created_by, updated_by, change_reason, "
                  "updated_at > created_at FROM public.odds ORDER BY selection")
    assert rows == [("away", Decimal("3.400"), "first", "first", "load", False),
                    ("home", Decimal("2.200"), "first", "second", "reload", True)]


def test_an_update_query_fills_the_audit_columns(pg, db):
    with monps_store.unit_of_work(actor="creator"):
        crud.insert_many(TeamQuantumDNA, [{"team_name": n, "league": "L1"} for n in "ABC"])
    with monps_store.unit_of_work(actor="relegator", reason="end of season"):
        assert crud.update_where(TeamQuantumDNA, {"league": "L2"}, team_name="B") == 1
    rows = pg.sql("SELECT team_name, league, created_by, updated_by, change_reason "
                  "FROM quantum.team_quantum_dna ORDER BY team_name")
    assert rows == [("A", "L1", "creator", "creator", None),
                    ("B", "L2", "creator", "relegator", "end of season"),
                    ("C", "L1", "creator", "creator", None)]


def test_an_update_query_without_a_filter_is_refused(db):
    with pytest.raises(monps_store.errors.InvalidInput, match="at least one filter"):
        crud.update_where(TeamQuantumDNA, {"league": "L2"})


def test_bulk_update_fills_the_audit_columns(pg, db):
    with monps_store.unit_of_work(actor="creator"):
        crud.insert_many(TeamQuantumDNA, [{"team_name": n, "league": "L"} for n in "AB"])
    teams = list(TeamQuantumDNA.select().order_by(TeamQuantumDNA.team_name))
    for team, roi in zip(teams, (Decimal("1.5"), Decimal("-2.25")), strict=True):
        team.roi = roi
    with monps_store.unit_of_work(actor="analyst", reason="recompute roi"):
        crud.bulk_update(teams, ["roi"])
    rows = pg.sql("SELECT team_name, roi, created_by, updated_by, change_reason "
                  "FROM quantum.team_quantum_dna ORDER BY team_name")
    assert rows == [("A", Decimal("1.500"), "creator", "analyst", "recompute roi"),
                    ("B", Decimal("-2.250"), "creator", "analyst", "recompute roi")]


def test_raw_sql_from_legacy_code_still_gets_times_and_the_database_role(pg, db):
    pg.sql("INSERT INTO quantum.team_quantum_dna (team_name, league, matches_played, total_bets,"
           " win_rate, roi, total_pnl) VALUES ('Raw', 'L', 0, 0, 0, 0, 0)")
    [(created_at, updated_at, created_by, updated_by, reason)] = audit_row(
        pg, "quantum.team_quantum_dna")
    role = pg.sql("SELECT current_user")[0][0]
    assert (created_by, updated_by, reason) == (role, role, None)
    assert created_at is not None and updated_at is not None
