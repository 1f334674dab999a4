"""Secrets: a canary password, put wherever a password can be configured, never comes out.

The canary carries a random token, so its raw, percent-encoded, ``repr`` and JSON forms can all be
searched for. It is placed in ``DATABASE_URL`` (percent-encoded userinfo and ``?password=``), in
``DB_PASSWORD`` with the ``DB_*`` parts, in ``MIGRATION_DATABASE_URL`` and in a ``.env`` file;
then the CLI runs as real processes (logs at DEBUG, SQL echo on) and the Python API runs with
logging captured at DEBUG, through every error path that can be provoked. Searched: stdout,
stderr, log records (with their tracebacks), exception ``str``/``repr``/traceback text,
``repr(settings)``, ``pool_status()``, ``check --json``.

The shared test server trusts local connections, so a password sent to it is ignored. A wrong
password is provoked on a throwaway server of this module's own whose ``pg_hba.conf`` requires
``scram-sha-256`` for one role (the shared server's configuration is never touched).
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import os
import re
import secrets
import shutil
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from urllib.parse import quote, quote_plus

import psycopg2
import pytest

import monps_store
from monps_store import config, errors, migrate
from tests.conftest import throwaway_server

TOKEN = "cnry" + secrets.token_hex(6)
# Characters a URL must percent-encode, so the encoded form differs from the raw one.
PASSWORD = f"{TOKEN}-p@ss:w/rd?#%&=+"
# For .env files: quotes, '#', '$' and spaces, each of which a parser may mangle.
WEIRD = f"{TOKEN} \"dq\" 'sq' #hash $dollar end"

GOOD_CSV = (
    "match_id,league,home_team,away_team,bookmaker,market,selection,price,commence_time,"
    "collected_at\n"
    "m-secrets-1,L1,Lyon,Nice,bk,1x2,home,2.100,2024-05-01T19:00:00Z,2024-05-01T10:00:00Z\n"
    "m-secrets-1,L1,Lyon,Nice,bk,1x2,away,3.400,2024-05-01T19:00:00Z,2024-05-01T10:00:00Z\n"
)
BAD_CSV = GOOD_CSV.replace("3.400", "1.0")


def forms(password: str) -> set[str]:
    """Every way the password could show up in text."""
    return {password, quote(password, safe=""), quote_plus(password), repr(password)[1:-1],
            json.dumps(password)[1:-1], TOKEN}


FORMS = forms(PASSWORD) | forms(WEIRD)


class Scanner:
    """Collects every text searched for the canary, so the test can count them."""

    def __init__(self):
        self.outputs = 0
        self.leaks: list[str] = []

    def __call__(self, where: str, text: str) -> str:
        self.outputs += 1
        found = sorted(form for form in FORMS if form in text)
        if found:
            self.leaks.append(f"{where}: {found} in {text!r}")
        return text

    def exception(self, where: str, exc: BaseException) -> None:
        for label, text in (("str", str(exc)), ("repr", repr(exc)),
                            ("traceback", "".join(traceback.format_exception(exc)))):
            self(f"{where} {label}", text)

    def records(self, where: str, records) -> None:
        formatter = logging.Formatter("%(levelname)s %(name)s: %(message)s")
        for record in records:
            self(f"{where} log {record.name}", formatter.format(record))


def cli(*args, env=None, cwd, timeout=120):
    base = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run([sys.executable, "-m", "monps_store", *args], capture_output=True,
                          text=True, env=base | (env or {}), cwd=cwd, timeout=timeout)


def in_parallel(calls, workers=3):
    """Run ``(fn, args, kwargs)`` calls on a few threads; results in order."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(fn, *args, **kwargs) for fn, args, kwargs in calls]
        return [future.result() for future in futures]


LOG_LINE = re.compile(r"(DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: ")


def one_error_line(result) -> str:
    """The single ``error: ...`` line of a failed command: no traceback, and nothing else but
    log lines (the CLI shows WARNING and above)."""
    lines = result.stderr.splitlines()
    assert "Traceback" not in result.stderr, result.stderr
    errors_ = [line for line in lines if line.startswith("error: ")]
    assert len(errors_) == 1, result.stderr
    assert all(LOG_LINE.match(line) for line in lines if line not in errors_), result.stderr
    return errors_[0]


