"""What a new user meets in the first hour: the dev server, the CLI's guidance and exit codes,
messages that name what to do."""

from __future__ import annotations

import builtins
import collections
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import monps_store
from monps_store import cli as cli_module
from monps_store import config, embedded, errors
from monps_store.cli import data as cli_data
from monps_store.migrate import Migrations, default_dir
from monps_store.testing import throwaway_server
from tests.factories import add_odds, add_pick

ROOT = Path(__file__).resolve().parents[1]


def cli(*args, env=None, cwd=None, timeout=120):
    base = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run([sys.executable, "-m", "monps_store", *args], capture_output=True,
                          text=True, env=base | (env or {}), cwd=cwd, timeout=timeout)


# -- the development server ---------------------------------------------------------------------


def test_a_dev_server_started_once_serves_every_command_and_only_stop_ends_it(tmp_path):
    env = {"MONPS_EMBEDDED_DIR": str(tmp_path / "pgdata")}
    try:
        assert cli("embedded", "status", env=env).returncode == 1
        assert cli("embedded", "url", env=env).returncode == 1
        started = cli("embedded", "start", env=env)
        assert started.returncode == 0, started.stderr
        url = started.stdout.strip()
        assert url.startswith("postgresql://") and str(tmp_path) in url
        # Commands that reuse it leave it running (this stopped it before).
        assert cli("--embedded", "migrate", env=env).returncode == 0
        assert cli("--embedded", "status", env=env).returncode == 0
        status = cli("embedded", "status", env=env)
        assert status.returncode == 0 and f"DATABASE_URL={url}" in status.stdout
        assert cli("embedded", "url", env=env).stdout.strip() == url
        again = cli("embedded", "start", env=env)
        assert again.stdout.strip() == url and "already running" in again.stderr
        # The Python API on it, from the URL `url` printed.
        checked = cli("check", env={"DATABASE_URL": url})
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert cli("embedded", "stop", env=env).returncode == 0
        assert cli("embedded", "status", env=env).returncode == 1
        assert "not running" in cli("embedded", "stop", env=env).stdout
    finally:
        embedded.stop(tmp_path / "pgdata")


