"""The settings value: :class:`Settings` (frozen) and :class:`Secret` (never shows itself).

    from monps_store.config import Settings, Secret
    settings = Settings(database="monps", user="app", password=Secret("pw"))
    settings.display_url        # 'postgresql://app:***@localhost:5432/monps'
    settings.connect_params()   # for the driver: the one place the password is revealed

Every way of making settings (``load_settings``, ``from_url``, ``from_init_params``,
``dataclasses.replace``) ends in ``Settings(...)``, whose ``check_ranges`` reports every value
out of range by the variable that sets it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from monps_store.errors import ConfigError

MASK = "***"
# Settings that end up in output (check, logs, pg_stat_activity) and in libpq errors; a line
# break in one is almost always a .env quote left open that swallowed the following lines.
_TEXT_VARIABLES = (("DB_HOST", "host"), ("DB_USER", "user"), ("DB_NAME", "database"),
                   ("DB_APPLICATION_NAME", "application_name"))
POOLERS = ("none", "pgbouncer")
ISOLATION_LEVELS = ("READ UNCOMMITTED", "READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE")


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