def url_for(pg_url: str, *, user=None, password=None, database=None, query_password=None):
    """The test server's URL with another user, password (percent-encoded) or database."""
    settings = config.from_url(pg_url)
    auth = quote(user or settings.user, safe="")
    if password is not None:
        auth += ":" + quote(password, safe="")
    query = f"host={quote(settings.host, safe='/')}&port={settings.port}"
    if query_password is not None:
        query += "&password=" + quote_plus(query_password)
    return f"postgresql://{auth}@/{database or settings.database}?{query}"


def dotenv_quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parts_env(pg_url: str, password: str) -> dict:
    settings = config.from_url(pg_url)
    return {"DB_HOST": settings.host, "DB_PORT": str(settings.port), "DB_USER": settings.user,
            "DB_NAME": settings.database, "DB_PASSWORD": password}


@pytest.fixture
def workdirs(tmp_path):
    """A working directory per placement (a .env is read from the working directory) and the
    CSV files."""
    good, bad = tmp_path / "good.csv", tmp_path / "bad.csv"
    good.write_text(GOOD_CSV)
    bad.write_text(BAD_CSV)

    def make(name, dotenv=None):
        directory = tmp_path / name
        directory.mkdir()
        if dotenv is not None:
            (directory / ".env").write_text(dotenv)
        return directory

    return make, good, bad


# -- the CLI, every command, every placement ---------------------------------------------------


def test_no_cli_command_shows_the_password_wherever_it_is_configured(pg, db, workdirs, figures):
    make, good, bad = workdirs
    scan = Scanner()
    placements = {
        "DATABASE_URL userinfo": (make("url"), {"DATABASE_URL": url_for(pg.url,
                                                                        password=PASSWORD)}),
        "DATABASE_URL ?password=": (make("query"), {
            "DATABASE_URL": url_for(pg.url, query_password=PASSWORD)}),
        "DB_PASSWORD": (make("parts"), parts_env(pg.url, PASSWORD)),
        "MIGRATION_DATABASE_URL": (make("migration"), {
            "DATABASE_URL": pg.url, "MIGRATION_DATABASE_URL": url_for(pg.url,
                                                                      password=PASSWORD)}),
        "DATABASE_LISTEN_URL": (make("listen"), {
            "DATABASE_URL": pg.url, "DATABASE_LISTEN_URL": url_for(pg.url, password=PASSWORD)}),
        ".env DATABASE_URL": (make("dotenv_url", "DATABASE_URL="
                                   + url_for(pg.url, password=PASSWORD) + "\n"), {}),
        ".env DB_PASSWORD quoted": (make("dotenv_parts", "".join(
            f"{k}={dotenv_quoted(v)}\n" for k, v in parts_env(pg.url, WEIRD).items())), {}),
    }
    commands = [
        (["check"], 0), (["check", "--json"], 0), (["status"], 0), (["history"], 0),
        (["migrate", "--sql"], 0), (["migrate"], 0), (["stamp"], 0),
        (["ingest", "odds", str(good)], 0), (["ingest", "odds", str(bad)], 1),
        (["settle-clv"], 0), (["listen", "demo_changed", "--timeout", "0.3"], 0),
    ]
    calls, labels = [], []
    for name, (cwd, env) in placements.items():
        for args, code in commands:
            verbosity = [] if args == ["check"] else ["-vv"]
            calls.append((cli, [*verbosity, *args], {"env": env | {"DB_ECHO": "true"},
                                                      "cwd": cwd}))
            labels.append((name, args, code, bool(verbosity)))
    results = in_parallel(calls)

    for (name, args, code, verbose), result in zip(labels, results, strict=True):
        where = f"{name} {' '.join(args)}"
        assert result.returncode == code, (where, result.stdout, result.stderr)
        scan(f"{where} stdout", result.stdout)
        scan(f"{where} stderr", result.stderr)
        if args == ["check", "--json"]:
            report = json.loads(result.stdout)
            assert report["ok"] is True
            masked = report["settings"]["migration_url" if name.startswith("MIGRATION")
                                        else "listen_url" if name.startswith("DATABASE_LISTEN")
                                        else "password"]
            assert masked == "***", where
        if verbose and args[0] == "check":
            assert "DEBUG peewee:" in result.stderr  # the logs really were at DEBUG
    assert scan.leaks == []
    figures.add("secrets", commands_run=len(results), outputs_scanned=scan.outputs,
                leaks=len(scan.leaks))


