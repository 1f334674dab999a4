import dataclasses
import os
import subprocess
import sys

import pytest

from monps_store import config
from monps_store.errors import ConfigError

CANARY = "canary-Pw-7f3a9"
PARTS = {"DB_USER": "app", "DB_PASSWORD": CANARY, "DB_NAME": "monps"}


def load(env, env_file=None):
    return config.load_settings(environ=env, env_file=env_file)


def test_every_missing_variable_is_named_in_one_error():
    with pytest.raises(ConfigError) as caught:
        load({})
    message = str(caught.value)
    for var in ("DB_USER", "DB_PASSWORD", "DB_NAME"):
        assert var in message
    assert ".env.example" in message
    assert len(caught.value.problems) == 3


@pytest.mark.parametrize("blank", ["", "   ", "\t"])
def test_an_empty_or_blank_password_is_refused(blank):
    with pytest.raises(ConfigError, match="DB_PASSWORD: is empty or blank"):
        load(PARTS | {"DB_PASSWORD": blank})


def test_invalid_values_are_reported_together_with_the_missing_ones():
    env = {"DB_PORT": "abc", "DB_POOL_SIZE": "0", "DB_POOL_TIMEOUT": "-1", "DB_ECHO": "maybe",
           "DB_STATEMENT_TIMEOUT": "soon", "DB_USER": "app", "DB_PASSWORD": CANARY}
    with pytest.raises(ConfigError) as caught:
        load(env)
    named = {problem.split(":")[0] for problem in caught.value.problems}
    assert named == {"DB_PORT", "DB_POOL_SIZE", "DB_POOL_TIMEOUT", "DB_ECHO",
                     "DB_STATEMENT_TIMEOUT", "DB_NAME"}


def test_defaults_match_the_contract():
    settings = load(PARTS)
    assert (settings.host, settings.port) == ("localhost", 5432)
    assert (settings.pool_size, settings.max_overflow, settings.max_connections) == (5, 10, 15)
    assert (settings.pool_timeout, settings.pool_recycle) == (30, 3600)
    assert (settings.connect_timeout, settings.statement_timeout) == (10, 0)
    assert settings.echo is False
    assert settings.application_name == "monps_store"


def test_database_url_wins_over_the_parts_and_unknown_variables_are_ignored():
    env = PARTS | {"DATABASE_URL": "postgresql://url_user:p%40ss@db.example:6543/urldb",
                   "DB_HOST": "ignored", "SOME_OTHER_TOOL_SETTING": "x"}
    settings = load(env)
    assert (settings.user, settings.host, settings.port, settings.database) == (
        "url_user", "db.example", 6543, "urldb")
    assert settings.password.reveal() == "p@ss"
    assert settings.source == "DATABASE_URL"


def test_a_url_may_name_a_unix_socket_and_libpq_parameters():
    settings = config.from_url("postgres://postgres:@/postgres?host=/run/pg&sslmode=disable")
    assert settings.host == "/run/pg"
    assert settings.password is None
    assert settings.connect_params()["sslmode"] == "disable"
    assert settings.connect_params()["dbname"] == "postgres"


def test_a_blank_database_url_counts_as_unset():
    assert load(PARTS | {"DATABASE_URL": "  "}).source == "DB_*"


@pytest.mark.parametrize("url", [f"mysql://u:{CANARY}@h/db", f"postgresql://u:{CANARY}@h:99999/db"])
def test_a_bad_url_is_named_without_echoing_it(url):
    with pytest.raises(ConfigError, match="DATABASE_URL") as caught:
        load({"DATABASE_URL": url})
    assert CANARY not in str(caught.value)


def test_dotenv_fills_what_the_environment_does_not_set(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text(f"DB_USER=from_file\nDB_PASSWORD={CANARY}\nDB_NAME=filedb\nDB_PORT=7000\n")
    settings = load({"DB_PORT": "7001"}, env_file=str(env_file))
    assert (settings.user, settings.database, settings.port) == ("from_file", "filedb", 7001)
    assert "DB_USER" not in os.environ  # the file is read, not exported


def test_dotenv_values_are_literal_so_a_password_with_dollar_braces_is_not_changed(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("DB_USER=u\nDB_NAME=n\nDB_PASSWORD='pa$$ #w${HOME}'\n"
                        "DB_APPLICATION_NAME=app-${DB_USER}\n")
    settings = load({"HOME": "/root"}, env_file=str(env_file))
    assert settings.password.reveal() == "pa$$ #w${HOME}"
    assert settings.application_name == "app-${DB_USER}"


def test_the_password_never_shows_in_repr_str_or_describe():
    settings = load(PARTS | {"MIGRATION_DATABASE_URL": f"postgresql://owner:{CANARY}@h/db"})
    for text in (repr(settings), str(settings), f"{settings.password}", str(settings.describe()),
                 settings.display_url):
        assert CANARY not in text
    assert "***" in repr(settings)
    assert settings.connect_params()["password"] == CANARY  # only the driver gets it


def test_settings_are_frozen():
    settings = load(PARTS)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.pool_size = 99


def test_statement_timeout_and_application_name_reach_the_driver():
    params = load(PARTS | {"DB_STATEMENT_TIMEOUT": "1500", "DB_APPLICATION_NAME": "cron:odds"}
                  ).connect_params()
    assert params["options"] == "-c statement_timeout=1500"
    assert params["application_name"] == "cron:odds"


def test_importing_the_package_reads_no_environment_and_opens_nothing(tmp_path):
    # A broken .env in the working directory must not matter at import time.
    (tmp_path / ".env").write_text("DB_PORT=not-a-number\n")
    code = ("import sys, monps_store; "
            "print('environs' in sys.modules, monps_store.db.deferred, monps_store.db.is_closed())")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, check=True, env={"PATH": os.environ.get("PATH", "")})
    assert out.stdout.split() == ["False", "True", "True"]
