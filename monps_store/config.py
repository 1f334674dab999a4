"""Settings from the environment and an optional ``.env`` file.

    from monps_store import config
    settings = config.load_settings()          # os.environ, then ./.env for what is unset
    settings = config.from_url("postgresql://app:secret@db:5432/monps")

The variables are the ones existing deployments already use (see ``.env.example``).
``load_settings`` reports every missing or invalid variable in one :class:`ConfigError`.
Passwords are held in :class:`Secret`, which prints as ``***`` in ``repr``, ``str``, logs and
f-strings; only :meth:`Settings.connect_params` reveals it, to hand it to the driver.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from monps_store.errors import ConfigError

MASK = "***"
URL_SCHEMES = ("postgresql", "postgres")
# Connection parameters a URL may carry in its query string that map onto Settings fields;
# any other query parameter (sslmode, target_session_attrs, ...) is passed to libpq as is.
_URL_FIELDS = {"host", "port", "user", "password", "dbname"}
# Other libpq parameters whose value is a secret: kept in a Secret like the password.
_SECRET_PARAMS = {"sslpassword"}
# Settings that end up in output (check, logs, pg_stat_activity) and in libpq errors; a line
# break in one is almost always a .env quote left open that swallowed the following lines.
_TEXT_VARIABLES = (("DB_HOST", "host"), ("DB_USER", "user"), ("DB_NAME", "database"),
                   ("DB_APPLICATION_NAME", "application_name"))


class Secret:
    """A string that never shows itself: ``repr``/``str``/``format`` give ``***``."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self):
        return MASK

    __str__ = __repr__

    def __format__(self, spec):
        return MASK

    def __eq__(self, other):
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self):
        return hash(self._value)

    def __bool__(self):
        return bool(self._value)


@dataclasses.dataclass(frozen=True, repr=False)
class Settings:
    """Everything needed to connect and size the pool. Immutable; build with ``load_settings``,
    ``from_url`` or ``dataclasses.replace``."""

    database: str | None
    user: str | None = None
    password: Secret | None = None
    host: str | None = "localhost"
    port: int = 5432
    params: tuple[tuple[str, str | Secret], ...] = ()  # extra libpq parameters from the URL
    pool_size: int = 5
    max_overflow: int = 10
    pool_timeout: float = 30.0
    pool_recycle: int = 3600
    echo: bool = False
    connect_timeout: int = 10
    statement_timeout: int = 0
    application_name: str = "monps_store"
    migration_url: Secret | None = None
    source: str = "DB_*"  # where the connection came from: "DATABASE_URL", "DB_*" or "url"
    # Hot standbys for replica() scopes: each a Settings of its own (pool sizes, timeouts and
    # application name as the primary's), and the replay lag past which one is skipped.
    replicas: tuple[Settings, ...] = ()
    replica_max_lag_ms: int = 1000
    # "pgbouncer": a transaction-mode pooler sits in front, so no session state is kept (no
    # startup options: the statement timeout is SET LOCAL in each transaction).
    pooler: str = "none"
    # monps_store.cache on or off, and a direct URL for LISTEN (events.listen and the cache's
    # listener) when the connection above goes through a pooler that cannot deliver them.
    cache: bool = True
    listen_url: Secret | None = None
    # The isolation level of every transaction the package begins (None: the server's default,
    # READ COMMITTED); one of ISOLATION_LEVELS, as isolation_level() spells it.
    isolation_level: str | None = None

    def __post_init__(self):
        problems = check_ranges({f.name: getattr(self, f.name) for f in dataclasses.fields(self)})
        if problems:
            raise ConfigError(problems)

    @property
    def max_connections(self) -> int:
        return self.pool_size + self.max_overflow

    def __repr__(self):
        # The dataclass repr, except that it never shows a secret (Secret prints as ***).
        fields = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self))
        return f"Settings({fields})"

    def connect_params(self) -> dict:
        """Keyword arguments for ``psycopg2.connect`` (reveals the password: driver use only)."""
        params: dict[str, Any] = {key: value.reveal() if isinstance(value, Secret) else value
                                  for key, value in self.params}
        for key, value in (("host", self.host), ("port", self.port), ("user", self.user),
                           ("dbname", self.database)):
            if value is not None:
                params[key] = value
        if self.password:
            params["password"] = self.password.reveal()
        params["connect_timeout"] = self.connect_timeout
        params["application_name"] = self.application_name
        if self.statement_timeout and self.pooler == "none":
            # A startup option costs no round trip and covers every statement of the session
            # (behind PgBouncer it would be refused or dropped: SET LOCAL per transaction).
            option = f"-c statement_timeout={self.statement_timeout}"
            params["options"] = f"{params['options']} {option}" if "options" in params else option
        return params

    @property
    def display_url(self) -> str:
        """The connection as a URL with the password masked: safe to print and log."""
        auth = self.user or ""
        if self.password:
            auth += ":" + MASK
        host = self.host or ""
        if host.startswith("/"):  # a unix socket directory
            return f"postgresql://{auth}@/{self.database or ''}?host={host}"
        return f"postgresql://{auth}@{host}:{self.port}/{self.database or ''}"

    def describe(self) -> dict:
        """The effective settings as plain values, password masked (for ``check`` and logs)."""
        return {
            "source": self.source,
            "url": self.display_url,
            "host": self.host,
            "port": self.port,
            "database": self.database,
            "user": self.user,
            "password": MASK if self.password else None,
            "params": {k: (MASK if isinstance(v, Secret) or "pass" in k else v)
                       for k, v in self.params},
            "pool_size": self.pool_size,
            "max_overflow": self.max_overflow,
            "max_connections": self.max_connections,
            "pool_timeout": self.pool_timeout,
            "pool_recycle": self.pool_recycle,
            "echo": self.echo,
            "connect_timeout": self.connect_timeout,
            "statement_timeout": self.statement_timeout,
            "application_name": self.application_name,
            "migration_url": MASK if self.migration_url else None,
            "replicas": [replica.display_url for replica in self.replicas],
            "replica_max_lag_ms": self.replica_max_lag_ms,
            "pooler": self.pooler,
            "cache": self.cache,
            "listen_url": MASK if self.listen_url else None,
            "isolation_level": self.isolation_level,
        }