# -- the CLI's error paths -------------------------------------------------------------------


def _error_cases(pg_url: str, refused: str) -> list[tuple[str, list, dict, int, str]]:
    """(label, args, env, exit code, text the error line must contain)."""
    settings = config.from_url(pg_url)
    fast = {"DB_CONNECT_TIMEOUT": "2"}
    return [
        ("several configuration errors", ["check"],
         {"DB_USER": "app", "DB_PASSWORD": PASSWORD, "DB_PORT": "abc", "DB_POOL_SIZE": "zero"},
         2, "invalid configuration"),
        ("bad URLs", ["migrate"],
         {"DATABASE_URL": f"postgresql://app:{quote(PASSWORD, safe='')}@h:99999/db",
          "MIGRATION_DATABASE_URL": f"mysql://app:{quote(PASSWORD, safe='')}@h/db"},
         2, "invalid configuration"),
        ("URL without //", ["check"],
         {"DATABASE_URL": f"postgresql:app:{quote(PASSWORD, safe='')}@localhost/db"},
         2, "invalid configuration"),
        ("connection refused", ["check"], {"DATABASE_URL": refused} | fast, 1,
         "Connection refused"),
        ("connection refused, migrate", ["migrate"], {"DATABASE_URL": refused} | fast, 1,
         "Connection refused"),
        ("connection refused, ingest", ["ingest", "odds", "/nonexistent.csv"],
         {"DATABASE_URL": refused} | fast, 1, "Connection refused"),
        ("connection refused, settle-clv", ["settle-clv"],
         {"DB_HOST": "127.0.0.1", "DB_PORT": "1", "DB_USER": "app", "DB_NAME": "x",
          "DB_PASSWORD": PASSWORD} | fast, 1, "Connection refused"),
        ("no server at that socket", ["check"],
         {"DATABASE_URL": f"postgresql://app:{quote(PASSWORD, safe='')}@/db"
                          "?host=/nonexistent-socket-dir"}, 1, "No such file or directory"),
        ("wrong database name", ["check"],
         {"DATABASE_URL": url_for(pg_url, password=PASSWORD, database="no_such_db_x")}, 1,
         'database "no_such_db_x" does not exist'),
        ("wrong database name, migration URL", ["status"],
         {"DATABASE_URL": pg_url, "MIGRATION_DATABASE_URL": url_for(
             pg_url, password=PASSWORD, database="no_such_db_x")}, 1,
         'database "no_such_db_x" does not exist'),
        ("wrong user", ["check"],
         {"DATABASE_URL": url_for(pg_url, user="no_such_role_x", password=PASSWORD)}, 1,
         'role "no_such_role_x" does not exist'),
        ("unknown URL parameter", ["check"],
         {"DATABASE_URL": url_for(pg_url, password=PASSWORD) + "&pass=" + quote_plus(PASSWORD)},
         2, "DATABASE_URL"),
        ("wrong user in DB_USER", ["history"],
         parts_env(pg_url, PASSWORD) | {"DB_USER": "no_such_role_x", "DB_HOST": settings.host},
         1, 'role "no_such_role_x" does not exist'),
    ]


def test_every_cli_error_path_is_one_line_without_the_password(pg, tables, tmp_path, figures):
    scan = Scanner()
    refused = f"postgresql://app:{quote(PASSWORD, safe='')}@127.0.0.1:1/monps"
    cases = _error_cases(pg.url, refused)
    calls = []
    for _label, args, env, _code, _text in cases:
        calls.append((cli, args, {"env": env, "cwd": tmp_path}))
        calls.append((cli, ["-vv", *args], {"env": env | {"DB_ECHO": "true"}, "cwd": tmp_path}))
    results = in_parallel(calls)
    for index, (label, _args, _env, code, text) in enumerate(cases):
        plain, verbose = results[2 * index], results[2 * index + 1]
        assert (plain.returncode, verbose.returncode) == (code, code), (label, plain.stderr)
        if code == 2:  # a configuration error: the documented list, one line per variable
            assert plain.stderr.startswith("error: invalid configuration"), plain.stderr
            assert text in plain.stderr and "Traceback" not in plain.stderr
        else:
            assert text in one_error_line(plain), (label, plain.stderr)
        assert "Traceback" not in verbose.stderr.split("DEBUG")[0], verbose.stderr
        for result, mode in ((plain, ""), (verbose, " -vv")):
            scan(f"{label}{mode} stdout", result.stdout)
            scan(f"{label}{mode} stderr", result.stderr)
    assert scan.leaks == []
    figures.add("secrets", commands_run=len(results), error_paths=len(cases),
                outputs_scanned=scan.outputs, leaks=0)