def test_embedded_url_and_status_say_which_directory_they_looked_in_and_how_to_choose(
        tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    url = cli("embedded", "url", cwd=elsewhere)  # not where the server was started
    assert url.returncode == 1 and url.stdout == ""
    status = cli("embedded", "status", cwd=elsewhere)
    assert status.returncode == 1
    for said in (url.stderr, status.stdout):
        assert str(elsewhere / ".monps" / "pgdata") in said
        assert "working directory" in said and "MONPS_EMBEDDED_DIR" in said
    chosen = cli("embedded", "url", cwd=elsewhere,
                 env={"MONPS_EMBEDDED_DIR": str(tmp_path / "dev")})
    assert f"{tmp_path / 'dev'} (from MONPS_EMBEDDED_DIR)" in chosen.stderr


def test_an_empty_database_url_in_the_environment_is_reported_as_empty():
    # `export DATABASE_URL=$(monps-store embedded url)` where no server runs sets it empty.
    result = cli("check", env={"DATABASE_URL": ""})
    assert result.returncode == 2
    assert "  - DATABASE_URL: set but empty in the environment" in result.stderr
    assert "DB_USER" not in result.stderr and "DB_NAME" not in result.stderr
    with pytest.raises(errors.ConfigError, match="DATABASE_URL: set but empty") as caught:
        config.load_settings({"DATABASE_URL": " ", "DB_USER": "u"}, env_file=None)
    assert caught.value.problems == [caught.value.problems[0]]  # only that one
    # With complete DB_* variables to fall back on, a blank URL is "not set", as before.
    assert config.load_settings({"DATABASE_URL": " ", "DB_USER": "u", "DB_PASSWORD": "pw",
                                 "DB_NAME": "n"}, env_file=None).source == "DB_*"


def test_a_blank_database_url_in_a_dotenv_copied_from_the_example_counts_as_unset(tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text(cli("env-example").stdout)
    settings = config.load_settings({}, env_file=str(dotenv))
    assert settings.source == "DB_*" and settings.user == "monps_app"


def test_env_example_prints_the_shipped_example_with_every_variable_the_settings_read():
    printed = cli("env-example")
    assert printed.returncode == 0, printed.stderr
    # One text: the repository's .env.example is the one the package ships.
    assert printed.stdout == (ROOT / ".env.example").read_text(encoding="utf-8")

    class Recording(dict):
        def get(self, key, default=None):
            asked.add(key)
            return super().get(key, default)

    asked: set[str] = set()
    with pytest.raises(errors.ConfigError):
        config.load_settings(Recording(), env_file=None)
    assert "DB_POOL_SIZE" in asked and "DATABASE_URL" in asked  # really recorded
    listed = {line.lstrip("# ").split("=", 1)[0] for line in printed.stdout.splitlines()
              if "=" in line}
    assert sorted(asked - listed) == []


def test_the_harness_stops_its_server_even_after_a_restart_moved_the_postmaster(tmp_path):
    from pgserver._commands import pg_ctl

    with throwaway_server("monps-restart-") as srv:
        pgdata = Path(srv.pgdata)
        user = "pgserver" if os.geteuid() == 0 else None
        pg_ctl(["-w", "-m", "fast", "-l", str(pgdata / "log"), "restart"], pgdata=pgdata,
               user=user, timeout=60)
        assert embedded.status(pgdata) is not None
    assert not pgdata.exists()  # stopped, then deleted (pgserver alone left it running)


def test_on_a_python_without_pgserver_builds_the_error_says_so(monkeypatch):
    real_import = builtins.__import__

    def no_pgserver(name, *args, **kwargs):
        if name == "pgserver":
            raise ImportError("No module named 'pgserver'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pgserver)
    version = collections.namedtuple("version_info", "major minor micro releaselevel serial")
    monkeypatch.setattr(sys, "version_info", version(3, 13, 0, "final", 0))
    with pytest.raises(errors.EmbeddedUnavailable, match="no build for Python 3.13") as raised:
        embedded.load_pgserver()
    assert "pip install" not in str(raised.value)


# -- migrations --------------------------------------------------------------------------------


def test_create_refuses_to_write_into_an_installed_package(pg, tables, tmp_path):
    installed = tmp_path / "lib" / "site-packages" / "monps_store" / "migrations"
    shutil.copytree(default_dir(), installed)
    with Migrations.open(config.from_url(pg.url), installed, lock=False) as migrations:
        with pytest.raises(errors.MigrationError, match="installed package"):
            migrations.create("add_column")
    assert sorted(p.name for p in installed.glob("*.py")) == sorted(
        p.name for p in default_dir().glob("*.py"))


def test_status_names_an_applied_migration_whose_file_is_gone(pg, tables, tmp_path):
    partial = tmp_path / "migrations"
    shutil.copytree(default_dir(), partial)
    (last,) = sorted(partial.glob("0*.py"))[-1:]
    last.unlink()
    result = cli("status", "--migrate-dir", str(partial), env={"DATABASE_URL": pg.url})
    assert result.returncode == 1
    assert f"{last.stem}" in result.stdout and "(its file is missing)" in result.stdout
    assert "have no file in" in result.stderr


def test_create_auto_with_no_changes_says_so_once(pg, tables, tmp_path):
    directory = tmp_path / "migrations"
    shutil.copytree(default_dir(), directory)
    result = cli("create", "nothing", "--auto", "--migrate-dir", str(directory),
                 env={"DATABASE_URL": pg.url})
    assert result.returncode == 0, result.stderr
    said = (result.stdout + result.stderr).lower()
    assert said.count("no changes found") == 1, said


def test_migrate_sql_with_nothing_pending_says_so(pg, tables):
    result = cli("migrate", "--sql", env={"DATABASE_URL": pg.url})
    assert result.returncode == 0
    assert result.stdout == "-- nothing to migrate: the database is up to date\n"


def test_an_empty_database_points_at_migrate(empty_database, tmp_path):
    checked = cli("check", env={"DATABASE_URL": empty_database})
    assert checked.returncode == 1
    assert "hint        run `monps-store migrate` to create the missing tables" in checked.stdout
    csv = tmp_path / "odds.csv"
    csv.write_text("match_id,league,home_team,away_team,bookmaker,market,selection,price,"
                   "commence_time,collected_at\nm1,L,A,B,b,1x2,home,2.0,2026-12-01T20:00:00Z,"
                   "2026-12-01T19:00:00Z\n")
    ingested = cli("ingest", "odds", str(csv), env={"DATABASE_URL": empty_database})
    assert ingested.returncode == 1
    assert "monps-store migrate" in ingested.stderr and "Traceback" not in ingested.stderr


# -- the command line's guidance ---------------------------------------------------------------


def test_usage_errors_exit_2_with_a_hint_and_version_is_there():
    bare = cli()
    assert bare.returncode == 2 and "Commands:" in bare.stderr and "error:" not in bare.stderr
    zero = cli("rollback", "--count", "0")
    assert zero.returncode == 2
    assert "Try 'monps-store rollback -h' for help." in zero.stderr
    late = cli("check", "-v")
    assert late.returncode == 2
    assert "put it before the command" in late.stderr
    assert cli("status", "--lock-timeout", "3").returncode == 2  # status takes no lock
    version = cli("--version")
    assert version.returncode == 0 and version.stdout.strip() == (
        f"monps-store {monps_store.__version__}")


def test_verbose_output_leaves_out_the_embedded_servers_narration(tmp_path):
    env = {"MONPS_EMBEDDED_DIR": str(tmp_path / "pgdata")}
    try:
        result = cli("-v", "--embedded", "status", env=env)
        assert result.returncode == 1, result.stderr  # nothing migrated yet
        assert "pgserver" not in result.stderr, result.stderr
        assert "INFO monps_store" in result.stderr
    finally:
        embedded.stop(tmp_path / "pgdata")


def test_no_help_text_points_at_a_file_outside_the_package():
    assert "CONTRACT.md" not in cli("ingest", "odds", "--help").stdout
    for path in (ROOT / "monps_store").rglob("*.py"):
        assert "CONTRACT.md" not in path.read_text(encoding="utf-8"), path


def test_skip_invalid_without_rejects_still_tells_why_rows_were_rejected(pg, db, tmp_path):
    header = ("match_id,league,home_team,away_team,bookmaker,market,selection,price,"
              "commence_time,collected_at\n")
    good = "m1,L,A,B,b,1x2,home,2.0,2026-12-01T20:00:00Z,2026-12-01T19:00:00Z\n"
    bad = [f"m{n},L,A,B,b,1x2,home,0.5,2026-12-01T20:00:00Z,2026-12-01T19:00:00Z\n"
           for n in range(25)]
    csv = tmp_path / "odds.csv"
    csv.write_text(header + good + "".join(bad))
    result = cli("ingest", "odds", str(csv), "--skip-invalid", env={"DATABASE_URL": pg.url})
    assert result.returncode == 0, result.stderr
    assert "rejected line 3, column price: must be greater than 1 (value '0.5')" in result.stderr
    assert result.stderr.count("rejected line") == 20
    assert "... and 5 more rejected rows" in result.stderr
    assert "25 rejected" in result.stdout


def test_an_unknown_reference_bookmaker_is_refused_naming_the_known_ones(pg, db):
    import datetime

    kick_off = datetime.datetime(2026, 11, 28, 20, tzinfo=datetime.UTC)
    add_odds(match_id="m1", bookmaker="pinnacle", commence_time=kick_off,
             collected_at=kick_off - datetime.timedelta(hours=1))
    add_pick(match_id="m1", bookmaker="pinnacle", picked_at=kick_off - datetime.timedelta(hours=5))
    result = cli("settle-clv", "--reference-bookmaker", "pinacle", env={"DATABASE_URL": pg.url})
    assert result.returncode == 1
    assert "'pinacle': no odds from it" in result.stderr and "pinnacle" in result.stderr
    assert pg.sql("SELECT status FROM public.tracking_clv_picks") == [("open",)]
    ok = cli("settle-clv", "--reference-bookmaker", "pinnacle", env={"DATABASE_URL": pg.url})
    assert ok.returncode == 0 and "settled 1 pick" in ok.stdout


def test_progress_off_a_terminal_is_a_line_every_interval(capsys, monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    tell = cli_data.progress("ingest odds.csv", every=0)
    tell(20_000)
    tell(40_000)
    assert capsys.readouterr().err.splitlines() == [
        "ingest odds.csv: 20,000 rows so far", "ingest odds.csv: 40,000 rows so far"]
    quiet = cli_data.progress("ingest odds.csv", every=3600)
    quiet(20_000)
    assert capsys.readouterr().err == ""


def test_the_demos_counter_line_is_ended_before_anything_else_is_printed(pg, db, monkeypatch):
    import click

    written = []  # (stream, text, newline) in the order the terminal would show them
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    monkeypatch.setattr(click, "echo", lambda message="", err=False, nl=True, **_: written.append(
        ("err" if err else "out", str(message), nl)))
    monkeypatch.setenv("DATABASE_URL", pg.url)
    assert cli_module.main(["demo", "--scale", "0.002"]) == 0
    counters = [i for i, (stream, text, nl) in enumerate(written) if text.startswith("\r")]
    assert counters, written  # the live counter was shown
    for i in counters:
        following = written[i + 1]
        # Either the counter again, or the end of its line: never text glued onto it.
        assert following[1].startswith("\r") or following == ("err", "", True), following
