"""The migration commands, run as real processes against a fresh database each."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from decimal import Decimal

import psycopg2
import pytest

from monps_store import config, migrate
from tests.conftest import Server

SHIPPED = migrate.default_dir()
SHIPPED_NAMES = ["001_initial", "002_column_defaults", "003_partition_odds"]
APPLIED_ALL = "".join(f"applied {name}\n" for name in SHIPPED_NAMES)
STAMPED_ALL = "".join(f"stamped {name}\n" for name in SHIPPED_NAMES)

# Changes the models in both schemas before running the CLI (used by the --auto test).
CHANGED_MODELS = textwrap.dedent("""
    import sys, peewee
    from monps_store.models import Odds, TeamQuantumDNA
    TeamQuantumDNA._meta.add_field("nickname", peewee.TextField(null=True))
    Odds._meta.add_field("margin", peewee.DecimalField(max_digits=6, decimal_places=3, null=True))
    from monps_store.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def run(url, *args, code=None, env=None):
    """The CLI in a fresh process, started outside the repository: the migrations must be
    found without relying on the working directory."""
    base = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"),
            "DATABASE_URL": url}
    command = [sys.executable, "-c", code, *args] if code else [
        sys.executable, "-m", "monps_store", *args]
    return subprocess.run(command, capture_output=True, text=True, env=base | (env or {}),
                          timeout=180, cwd=tempfile.gettempdir())


def query(url, sql, params=()):
    return Server(url).sql(sql, params)


def project_objects(url):
    return query(url, """
        SELECT nspname, NULL FROM pg_namespace WHERE nspname = 'quantum'
        UNION ALL
        SELECT table_schema, table_name FROM information_schema.tables
        WHERE table_schema IN ('public', 'quantum') ORDER BY 1, 2""")


def history(url):
    return [name for (name,) in query(url, "SELECT name FROM public.monps_migrations ORDER BY id")]


@pytest.fixture
def migrate_dir(tmp_path):
    """A copy of the shipped migrations that a test may add to."""
    directory = tmp_path / "migrations"
    shutil.copytree(SHIPPED, directory, ignore=shutil.ignore_patterns("__pycache__"))
    return directory


def add_migration(directory, name, migrate_body, rollback_body="pass"):
    (directory / f"{name}.py").write_text(
        "def migrate(migrator, database, *, fake=False):\n"
        f"{textwrap.indent(migrate_body, '    ')}\n\n"
        "def rollback(migrator, database, *, fake=False):\n"
        f"{textwrap.indent(rollback_body, '    ')}\n")


def test_migrate_builds_the_schema_and_check_then_finds_no_drift(empty_database):
    result = run(empty_database, "migrate")
    assert (result.returncode, result.stdout) == (0, APPLIED_ALL), result.stderr
    report = run(empty_database, "check", "--json")
    assert report.returncode == 0, report.stdout
    assert json.loads(report.stdout)["drift"] == []
    again = run(empty_database, "migrate")
    assert again.stdout == "nothing to migrate: the database is up to date\n"


def test_migration_commands_use_migration_database_url_when_set(pg, empty_database):
    # The application URL points at the shared test database; the migration URL at the new one.
    result = run(pg.url, "migrate", env={"MIGRATION_DATABASE_URL": empty_database})
    assert result.stdout == APPLIED_ALL, result.stderr
    assert history(empty_database) == SHIPPED_NAMES
    assert run(pg.url, "status", env={"MIGRATION_DATABASE_URL": empty_database}).returncode == 0


def test_status_exits_one_while_a_migration_is_pending_and_writes_nothing(empty_database):
    result = run(empty_database, "status")
    assert result.returncode == 1
    assert result.stdout.splitlines() == ["pending  001_initial", "pending  002_column_defaults",
                                          "pending  003_partition_odds", "0 applied, 3 pending"]
    assert project_objects(empty_database) == []
    run(empty_database, "migrate")
    result = run(empty_database, "status")
    assert result.returncode == 0
    assert result.stdout.startswith("applied  001_initial  ")
    assert run(empty_database, "history").stdout.strip().endswith("003_partition_odds")