def test_a_lock_timeout_a_statement_timeout_and_a_killed_backend_in_the_cli(pg, db, tmp_path,
                                                                            figures):
    scan = Scanner()
    url = url_for(pg.url, password=PASSWORD)
    admin = pg.admin()
    cursor = admin.cursor()
    results = []
    try:
        # Migration lock held by someone else: exit 75.
        cursor.execute("SELECT pg_advisory_lock(%s)", (migrate.LOCK_KEY,))
        locked = cli("-vv", "migrate", "--lock-timeout", "0.3",
                     env={"DATABASE_URL": url, "DB_ECHO": "true"}, cwd=tmp_path)
        cursor.execute("SELECT pg_advisory_unlock(%s)", (migrate.LOCK_KEY,))
        assert locked.returncode == 75, locked.stderr
        assert locked.stderr.splitlines()[-1].startswith("error: another migration run")
        results.append(locked)

        # The picks table locked by an open transaction: settle-clv waits on it.
        cursor.execute("BEGIN; LOCK TABLE public.tracking_clv_picks IN ACCESS EXCLUSIVE MODE")
        timed_out = cli("settle-clv", env={"DATABASE_URL": url, "DB_STATEMENT_TIMEOUT": "300"},
                        cwd=tmp_path)
        assert timed_out.returncode == 1
        assert "statement timeout" in one_error_line(timed_out) or \
            "DB_STATEMENT_TIMEOUT" in one_error_line(timed_out), timed_out.stderr
        results.append(timed_out)

        # The same wait, ended by pg_terminate_backend: a lost connection.
        app = "monps_secrets_" + secrets.token_hex(3)
        process = subprocess.Popen(
            [sys.executable, "-m", "monps_store", "settle-clv"], cwd=tmp_path, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={"PATH": os.environ.get("PATH", ""), "DATABASE_URL": url,
                 "DB_APPLICATION_NAME": app})
        deadline = time.monotonic() + 30
        while not (pids := pg.sql("SELECT pid FROM pg_stat_activity WHERE application_name = %s "
                                  "AND wait_event_type = 'Lock'", (app,))):
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.05)
        pg.terminate(pids[0][0])
        out, err = process.communicate(timeout=60)
    finally:
        admin.rollback()
        admin.close()
    lost = subprocess.CompletedProcess(process.args, process.returncode, out, err)
    assert lost.returncode == 1, lost.stderr
    assert "lost the database connection" in one_error_line(lost)
    results.append(lost)
    for result in results:
        scan(f"{result.args} stdout", result.stdout)
        scan(f"{result.args} stderr", result.stderr)
    assert scan.leaks == []
    figures.add("secrets", commands_run=len(results), error_paths=3,
                outputs_scanned=scan.outputs, leaks=0)


def test_a_failed_migration_names_it_in_one_line_without_the_password(empty_database, tmp_path,
                                                                      figures):
    directory = tmp_path / "migrations"
    shutil.copytree(migrate.default_dir(), directory,
                    ignore=shutil.ignore_patterns("__pycache__"))
    (directory / "003_broken.py").write_text(
        "def migrate(migrator, database, *, fake=False):\n"
        "    migrator.sql('ALTER TABLE quantum.no_such_table ADD COLUMN y int')\n\n"
        "def rollback(migrator, database, *, fake=False):\n    pass\n")
    scan = Scanner()
    env = {"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/x",  # never used by migrations
           "MIGRATION_DATABASE_URL": url_for(empty_database, password=PASSWORD)}
    plain = cli("migrate", "--migrate-dir", str(directory), env=env, cwd=tmp_path)
    verbose = cli("-vv", "migrate", "--migrate-dir", str(directory),
                  env=env | {"DB_ECHO": "true"}, cwd=tmp_path)
    assert (plain.returncode, verbose.returncode) == (1, 1), plain.stderr
    assert one_error_line(plain).startswith("error: migration 003_broken failed and was undone")
    for result in (plain, verbose):
        scan("failed migration stdout", result.stdout)
        scan("failed migration stderr", result.stderr)
    assert scan.leaks == []
    figures.add("secrets", commands_run=2, error_paths=1, outputs_scanned=scan.outputs, leaks=0)


