"""Settings from the environment and an optional ``.env`` file: :func:`load_settings`.

    from monps_store.config import load_settings
    settings = load_settings()                     # os.environ, then ./.env for what is unset
    settings = load_settings({"DATABASE_URL": url}, env_file=None)

The variables are the ones existing deployments already use (see ``.env.example``). Every
missing or invalid variable is reported in one :class:`~monps_store.errors.ConfigError`.
environs and python-dotenv are imported when settings are loaded, never at package import.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from monps_store.config.settings import Secret, Settings, check_ranges
from monps_store.config.urls import parse_url, replica_fields, with_replicas
from monps_store.errors import ConfigError


def load_settings(environ: Mapping[str, str] | None = None, env_file=".env") -> Settings:
    """Read the settings from ``environ`` (default ``os.environ``), then ``env_file`` for
    variables the environment does not set (pass ``None`` to read no file).

    Raises ConfigError naming every missing or invalid variable at once. A blank URL variable
    counts as unset (``.env.example`` ships them blank), except that a blank ``DATABASE_URL``
    in the environment with the DB_* variables incomplete is reported as the problem.
    """
    # environs pulls in marshmallow (~0.2 s): imported here, never at package import.
    from dotenv import dotenv_values
    from environs import Env

    source = os.environ if environ is None else environ
    # Values are taken literally: no ${NAME} expansion, which would silently change a password
    # containing "${" (python-dotenv expands even inside single quotes).
    from_file = (dotenv_values(env_file, interpolate=False)
                 if env_file is not None and os.path.isfile(env_file) else {})

    class _Env(Env):
        def _get_value(self, env_key, default):
            value = source.get(env_key)
            if value is None:
                value = from_file.get(env_key)
            if value is None or (env_key in _BLANK_IS_UNSET and not value.strip()):
                return default
            return value

    env = _Env(eager=False)

    values: dict[str, Any] = {
        "host": env.str("DB_HOST", "localhost"),
        "port": env.int("DB_PORT", 5432),
        "pool_size": env.int("DB_POOL_SIZE", 5),
        "max_overflow": env.int("DB_MAX_OVERFLOW", 10),
        "pool_timeout": env.float("DB_POOL_TIMEOUT", 30.0),
        "pool_recycle": env.int("DB_POOL_RECYCLE", 3600),
        "echo": env.bool("DB_ECHO", False),
        "connect_timeout": env.int("DB_CONNECT_TIMEOUT", 10),
        "statement_timeout": env.int("DB_STATEMENT_TIMEOUT", 0),
        "application_name": env.str("DB_APPLICATION_NAME", "monps_store"),
        "replica_max_lag_ms": env.int("DB_REPLICA_MAX_LAG_MS", 1000),
        "pooler": env.str("DB_POOLER", "none").strip().lower(),
        "cache": env.bool("DB_CACHE", True),
    }
    replica_urls = env.str("DATABASE_REPLICA_URLS", None)
    url = env.str("DATABASE_URL", None)
    migration_url = env.str("MIGRATION_DATABASE_URL", None)
    listen_url = env.str("DATABASE_LISTEN_URL", None)
    user, password, name = (env.str(v, None) for v in ("DB_USER", "DB_PASSWORD", "DB_NAME"))
    # Set empty in the environment with no DB_* to fall back on, it is a mistake, most likely
    # a `$(...)` that printed nothing: say so rather than complain about variables nobody
    # meant to set.
    from_environment = source.get("DATABASE_URL")
    empty_url = from_environment is not None and not from_environment.strip()

    problems = []
    try:
        env.seal()
    except Exception as exc:  # environs' EnvValidationError: {variable: [messages]}
        for var, messages in getattr(exc, "error_messages", {}).items():
            problems.append(f"{var}: {' '.join(str(m) for m in messages)}")

    parts_complete = all(v is not None and v.strip() for v in (user, name, password))
    if empty_url and not parts_complete:
        problems.append("DATABASE_URL: set but empty in the environment (a `$(...)` that "
                        "printed nothing?); give it a URL, or `unset DATABASE_URL` and set the "
                        "DB_* variables")
    elif url is not None:
        try:
            values |= parse_url(url, "DATABASE_URL")
            values["source"] = "DATABASE_URL"
        except ConfigError as exc:
            problems += exc.problems
    else:
        for var, value in (("DB_USER", user), ("DB_NAME", name)):
            if value is None or not value.strip():
                problems.append(f"{var}: required (or set DATABASE_URL)")
        if password is None:
            problems.append("DB_PASSWORD: required (or set DATABASE_URL)")
        elif not password.strip():
            problems.append("DB_PASSWORD: is empty or blank; an empty password is refused")
        values |= {"user": user, "password": Secret(password or ""), "database": name}
    if migration_url is not None:
        try:
            parse_url(migration_url, "MIGRATION_DATABASE_URL")
            values["migration_url"] = Secret(migration_url.strip())
        except ConfigError as exc:
            problems += exc.problems
    if listen_url is not None and listen_url.strip():
        try:
            parse_url(listen_url, "DATABASE_LISTEN_URL")
            values["listen_url"] = Secret(listen_url.strip())
        except ConfigError as exc:
            problems += exc.problems

    if replica_urls:
        problems += replica_fields(replica_urls, "DATABASE_REPLICA_URLS")[1]
    problems += check_ranges(values)
    if problems:
        raise ConfigError(sorted(set(problems)))
    settings = Settings(**values)
    return with_replicas(settings, replica_urls) if replica_urls else settings


# A blank URL in a .env copied from .env.example means "not set", not "invalid" (but a blank
# DATABASE_URL in the environment is reported: see load_settings).
_BLANK_IS_UNSET = {"DATABASE_URL", "MIGRATION_DATABASE_URL", "DATABASE_REPLICA_URLS",
                   "DATABASE_LISTEN_URL"}