def test_rolling_everything_back_leaves_no_project_object(empty_database):
    run(empty_database, "migrate")
    assert len(project_objects(empty_database)) == 9  # quantum, 7 tables, the history
    result = run(empty_database, "rollback", "--count", "3")
    assert (result.returncode, result.stdout) == (
        0, "rolled back 003_partition_odds\nrolled back 002_column_defaults\n"
           "rolled back 001_initial\n"), result.stderr
    assert project_objects(empty_database) == []
    too_many = run(empty_database, "rollback")
    assert too_many.returncode == 1
    assert too_many.stderr == "error: cannot roll back 1 migration(s): only 0 applied\n"


def test_migrate_sql_prints_the_statements_and_changes_nothing(empty_database):
    result = run(empty_database, "migrate", "--sql")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:4] == ["-- 001_initial", "BEGIN;", "SET LOCAL search_path TO quantum, public;",
                         'CREATE SCHEMA IF NOT EXISTS "quantum";']
    assert any(line.startswith('CREATE TABLE IF NOT EXISTS "quantum"."team_quantum_dna"')
               for line in lines)
    assert lines[-1] == "COMMIT;"
    assert project_objects(empty_database) == []
    assert run(empty_database, "status").returncode == 1


def test_migrate_to_stops_after_the_named_migration(empty_database, migrate_dir):
    add_migration(migrate_dir, "004_team_nickname",
                  'migrator.sql("ALTER TABLE team_quantum_dna ADD COLUMN nickname text")',
                  'migrator.sql("ALTER TABLE team_quantum_dna DROP COLUMN nickname")')
    unknown = run(empty_database, "migrate", "--to", "009_nope", "--migrate-dir", str(migrate_dir))
    assert unknown.returncode == 1
    assert unknown.stderr == ("error: no migration named '009_nope'; available: 001_initial, "
                              "002_column_defaults, 003_partition_odds, 004_team_nickname\n")
    first = run(empty_database, "migrate", "--to", "001_initial", "--migrate-dir", str(migrate_dir))
    assert first.stdout == "applied 001_initial\n", first.stderr
    rest = run(empty_database, "migrate", "--migrate-dir", str(migrate_dir))
    assert rest.stdout == ("applied 002_column_defaults\napplied 003_partition_odds\n"
                           "applied 004_team_nickname\n"), rest.stderr
    # The unqualified ALTER found the quantum table through the migration's search_path.
    assert query(empty_database, "SELECT column_name FROM information_schema.columns WHERE "
                 "table_schema = 'quantum' AND column_name = 'nickname'") == [("nickname",)]
    assert history(empty_database) == [*SHIPPED_NAMES, "004_team_nickname"]


def test_a_failing_migration_leaves_no_change_and_no_history_row(empty_database, migrate_dir):
    add_migration(migrate_dir, "004_broken",
                  'migrator.sql("CREATE TABLE quantum.half_done (x int)")\n'
                  'migrator.sql("ALTER TABLE quantum.no_such_table ADD COLUMN y int")')
    result = run(empty_database, "migrate", "--migrate-dir", str(migrate_dir))
    assert result.returncode == 1
    assert result.stdout == APPLIED_ALL
    assert result.stderr == ("error: migration 004_broken failed and was undone: relation "
                             '"quantum.no_such_table" does not exist\n')
    assert query(empty_database, "SELECT to_regclass('quantum.half_done')") == [(None,)]
    assert history(empty_database) == SHIPPED_NAMES


def test_two_migrate_runs_at_once_apply_each_migration_exactly_once(empty_database, migrate_dir):
    add_migration(migrate_dir, "004_slow", 'migrator.sql("SELECT pg_sleep(2)")')
    env = {"PATH": os.environ.get("PATH", ""), "DATABASE_URL": empty_database}
    command = [sys.executable, "-m", "monps_store", "migrate", "--migrate-dir", str(migrate_dir)]
    runs = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True) for _ in range(2)]
    outputs = [process.communicate(timeout=120) for process in runs]
    assert [process.returncode for process in runs] == [0, 0], outputs
    stdouts = sorted(out for out, _ in outputs)
    assert stdouts == [APPLIED_ALL + "applied 004_slow\n",
                       "nothing to migrate: the database is up to date\n"]
    waited = [err for _, err in outputs if "holds the lock; waiting" in err]
    assert len(waited) == 1
    assert history(empty_database) == [*SHIPPED_NAMES, "004_slow"]