# -- .env handling ---------------------------------------------------------------------------


MALFORMED_DOTENVS = {
    "garbage lines around the password": f"this is not a line\n=novalue\nDB_PORT\n"
                                         f"DB_PASSWORD={PASSWORD}\n'unclosed\n",
    "an invalid value next to the password": f"DB_USER=app\nDB_PORT=abc\n"
                                             f"DB_PASSWORD={PASSWORD}\nDB_POOL_SIZE=-1\n",
    "an unclosed quote that swallows the password line into DB_USER":
        f"DB_USER='app\nDB_PASSWORD={PASSWORD}'\nDB_NAME=monps\n",
    "an unclosed quote that swallows it into DB_APPLICATION_NAME":
        f'DB_APPLICATION_NAME="monps\nDB_PASSWORD={PASSWORD}"\n',
    "an unclosed quote that swallows it into DB_NAME":
        f'DB_USER=app\nDB_NAME="monps\nDB_PASSWORD={PASSWORD}"\n',
}


@pytest.mark.parametrize("label", sorted(MALFORMED_DOTENVS))
def test_a_malformed_dotenv_never_echoes_a_value(label, pg, tables, tmp_path, figures):
    (tmp_path / ".env").write_text(MALFORMED_DOTENVS[label])
    scan = Scanner()
    # The URL in the environment makes the swallowing cases connect if nothing stops them.
    env = {"DATABASE_URL": pg.url} if "DB_APPLICATION_NAME" in label else {
        "DB_PASSWORD": PASSWORD} if "DB_USER" in label or "DB_NAME" in label else {}
    if "DB_USER" in label or "DB_NAME" in label:
        settings = config.from_url(pg.url)
        env |= {"DB_HOST": settings.host, "DB_PORT": str(settings.port)}
    results = [cli("check", env=env, cwd=tmp_path),
               cli("-vv", "check", "--json", env=env | {"DB_ECHO": "true"}, cwd=tmp_path)]
    for result in results:
        assert result.returncode == 2, (label, result.stdout, result.stderr)
        assert result.stderr.startswith("error: invalid configuration") or \
            "error: invalid configuration" in result.stderr
        scan(f"{label} stdout", result.stdout)
        scan(f"{label} stderr", result.stderr)
    with pytest.raises(errors.ConfigError) as caught:
        config.load_settings(environ=env, env_file=str(tmp_path / ".env"))
    scan.exception(label, caught.value)
    assert scan.leaks == []
    figures.add("secrets", commands_run=len(results), error_paths=1,
                outputs_scanned=scan.outputs, leaks=0)