POOLERS = ("none", "pgbouncer")
ISOLATION_LEVELS = ("READ UNCOMMITTED", "READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE")
# psycopg2's ISOLATION_LEVEL_* constants, which peewee also takes.
_ISOLATION_CONSTANTS = {1: "READ COMMITTED", 2: "REPEATABLE READ", 3: "SERIALIZABLE",
                        4: "READ UNCOMMITTED"}


def isolation_level(value: object, where: str = "isolation_level") -> str | None:
    """``value`` as PostgreSQL spells the level (``"serializable"``, ``"repeatable_read"`` and
    psycopg2's constants are accepted), None for None; ValueError naming ``where`` and the
    value otherwise."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        level = _ISOLATION_CONSTANTS.get(value)
    elif isinstance(value, str):
        level = " ".join(value.replace("_", " ").upper().split())
    else:
        level = None
    if level not in ISOLATION_LEVELS:
        raise ValueError(f"{where}: unknown isolation level {value!r} (one of "
                         f"{', '.join(level.lower() for level in ISOLATION_LEVELS)})")
    return level

# (variable, Settings field, minimum) for the numeric settings.
_NUMERIC = (
    ("DB_PORT", "port", 1),
    ("DB_POOL_SIZE", "pool_size", 1),
    ("DB_MAX_OVERFLOW", "max_overflow", 0),
    ("DB_POOL_TIMEOUT", "pool_timeout", 0),
    ("DB_POOL_RECYCLE", "pool_recycle", 0),
    ("DB_CONNECT_TIMEOUT", "connect_timeout", 0),
    ("DB_STATEMENT_TIMEOUT", "statement_timeout", 0),
    ("DB_REPLICA_MAX_LAG_MS", "replica_max_lag_ms", 0),
)


def check_ranges(values: Mapping) -> list[str]:
    """Problems with already-typed values, one line per variable (shared by every entry path)."""
    problems = []
    for var, field, minimum in _NUMERIC:
        value = values.get(field)
        if value is not None and value < minimum:
            problems.append(f"{var}: must be at least {minimum}")
    if values.get("pooler") not in (None, *POOLERS):
        problems.append(f"DB_POOLER: must be one of {', '.join(POOLERS)}")
    if values.get("port") is not None and values["port"] > 65535:
        problems.append("DB_PORT: must be at most 65535")
    if values.get("isolation_level") not in (None, *ISOLATION_LEVELS):
        problems.append(f"isolation_level: must be one of {', '.join(ISOLATION_LEVELS)}")
    name = values.get("application_name")
    if name is not None and (not name.strip() or len(name) > 63 or not name.isascii()):
        problems.append("DB_APPLICATION_NAME: must be 1-63 ASCII characters")
    for var, field in _TEXT_VARIABLES:
        value = values.get(field)
        if isinstance(value, str) and not value.isprintable():
            # Never echo the value: it may hold the lines (and password) a quote swallowed.
            problems.append(f"{var}: contains a line break or control character (a quote "
                            "left open in .env?)")
    return problems


def parse_url(url: str, variable: str = "url") -> dict[str, Any]:
    """Split a ``postgresql://`` URL into Settings fields. Errors name ``variable``, never the
    URL itself (it may hold a password)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise ConfigError([f"{variable}: not a valid URL (bad port or brackets)"]) from None
    if parts.scheme not in URL_SCHEMES:
        raise ConfigError(
            [f"{variable}: must start with postgresql:// (got scheme {parts.scheme!r})"]
        )
    if not url.strip()[len(parts.scheme) + 1:].startswith("//"):
        # "postgresql:user:pw@host/db" would parse as a database named "user:pw@host/db".
        raise ConfigError([f"{variable}: must start with postgresql:// (the // is missing)"])
    fields: dict[str, Any] = {
        "host": unquote(parts.hostname) if parts.hostname else None,
        "port": port or 5432,
        "user": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password else None,
        "database": unquote(parts.path.lstrip("/")) or None,
    }
    extra = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key not in _URL_FIELDS:
            _check_libpq_parameter(key, variable)
            extra.append((key, Secret(value) if key in _SECRET_PARAMS else value))
        elif key == "port":
            if not value.isdigit():
                raise ConfigError([f"{variable}: query parameter port must be a number"])
            fields["port"] = int(value)
        else:
            fields["database" if key == "dbname" else key] = value or None
    fields["password"] = Secret(fields["password"]) if fields["password"] else None
    fields["params"] = tuple(extra)
    return fields