def test_migrate_exits_75_when_another_run_keeps_the_lock(empty_database):
    holder = psycopg2.connect(**config.from_url(empty_database).connect_params())
    holder.autocommit = True
    try:
        holder.cursor().execute("SELECT pg_advisory_lock(%s)", (migrate.LOCK_KEY,))
        result = run(empty_database, "migrate", "--lock-timeout", "0.5")
    finally:
        holder.close()
    assert result.returncode == 75
    assert result.stderr.splitlines()[-1] == (
        "error: another migration run still holds the lock after 0.5s; nothing done")
    assert project_objects(empty_database) == []


def build_without_migrations(url):
    """The schema as a database that predates monps_store's migrations would have it."""
    code = ("import monps_store; from monps_store import schema; "
            f"monps_store.init_db(url={url!r}); schema.create_all()")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_stamp_records_the_migrations_on_a_matching_existing_schema(empty_database):
    build_without_migrations(empty_database)
    assert run(empty_database, "status").returncode == 1
    result = run(empty_database, "stamp")
    assert (result.returncode, result.stdout) == (0, STAMPED_ALL), result.stderr
    assert run(empty_database, "status").returncode == 0
    assert run(empty_database, "migrate").stdout.startswith("nothing to migrate")


def test_stamp_refuses_a_differing_schema_and_lists_the_differences(empty_database):
    build_without_migrations(empty_database)
    query(empty_database, "ALTER TABLE quantum.team_quantum_dna DROP COLUMN luck_dna")
    query(empty_database, "ALTER TABLE public.odds ALTER COLUMN league DROP NOT NULL")
    result = run(empty_database, "stamp")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "error: refusing to stamp: the database does not match the models (fix it, or pass "
        "--force)",
        "  - public.odds: column league nullability is NOT NULL in the models, NULL in the "
        "database",
        "  - quantum.team_quantum_dna: column luck_dna is in the models but missing from the "
        "database",
    ]
    assert query(empty_database, "SELECT to_regclass('public.monps_migrations')") == [(None,)]
    forced = run(empty_database, "stamp", "--force")
    assert forced.stdout == STAMPED_ALL
    assert history(empty_database) == SHIPPED_NAMES


def test_reset_refuses_without_yes_and_rebuilds_with_it(empty_database):
    run(empty_database, "migrate")
    query(empty_database, "INSERT INTO quantum.team_quantum_dna (team_name, league, "
          "matches_played, total_bets, win_rate, roi, total_pnl) VALUES ('X', 'L', 0, 0, 0, 0, 0)")
    refused = run(empty_database, "reset")
    assert refused.returncode == 2
    assert query(empty_database, "SELECT count(*) FROM quantum.team_quantum_dna") == [(1,)]
    result = run(empty_database, "reset", "--yes")
    assert result.stdout == "rolled back 3, applied 3 migration(s)\n", result.stderr
    assert query(empty_database, "SELECT count(*) FROM quantum.team_quantum_dna") == [(0,)]


def test_create_auto_covers_both_schemas_and_its_migration_applies_and_rolls_back(
        empty_database, migrate_dir):
    assert run(empty_database, "migrate", "--migrate-dir", str(migrate_dir)).returncode == 0
    created = run(empty_database, "create", "add_nickname_and_margin", "--auto",
                  "--migrate-dir", str(migrate_dir), code=CHANGED_MODELS)
    assert created.returncode == 0, created.stderr
    path = migrate_dir / "004_add_nickname_and_margin.py"
    assert created.stdout == f"created {path}\n"
    text = path.read_text()
    assert "nickname" in text and "margin" in text
    assert "migrator.change_fields('odds'" not in text  # its partitioned id is no change

    applied = run(empty_database, "migrate", "--migrate-dir", str(migrate_dir))
    assert applied.stdout == "applied 004_add_nickname_and_margin\n", applied.stderr
    changed = run(empty_database, "check", "--json", code=CHANGED_MODELS)
    assert json.loads(changed.stdout)["drift"] == [], changed.stdout
    assert run(empty_database, "check").returncode == 1  # the unchanged models now differ

    rolled = run(empty_database, "rollback", "--migrate-dir", str(migrate_dir))
    assert rolled.stdout == "rolled back 004_add_nickname_and_margin\n", rolled.stderr
    assert json.loads(run(empty_database, "check", "--json").stdout)["drift"] == []