def test_a_password_with_quotes_hash_dollar_and_spaces_survives_dotenv(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text(f"DB_USER=app\nDB_NAME=monps\nDB_PASSWORD={dotenv_quoted(WEIRD)}\n")
    settings = config.load_settings(environ={}, env_file=str(env_file))
    assert settings.password.reveal() == WEIRD
    assert not FORMS & {repr(settings), str(settings.describe()), settings.display_url}


# -- the Python API --------------------------------------------------------------------------


def _api_settings(pg_url: str, tmp_path: Path) -> dict[str, config.Settings]:
    dotenv = tmp_path / "api.env"
    dotenv.write_text("".join(f"{k}={dotenv_quoted(v)}\n"
                              for k, v in parts_env(pg_url, WEIRD).items()))
    load = config.load_settings
    return {
        "DATABASE_URL": load({"DATABASE_URL": url_for(pg_url, password=PASSWORD)}, None),
        "?password=": load({"DATABASE_URL": url_for(pg_url, query_password=PASSWORD)}, None),
        "DB_PASSWORD": load(parts_env(pg_url, PASSWORD), None),
        "MIGRATION_DATABASE_URL": load({"DATABASE_URL": pg_url, "MIGRATION_DATABASE_URL":
                                        url_for(pg_url, password=PASSWORD)}, None),
        ".env": load({}, str(dotenv)),
        "from_url": config.from_url(url_for(pg_url, password=PASSWORD)),
        "?sslpassword=": config.from_url(url_for(pg_url) + "&sslpassword="
                                         + quote_plus(PASSWORD)),
    }


def test_the_python_api_never_shows_the_password_in_logs_reprs_or_errors(pg, db, tmp_path,
                                                                         caplog, figures):
    caplog.set_level(logging.DEBUG)
    scan = Scanner()
    error_paths = 0
    placements = _api_settings(pg.url, tmp_path)
    for name, settings in placements.items():
        scan(f"{name} repr(settings)", repr(settings))
        scan(f"{name} str(settings)", str(settings))
        scan(f"{name} describe", json.dumps(settings.describe()))
        scan(f"{name} display_url", settings.display_url)
        monps_store.init_db(settings, echo=True, application_name="monps_secrets")
        with monps_store.connection() as database:
            database.execute_sql("SELECT 1")
            try:
                database.execute_sql("SELECT * FROM no_such_table")
            except Exception as exc:  # an ordinary database error, with the password in play
                scan.exception(f"{name} bad SQL", exc)
        assert monps_store.check_connection()
        scan(f"{name} pool_status", repr(monps_store.pool_status()))
        scan(f"{name} repr(db)", repr(monps_store.db))
        if settings.migration_url:
            with migrate.Migrations.open(settings, lock=False) as migrations:
                assert migrations.pending() == []
    monps_store.close_db()

    settings = placements["DATABASE_URL"]
    provoked = []
    # Pool exhausted.
    monps_store.init_db(settings, pool_size=1, max_overflow=0, pool_timeout=0.2)
    outcome = {}

    def second_checkout():
        try:
            with monps_store.connection():
                pass
        except errors.PoolExhausted as exc:
            outcome["exc"] = exc

    with monps_store.connection():
        thread = threading.Thread(target=second_checkout)
        thread.start()
        thread.join()
    provoked.append(outcome["exc"])
    # Statement timeout.
    monps_store.init_db(settings, statement_timeout=50)
    with pytest.raises(Exception) as timeout:
        with monps_store.connection() as database:
            database.execute_sql("SELECT pg_sleep(2)")
    assert "statement timeout" in "".join(traceback.format_exception(timeout.value))
    provoked.append(timeout.value)
    # A connection killed while in use, inside a unit of work.
    monps_store.init_db(settings, application_name="monps_secrets")
    with pytest.raises(errors.ConnectionLost) as lost:
        with monps_store.unit_of_work(actor="secrets"):
            pid = monps_store.db.execute_sql("SELECT pg_backend_pid()").fetchone()[0]
            pg.terminate(pid)
            monps_store.db.execute_sql("SELECT 1")
    provoked.append(lost.value)
    # Connections that cannot be opened.
    refused = dict(DATABASE_URL=f"postgresql://app:{quote(PASSWORD, safe='')}@127.0.0.1:1/x")
    for label, failing in {
        "refused": config.load_settings(refused | {"DB_CONNECT_TIMEOUT": "2"}, None),
        "no socket": config.from_url(f"postgresql://app:{quote(PASSWORD, safe='')}@/db"
                                     "?host=/nonexistent-socket-dir"),
        "wrong database": config.from_url(url_for(pg.url, password=PASSWORD,
                                                  database="no_such_db_x")),
        "wrong user": config.from_url(url_for(pg.url, user="no_such_role_x",
                                              password=PASSWORD)),
    }.items():
        monps_store.init_db(failing)
        with pytest.raises(errors.ConnectFailed) as failed:
            with monps_store.connection():
                pass
        assert not monps_store.check_connection()
        provoked.append(failed.value)
        with pytest.raises(errors.ConnectFailed) as failed_migration:
            migrate.connect(failing)
        provoked.append(failed_migration.value)
        scan(f"{label} pool_status", repr(monps_store.pool_status()))
    monps_store.close_db()
    # Configuration errors listing several variables.
    for environ in ({"DB_PASSWORD": PASSWORD, "DB_PORT": "x", "DB_ECHO": "maybe"},
                    {"DATABASE_URL": f"postgresql://u:{quote(PASSWORD, safe='')}@h:99999/d",
                     "MIGRATION_DATABASE_URL": f"http://u:{quote(PASSWORD, safe='')}@h/d"}):
        with pytest.raises(errors.ConfigError) as bad:
            config.load_settings(environ, None)
        assert len(bad.value.problems) >= 2
        provoked.append(bad.value)

    for exc in provoked:
        scan.exception(type(exc).__name__, exc)
    error_paths += len(provoked)
    scan.records("api", caplog.records)
    assert any("SELECT 1" in record.getMessage() for record in caplog.records)  # DEBUG captured
    assert scan.leaks == []
    figures.add("secrets", api_placements=len(placements), error_paths=error_paths,
                outputs_scanned=scan.outputs, leaks=0)


# -- authentication failure, on a throwaway server that asks for a password -------------------


@pytest.fixture(scope="module")
def scram_server():
    """A server of this module's own whose pg_hba requires scram-sha-256 for one role with the
    WEIRD password; stopped and deleted afterwards."""
    with throwaway_server("monps-scram-") as srv:
        admin_url = srv.get_uri()
        role = "monps_scram_" + secrets.token_hex(3)
        conn = psycopg2.connect(**config.from_url(admin_url).connect_params())
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"CREATE ROLE {role} LOGIN PASSWORD %s", (WEIRD,))
            hba = Path(srv.pgdata) / "pg_hba.conf"
            hba.write_text(f"local all {role} scram-sha-256\n" + hba.read_text())
            cur.execute("SELECT pg_reload_conf()")
        conn.close()
        yield admin_url, role


