"""Least privilege: the package runs with a role that can only read and write rows.

The roles, GRANTs and default privileges are the SQL of README.md's "Running with least
privilege", read from the README and run as written (names made unique: roles are cluster-wide),
on a scratch database. Migrations run as the owner through ``MIGRATION_DATABASE_URL``; then the
application role reads, writes, ingests, settles, runs a cron job and passes ``check``, and every
way of changing the schema is refused to it.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote

import psycopg2
import psycopg2.errors
import pytest

import monps_store
from monps_store import config, migrate
from monps_store.models import TeamQuantumDNA, TrackingCLVPick
from monps_store.repositories import crud, teams
from tests.conftest import Server

README = Path(__file__).resolve().parents[2] / "README.md"

CSV = (
    "match_id,league,home_team,away_team,bookmaker,market,selection,price,commence_time,"
    "collected_at\n"
    "m-lp-1,L1,Lyon,Nice,bk,1x2,home,2.100,2024-05-01T19:00:00Z,2024-05-01T10:00:00Z\n"
    "m-lp-1,L1,Lyon,Nice,bk,1x2,home,2.050,2024-05-01T19:00:00Z,2024-05-01T18:00:00Z\n"
)

JOB = textwrap.dedent("""
    from decimal import Decimal
    from monps_store import cron
    from monps_store.models import TeamQuantumDNA
    from monps_store.repositories import crud

    @cron.job("least-privilege-job", retries=0)
    def main():
        crud.upsert_many(TeamQuantumDNA, [{"team_name": "Brest", "league": "L1",
                                           "roi": Decimal("1.500")}],
                         conflict=["team_name"], update=["league", "roi"])

    main()
""")


def readme_sql() -> list[str]:
    """The ```sql blocks of the README's least-privilege section, in order."""
    text = README.read_text(encoding="utf-8")
    section = text.split("### Running with least privilege", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sql\n(.*?)```", section, re.S)


def statements(block: str, names: dict[str, str]) -> list[str]:
    for generic, unique in names.items():
        block = re.sub(rf"\b{generic}\b", unique, block)
    return [s.strip() for s in block.split(";") if s.strip()]


def with_user(url: str, user: str) -> str:
    settings = config.from_url(url)
    return (f"postgresql://{user}@/{settings.database}"
            f"?host={quote(settings.host, safe='/')}&port={settings.port}")


def cli(*args, env, cwd):
    base = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run([sys.executable, "-m", "monps_store", *args], capture_output=True,
                          text=True, env=base | env, cwd=cwd, timeout=120)


@pytest.fixture
def deployment(pg, empty_database):
    """The scratch database set up by the README's SQL: (owner URL, application URL)."""
    suffix = secrets.token_hex(3)
    database = config.from_url(empty_database).database
    names = {"monps_owner": f"monps_owner_{suffix}", "monps_app": f"monps_app_{suffix}",
             "monps": database}
    server_block, database_block, *_ = readme_sql()
    try:
        for statement in statements(server_block, names):
            if statement.startswith("CREATE DATABASE"):
                # The scratch database exists already: give it to the owner as CREATE would.
                statement = f'ALTER DATABASE "{database}" OWNER TO {names["monps_owner"]}'
            pg.sql(statement)
        scratch = Server(empty_database)
        for statement in statements(database_block, names):
            scratch.sql(statement)
        yield (with_user(empty_database, names["monps_owner"]),
               with_user(empty_database, names["monps_app"]), names)
    finally:
        pg.sql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        for role in (names["monps_app"], names["monps_owner"]):
            pg.sql(f"DROP ROLE IF EXISTS {role}")


def add_migration(directory: Path, name: str, body: str) -> None:
    (directory / f"{name}.py").write_text(
        "def migrate(migrator, database, *, fake=False):\n"
        f"{textwrap.indent(body, '    ')}\n\n"
        "def rollback(migrator, database, *, fake=False):\n    pass\n")