def test_create_without_auto_writes_an_empty_migration(empty_database, migrate_dir):
    result = run(empty_database, "create", "backfill", "--migrate-dir", str(migrate_dir))
    assert result.stdout == f"created {migrate_dir / '004_backfill.py'}\n", result.stderr
    assert run(empty_database, "create", "Bad Name", "--migrate-dir",
               str(migrate_dir)).stderr.startswith("error: migration name 'Bad Name' must be")


def test_create_auto_without_model_changes_writes_no_migration(empty_database, migrate_dir):
    # peewee-migrate diffs the models against 001_initial's frozen ones; it compares neither
    # SQL defaults nor constraints, so 002's defaults are no change to it.
    assert run(empty_database, "migrate", "--migrate-dir", str(migrate_dir)).returncode == 0
    result = run(empty_database, "create", "nothing", "--auto", "--migrate-dir", str(migrate_dir))
    assert result.stdout == "no changes found: no migration written\n", result.stderr
    assert sorted(path.stem for path in migrate_dir.glob("0*.py")) == SHIPPED_NAMES


def drift(url):
    result = run(url, "check", "--json")
    return json.loads(result.stdout)["drift"]


# What check reports while 002_column_defaults is rolled back, as PostgreSQL renders defaults.
WITHOUT_COLUMN_DEFAULTS = [
    f"{table}: column {column} default is {default} in the models, None in the database"
    for table, columns in (
        ("public.tracking_clv_picks", [("stake", "1")]),
        ("quantum.chess_classifications", [("description", "''::text")]),
        ("quantum.team_quantum_dna", [(c, "0") for c in (
            "matches_played", "roi", "total_bets", "total_pnl", "win_rate")]),
        ("quantum.quantum_friction_matrix", [("matches_analyzed", "0")]),
        ("quantum.goalscorer_profiles", [(c, "0") for c in (
            "assists", "expected_goals", "goals", "minutes_played", "penalty_goals", "shots")]),
    )
    for column, default in columns
]


# What check reports while 003_partition_odds is rolled back.
UNPARTITIONED_ODDS = [
    "public.odds: index PRIMARY KEY (id, collected_at) is in the models but missing from the "
    "database",
    "public.odds: index PRIMARY KEY (id) is in the database but not in the models",
    "public.odds: partitioning is RANGE (collected_at) in the models, none in the database",
]


def test_the_column_defaults_migration_rolls_back_to_drift_and_applies_again_without_it(
        empty_database):
    assert run(empty_database, "migrate").stdout == APPLIED_ALL
    assert drift(empty_database) == []
    insert = ("INSERT INTO quantum.team_quantum_dna (team_name, league) VALUES (%s, 'L1') "
              "RETURNING matches_played, win_rate, total_pnl")
    assert query(empty_database, insert, ("Brest",)) == [(0, Decimal("0.00"), Decimal("0.00"))]

    rolled = run(empty_database, "rollback", "--count", "2")
    assert rolled.stdout == ("rolled back 003_partition_odds\nrolled back 002_column_defaults\n"
                             ), rolled.stderr
    assert sorted(drift(empty_database)) == sorted(WITHOUT_COLUMN_DEFAULTS + UNPARTITIONED_ODDS)
    with pytest.raises(psycopg2.errors.NotNullViolation, match="matches_played"):
        query(empty_database, insert, ("Lens",))

    again = run(empty_database, "migrate")
    assert again.stdout == "applied 002_column_defaults\napplied 003_partition_odds\n", again.stderr
    assert drift(empty_database) == []
    assert query(empty_database, insert, ("Lens",)) == [(0, Decimal("0.00"), Decimal("0.00"))]