def test_a_wrong_password_fails_in_one_line_that_does_not_show_it(scram_server, tmp_path,
                                                                  figures):
    admin_url, role = scram_server
    settings = config.from_url(admin_url)
    right = {"DB_HOST": settings.host, "DB_PORT": str(settings.port), "DB_USER": role,
             "DB_NAME": "postgres"}
    # The server really checks: the right password (from a quoted .env line) gets in.
    good_dir = tmp_path / "good"
    good_dir.mkdir()
    (good_dir / ".env").write_text("".join(f"{k}={dotenv_quoted(v)}\n"
                                           for k, v in (right | {"DB_PASSWORD": WEIRD}).items()))
    scan = Scanner()
    ok = cli("check", "--json", cwd=good_dir)
    report = json.loads(ok.stdout)
    assert "error" not in report["connection"], ok.stdout
    assert report["server_version"]
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(**(config.from_url(url_for(admin_url, user=role, database="postgres"))
                            .connect_params() | {"password": PASSWORD}))

    wrong_url = url_for(admin_url, user=role, password=PASSWORD, database="postgres")
    runs = in_parallel([
        (cli, ["check"], {"env": right | {"DB_PASSWORD": PASSWORD}, "cwd": tmp_path}),
        (cli, ["-vv", "check", "--json"], {"env": {"DATABASE_URL": wrong_url, "DB_ECHO": "true"},
                                            "cwd": tmp_path}),
        (cli, ["migrate"], {"env": {"DATABASE_URL": admin_url,
                                    "MIGRATION_DATABASE_URL": wrong_url}, "cwd": tmp_path}),
        (cli, ["settle-clv"], {"env": {"DATABASE_URL": wrong_url}, "cwd": tmp_path}),
    ])
    for result in runs:
        assert result.returncode == 1, result.stderr
        scan("auth stdout", result.stdout)
        scan("auth stderr", result.stderr)
    for result in (runs[0], runs[2], runs[3]):
        assert "password authentication failed" in one_error_line(result)
    assert json.loads(runs[1].stdout)["settings"]["password"] == "***"

    monps_store.init_db(url=wrong_url)
    with pytest.raises(errors.ConnectFailed, match="password authentication failed") as failed:
        with monps_store.connection():
            pass
    monps_store.close_db()
    scan.exception("auth api", failed.value)
    assert scan.leaks == []
    figures.add("secrets", commands_run=len(runs) + 1, error_paths=1,
                outputs_scanned=scan.outputs, leaks=0)
