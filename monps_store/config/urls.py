"""Settings from a URL or from peewee's ``db.init()`` arguments; no environment is read.

    from monps_store.config import from_url, from_init_params
    settings = from_url("postgresql://app:secret@db:5432/monps?sslmode=require")
    settings = from_init_params("monps", host="db", user="app", max_connections=20)

Query parameters and keywords that are not Settings fields go to libpq as they are, after
libpq itself has confirmed it knows them (a typo such as ``pass=`` is refused by name). Errors
name the variable or argument, never the URL (it may hold a password).
"""

from __future__ import annotations

import dataclasses
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from monps_store.config.settings import ISOLATION_LEVELS, Secret, Settings
from monps_store.errors import ConfigError

URL_SCHEMES = ("postgresql", "postgres")
# Connection parameters a URL may carry in its query string that map onto Settings fields;
# any other query parameter (sslmode, target_session_attrs, ...) is passed to libpq as is.
_URL_FIELDS = {"host", "port", "user", "password", "dbname"}
# Other libpq parameters whose value is a secret: kept in a Secret like the password.
_SECRET_PARAMS = {"sslpassword"}
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


def replica_fields(urls, variable: str) -> tuple[list[dict], list[str]]:
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
    found, problems = replica_fields(urls, variable)
    if problems:
        raise ConfigError(problems)
    return dataclasses.replace(settings, replicas=tuple(
        dataclasses.replace(settings, **fields, source=variable, replicas=(),
                            migration_url=None, listen_url=None) for fields in found))


def from_url(url: str, **overrides) -> Settings:
    """Settings for ``url`` with the defaults for everything else; reads no environment."""
    return Settings(**(parse_url(url) | {"source": "url"} | overrides))