def test_the_application_role_works_with_rows_only_and_migrations_need_the_owner(
        deployment, tmp_path, figures):
    owner_url, app_url, names = deployment
    app_env = {"DATABASE_URL": app_url}
    allowed = 0

    # Migrations as the owner, through MIGRATION_DATABASE_URL.
    migrated = cli("migrate", env=app_env | {"MIGRATION_DATABASE_URL": owner_url}, cwd=tmp_path)
    assert (migrated.returncode, migrated.stdout) == (
        0, "applied 001_initial\napplied 002_column_defaults\napplied 003_partition_odds\n"
    ), migrated.stderr
    owners = Server(owner_url).sql(
        "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname IN ('public', 'quantum')")
    assert owners == [(names["monps_owner"],)]
    for statement in statements(readme_sql()[2], names):  # history out of the app's reach
        Server(owner_url).sql(statement)

    # Rows through the Python API: repository reads and writes, a unit of work.
    monps_store.init_db(url=app_url, pool_size=2)
    try:
        team = crud.create(TeamQuantumDNA, team_name="Lyon", league="L1")
        crud.update(team, roi=Decimal("4.200"))
        assert teams.get_by_name("Lyon").roi == Decimal("4.200")
        with monps_store.unit_of_work(actor="least-privilege", reason="test"):
            crud.create(TeamQuantumDNA, team_name="Nice", league="L1")
            with monps_store.unit_of_work():
                crud.update_where(TeamQuantumDNA, {"league": "Ligue 1"}, league="L1")
        assert crud.count(TeamQuantumDNA, league="Ligue 1") == 2
        crud.create(TrackingCLVPick, agent="a", match_id="m-lp-1", market="1x2",
                    selection="home", bookmaker="bk", odds_taken=Decimal("2.200"),
                    picked_at=datetime(2024, 5, 1, 9, tzinfo=UTC))
        crud.delete(crud.get_by_field(TeamQuantumDNA, "team_name", "Nice")[0])
        allowed += 7
    finally:
        monps_store.close_db()

    # The CLI and a cron job as the application role only (no MIGRATION_DATABASE_URL).
    csv = tmp_path / "odds.csv"
    csv.write_text(CSV)
    job = tmp_path / "job.py"
    job.write_text(JOB)
    ingested = cli("ingest", "odds", str(csv), env=app_env, cwd=tmp_path)
    assert ingested.returncode == 0, ingested.stderr
    assert "2 inserted" in ingested.stdout
    # The month partition the rows needed: made for the application role, owned by the owner.
    (partition, owner), = Server(owner_url).sql(
        "SELECT c.relname, pg_get_userbyid(c.relowner) FROM pg_inherits i JOIN pg_class c "
        "ON c.oid = i.inhrelid WHERE i.inhparent = 'public.odds'::regclass")
    assert owner == names["monps_owner"]
    settled = cli("settle-clv", env=app_env, cwd=tmp_path)
    assert settled.stdout.startswith("settled 1 pick(s)"), settled.stderr
    ran = subprocess.run([sys.executable, str(job)], capture_output=True, text=True,
                         env={"PATH": os.environ.get("PATH", "")} | app_env, timeout=60)
    assert ran.returncode == 0, ran.stderr
    checked = cli("check", env=app_env, cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "drift       none" in checked.stdout
    for command in ("status", "history"):
        result = cli(command, env=app_env, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    allowed += 6
    assert Server(owner_url).sql(
        "SELECT (SELECT count(*) FROM public.odds), (SELECT count(*) FROM quantum.team_quantum_dna"
        " WHERE team_name = 'Brest'), (SELECT status FROM public.tracking_clv_picks)") == [
        (2, 1, "settled")]

    # Every schema change is refused to the application role.
    refused = 0
    app = Server(app_url)
    for statement in (
        "CREATE TABLE public.lp_intruder (x int)",
        "CREATE TABLE quantum.lp_intruder (x int)",
        "ALTER TABLE quantum.team_quantum_dna ADD COLUMN lp_intruder int",
        "ALTER TABLE public.odds DROP CONSTRAINT odds_pkey",
        "CREATE INDEX lp_intruder ON public.odds (league)",
        "DROP TABLE public.odds",
        "DROP TABLE quantum.team_quantum_dna",
        "CREATE SCHEMA lp_intruder",
        "TRUNCATE public.odds",
        f"ALTER TABLE public.odds DETACH PARTITION public.{partition}",
        f"DROP TABLE public.{partition}",
        "TRUNCATE quantum.team_quantum_dna CASCADE",
        "INSERT INTO public.monps_migrations (name, migrated_at) VALUES ('999_fake', now())",
    ):
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            app.sql(statement)
        refused += 1

    # A pending migration, run with the application role alone: exit 1, one line, no change.
    migrate_dir = tmp_path / "migrations"
    shutil.copytree(migrate.default_dir(), migrate_dir,
                    ignore=shutil.ignore_patterns("__pycache__"))
    add_migration(migrate_dir, "004_later_table",
                  'migrator.sql("CREATE TABLE quantum.lp_later (id serial PRIMARY KEY, '
                  'note text NOT NULL)")\n'
                  'migrator.sql("ALTER TABLE team_quantum_dna ADD COLUMN nickname text")')
    before = Server(owner_url).sql("SELECT count(*) FROM pg_class")
    denied = cli("migrate", "--migrate-dir", str(migrate_dir), env=app_env, cwd=tmp_path)
    assert denied.returncode == 1, denied.stdout + denied.stderr
    assert denied.stdout == ""
    lines = denied.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "error: migration 004_later_table failed and was undone: permission denied"), lines
    assert "MIGRATION_DATABASE_URL" in lines[0]  # says how to fix it
    assert Server(owner_url).sql("SELECT count(*) FROM pg_class") == before
    assert Server(owner_url).sql("SELECT name FROM public.monps_migrations ORDER BY id") == [
        ("001_initial",), ("002_column_defaults",), ("003_partition_odds",)]
    refused += 1

    # The same migration as the owner: the default privileges cover the table it creates.
    later = cli("migrate", "--migrate-dir", str(migrate_dir),
                env=app_env | {"MIGRATION_DATABASE_URL": owner_url}, cwd=tmp_path)
    assert later.stdout == "applied 004_later_table\n", later.stderr
    assert app.sql("INSERT INTO quantum.lp_later (note) VALUES ('a'), ('b') RETURNING id") == [
        (1,), (2,)]
    app.sql("UPDATE quantum.lp_later SET note = 'c' WHERE id = 1")
    app.sql("DELETE FROM quantum.lp_later WHERE id = 2")
    assert app.sql("SELECT id, note FROM quantum.lp_later") == [(1, "c")]
    assert app.sql("SELECT nickname FROM quantum.team_quantum_dna WHERE team_name = 'Lyon'") == [
        (None,)]
    allowed += 5
    with pytest.raises(psycopg2.errors.InsufficientPrivilege):
        app.sql("DROP TABLE quantum.lp_later")
    refused += 1

    # The README's grants for a database migrated before the default privileges: valid SQL.
    for statement in statements(readme_sql()[3], names):
        Server(owner_url).sql(statement)
    figures.add("least privilege", operations_allowed=allowed, schema_changes_refused=refused)