def _check_libpq_parameter(key: str, variable: str, where: str = " in the query string") -> None:
    """Refuse a query parameter libpq does not know (a typo such as ``pass=`` would otherwise
    fail at connect time, and its value might be the password). Asks libpq itself."""
    from psycopg2 import ProgrammingError
    from psycopg2.extensions import make_dsn, parse_dsn

    try:
        parse_dsn(make_dsn(**{key: "x"}))
    except (ProgrammingError, TypeError):
        raise ConfigError([f"{variable}: unknown connection parameter {key[:40]!r}{where} "
                           "(libpq's parameter names: host, port, dbname, user, "
                           "password, sslmode, ...)"]) from None


# PostgresqlDatabase options that are not libpq parameters: refused by name in db.init().
_PEEWEE_OPTIONS = {"register_unicode", "encoding", "prefer_psycopg3", "autorollback",
                   "autocommit", "server_side_cursors"}


def from_init_params(database: str, base: Settings | None = None, **params: Any) -> Settings:
    """Settings for peewee's ``db.init(database, **params)``, read as
    ``PooledPostgresqlDatabase(database, **params)`` reads them: ``database`` is a name or a
    ``postgresql://`` URL, other keywords are libpq's (``host``, ``user``, ``password``,
    ``sslmode``, ...), ``isolation_level`` is peewee's, and the pool takes ``max_connections``
    (default 20, every one kept idle), ``stale_timeout`` (default none) and ``timeout``
    (default None: fail at once; 0: wait forever). Reads no environment.

    With ``base`` (the settings the database has now) the call is merged into them as peewee
    merges ``init()`` into its connection parameters: what the call does not name is kept, a
    URL replaces the whole connection, and ``isolation_level`` is the call's (peewee resets it
    on every ``init()``)."""
    where = " given to db.init()"
    params = dict(params)
    peewee_only = sorted(set(params) & _PEEWEE_OPTIONS)
    if peewee_only:
        raise ConfigError([f"{key}: a peewee option db.init() does not take (monps_store "
                           "connects with psycopg2 in autocommit mode, with its own typecasters "
                           "and client encoding)" for key in peewee_only])
    values: dict[str, Any] = {} if base is None else {
        f.name: getattr(base, f.name) for f in dataclasses.fields(base)}
    if database.startswith(tuple(f"{scheme}://" for scheme in URL_SCHEMES)):
        values.update(parse_url(database, "db.init() database URL"))  # every connection field
    else:
        values["database"] = database
    max_connections = params.pop("max_connections", None)  # None: keep, as peewee does
    if max_connections is not None or base is None:
        if max_connections == 0:
            raise ConfigError(["max_connections: the pool needs a limit (peewee's 0 means "
                               "unlimited, which monps_store does not offer)"])
        values |= {"pool_size": int(max_connections or 20), "max_overflow": 0}
    stale_timeout = params.pop("stale_timeout", None)
    if stale_timeout is not None or base is None:
        values["pool_recycle"] = int(stale_timeout or 0)
    timeout = params.pop("timeout", None)
    if timeout is not None or base is None:
        # peewee: None fails at once (monps_store's 0), 0 waits forever.
        values["pool_timeout"] = 0.0 if timeout is None else float(timeout) or float("inf")
    try:
        values["isolation_level"] = isolation_level(params.pop("isolation_level", None))
    except ValueError as exc:
        raise ConfigError([str(exc)]) from None
    values["source"] = "db.init()"
    for key in ("host", "user", "application_name"):
        if key in params:
            values[key] = params.pop(key)
    for key in ("port", "connect_timeout"):
        if key in params:
            values[key] = int(params.pop(key))
    if "password" in params:
        password = params.pop("password")
        values["password"] = Secret(str(password)) if password else None
    extra = dict(values.get("params", ()))
    for key, value in params.items():
        _check_libpq_parameter(key, key, where)
        extra[key] = Secret(str(value)) if key in _SECRET_PARAMS else str(value)
    values["params"] = tuple(extra.items())
    return Settings(**values)


def _replica_fields(urls, variable: str) -> tuple[list[dict], list[str]]:
    """The connection fields of each URL in ``urls`` (a comma-separated string or a sequence),
    and the problems found."""
    if isinstance(urls, str):
        urls = urls.split(",")
    found, problems = [], []
    for number, url in enumerate((u.strip() for u in urls if u and u.strip()), start=1):
        try:
            found.append(parse_url(url, f"{variable} (replica {number})"))
        except ConfigError as exc:
            problems += exc.problems
    return found, problems


def with_replicas(settings: Settings, urls, variable: str = "DATABASE_REPLICA_URLS") -> Settings:
    """``settings`` with the hot standbys at ``urls`` (a comma-separated string or a sequence):
    each takes its connection from its URL and everything else from ``settings``."""
    found, problems = _replica_fields(urls, variable)
    if problems:
        raise ConfigError(problems)
    return dataclasses.replace(settings, replicas=tuple(
        dataclasses.replace(settings, **fields, source=variable, replicas=(),
                            migration_url=None, listen_url=None) for fields in found))


def from_url(url: str, **overrides) -> Settings:
    """Settings for ``url`` with the defaults for everything else; reads no environment."""
    return Settings(**(parse_url(url) | {"source": "url"} | overrides))


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
        problems += _replica_fields(replica_urls, "DATABASE_REPLICA_URLS")[1]
    problems += check_ranges(values)
    if problems:
        raise ConfigError(sorted(set(problems)))
    settings = Settings(**values)
    return with_replicas(settings, replica_urls) if replica_urls else settings


# A blank URL in a .env copied from .env.example means "not set", not "invalid" (but a blank
# DATABASE_URL in the environment is reported: see load_settings).
_BLANK_IS_UNSET = {"DATABASE_URL", "MIGRATION_DATABASE_URL", "DATABASE_REPLICA_URLS",
                   "DATABASE_LISTEN_URL"}
