"""Schema migrations: peewee-migrate, made safe for two schemas and for concurrent runs.

    from monps_store import migrate
    with migrate.Migrations.open(settings) as migrations:   # own connection + advisory lock
        migrations.apply()

What this adds to peewee-migrate 2.3:

- a dedicated, unpooled connection (``MIGRATION_DATABASE_URL`` when set) holding a session-level
  advisory lock for the whole command, so a second run waits (bounded) and then finds nothing
  left to do;
- a history table of its own, ``public.monps_migrations``, through a subclass of peewee-migrate's
  model (its ``Router(schema=...)`` would mutate the shared ``MigrateHistory`` instead);
- ``SET LOCAL search_path TO quantum, public`` at the start of every migration, because
  peewee-migrate's column operations are not schema-qualified;
- each migration in its own transaction: a failing one leaves no change and no history row;
- ``stamp`` that first compares the live schema with the models, ``--sql`` dry runs, generated
  migrations that import what they use.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import re
import time
from functools import cached_property
from pathlib import Path

import peewee
from peewee_migrate import Migrator, Router
from peewee_migrate.models import MigrateHistory
from playhouse.postgres_ext import DateTimeTZField

from monps_store import audit, config, drift, errors

logger = logging.getLogger(__name__)

HISTORY_TABLE = "monps_migrations"
# The advisory lock every schema-changing command holds (bigint key: "monps" in ASCII).
LOCK_KEY = 0x6D6F6E7073
SEARCH_PATH = "quantum, public"
_SAVEPOINT = re.compile(r"\s*(SAVEPOINT|RELEASE SAVEPOINT|ROLLBACK TO SAVEPOINT)\b", re.I)


def default_dir() -> Path:
    """The migrations shipped with the package; in a source checkout, where the package is
    imported from the tree itself, the repository's top-level ``migrations/`` beside it."""
    # By name: the module exists only in an installed package (mypy sees either layout).
    spec = importlib.util.find_spec("monps_store.migrations")
    if spec is None or spec.origin is None:
        return Path(__file__).resolve().parent.parent / "migrations"
    return Path(spec.origin).parent


class History(MigrateHistory):
    migrated_at = DateTimeTZField(default=audit.now)

    class Meta:
        table_name = HISTORY_TABLE
        schema = "public"


class SchemaAwareMigrator(Migrator):
    """Runs a migration's operations with the quantum schema on the search path."""

    def __call__(self):
        if self.__ops__:
            ops, self.__ops__ = self.__ops__, []
            # LOCAL: ends with the migration's transaction, never leaks to the connection.
            self.sql(f"SET LOCAL search_path TO {SEARCH_PATH}")
            self.__ops__.extend(ops)
        super().__call__()


class _QuietLogger(logging.LoggerAdapter):
    """peewee-migrate logs failures with a traceback; the caller reports them in one line."""

    def exception(self, msg, *args, **kwargs):
        self.logger.debug(msg, *args, exc_info=True)

    def warning(self, msg, *args, **kwargs):
        # "No changes found." of create --auto: the caller says it once, in its own words.
        log = self.logger.debug if str(msg).startswith("No changes found") else \
            self.logger.warning
        log(msg, *args, **kwargs)


class _Router(Router):
    def __init__(self, database, migrate_dir: Path):
        super().__init__(database, migrate_dir=migrate_dir, migrate_table=HISTORY_TABLE,
                         schema="public", migrator_class=SchemaAwareMigrator,
                         logger=_QuietLogger(logger, {}))

    @cached_property
    def model(self):
        History.bind(self.database)  # type: ignore[arg-type]  # a Database, not a Proxy
        # Only when missing: CREATE TABLE IF NOT EXISTS still needs CREATE on the schema, which
        # an application role (status, history) does not have.
        if not self.database.table_exists(HISTORY_TABLE, schema="public"):
            History.create_table()
        return History

    @property
    def done(self) -> list[str]:
        # Reading the history must not create it (status on a fresh database writes nothing).
        if not self.database.table_exists(HISTORY_TABLE, schema="public"):
            return []
        return [row.name for row in self.model.select().order_by(History.id)]


class _DryRun(Exception):
    pass


class Migrations:
    """The migration commands, on one database connection that holds the migration lock."""

    def __init__(self, database: peewee.PostgresqlDatabase, migrate_dir: Path | None = None):
        self.database = database
        self.migrate_dir = Path(migrate_dir) if migrate_dir else default_dir()
        if not self.migrate_dir.is_dir():
            raise errors.MigrationError(f"migration directory {self.migrate_dir} does not exist")
        self.router = _Router(database, self.migrate_dir)

    @classmethod
    @contextlib.contextmanager
    def open(cls, settings: config.Settings, migrate_dir=None, *, lock: bool = True,
             lock_timeout: float = 120):
        """Connect (``MIGRATION_DATABASE_URL`` when set), take the lock, yield, release."""
        database = connect(settings)
        try:
            with contextlib.ExitStack() as stack:
                if lock:
                    stack.enter_context(advisory_lock(database, lock_timeout))
                yield cls(database, migrate_dir)
        finally:
            database.close()

    # -- reading -------------------------------------------------------------------------

    def applied(self) -> list[tuple[str, object]]:
        """(name, applied at) of every applied migration, oldest first."""
        if not self.database.table_exists(HISTORY_TABLE, schema="public"):
            return []
        return [(row.name, row.migrated_at)
                for row in self.router.model.select().order_by(History.id)]

    def pending(self) -> list[str]:
        return self.router.diff

    def available(self) -> list[str]:
        return list(self.router.todo)

    def missing(self) -> list[str]:
        """Applied migrations whose file is not in the migration directory (any more)."""
        files = set(self.available())
        return [name for name, _ in self.applied() if name not in files]

    def _pending_up_to(self, to: str | None) -> list[str]:
        pending = self.pending()
        if to is None:
            return pending
        if to not in self.available():
            raise errors.MigrationError(
                f"no migration named {to!r}; available: {', '.join(self.available())}")
        if to not in pending:
            return []
        return pending[:pending.index(to) + 1]

    # -- changing ------------------------------------------------------------------------

    def apply(self, to: str | None = None, on_applied=None) -> list[str]:
        """Apply pending migrations (up to and including ``to``), each in its own transaction;
        ``on_applied(name)`` is called after each commit."""
        names = self._pending_up_to(to)
        for name in names:
            self._run(name)
            if on_applied is not None:
                on_applied(name)
        return names

    def _run(self, name, *, downgrade=False):
        try:
            self.router.run_one(name, self.router.migrator, fake=False, downgrade=downgrade)
        except Exception as exc:
            action = "rollback of" if downgrade else "migration"
            hint = ""
            if getattr(getattr(exc, "orig", None) or exc, "pgcode", None) == "42501":
                hint = (" (migrations need the schema owner: set MIGRATION_DATABASE_URL to the "
                        "owner role's URL)")
            raise errors.MigrationError(
                f"{action} {name} failed and was undone: {_first_line(exc)}{hint}") from exc

    def sql(self, to: str | None = None) -> list[tuple[str, list[str]]]:
        """The statements pending migrations would run: executed in a transaction that is
        rolled back, so nothing changes."""
        names = self._pending_up_to(to)
        result: list[tuple[str, list[str]]] = []
        cursor = self.database.cursor()

        def record(event):
            # Savepoints are peewee's own nesting inside this dry run, not the migration's SQL.
            if event.exception is None and not _SAVEPOINT.match(event.sql):
                result[-1][1].append(cursor.mogrify(event.sql, event.params or None).decode())

        migrator = self.router.migrator
        self.database.query_hooks.append(record)
        try:
            with self.database.atomic():
                for name in names:
                    result.append((name, []))
                    migrate_fn, _ = self.router.read(name)
                    migrate_fn(migrator, self.database, fake=False)
                    migrator()
                raise _DryRun
        except _DryRun:
            pass
        finally:
            self.database.query_hooks.remove(record)
        return result

    def rollback(self, count: int = 1) -> list[str]:
        """Undo the last ``count`` applied migrations, newest first, each in its transaction."""
        applied = [name for name, _ in self.applied()]
        if count < 1:
            raise errors.MigrationError(f"--count must be at least 1, got {count}")
        if count > len(applied):
            raise errors.MigrationError(
                f"cannot roll back {count} migration(s): only {len(applied)} applied")
        undone = list(reversed(applied))[:count]
        for name in undone:
            self._run(name, downgrade=True)
        if count == len(applied):
            # Nothing applied any more: leave no project object behind, history included.
            self.database.execute_sql(f'DROP TABLE IF EXISTS "public"."{HISTORY_TABLE}"')
            self.router.__dict__.pop("model", None)  # recreated by the next apply
        return undone

    def stamp(self, force: bool = False) -> list[str]:
        """Record every migration as applied without running it, after checking that the live
        schema matches the models (``force`` skips the check)."""
        if not force:
            differences = drift.compare(self.database)
            if differences:
                raise errors.SchemaDrift(
                    "refusing to stamp: the database does not match the models "
                    "(fix it, or pass --force)", differences)
        names = self.pending()
        with self.database.atomic():
            for name in names:
                self.router.model.create(name=name)
        return names

    def reset(self) -> tuple[list[str], list[str]]:
        """Roll every applied migration back, then apply all of them again."""
        undone = self.rollback(len(self.applied())) if self.applied() else []
        return undone, self.apply()

    def create(self, name: str, auto: bool = False) -> Path | None:
        """Write a new migration file (``auto``: the changes from the models); its path, or
        None when ``auto`` found no change."""
        if not re.fullmatch(r"[a-z0-9_]+", name):
            raise errors.MigrationError(
                f"migration name {name!r} must be lowercase letters, digits and underscores")
        if {"site-packages", "dist-packages"} & set(self.migrate_dir.resolve().parts):
            raise errors.MigrationError(
                f"create would write into the installed package ({self.migrate_dir}), where "
                "the next upgrade loses it: run it in a development checkout (pip install -e "
                ".) or pass --migrate-dir with your project's migration directory")
        if auto:
            from monps_store.models import ALL_MODELS

            created = self.router.create(name, auto=list(ALL_MODELS))
        else:
            created = self.router.create(name)
        if created is None:
            return None
        path = self.migrate_dir / f"{created}.py"
        _fix_generated(path)
        return path


def _fix_generated(path: Path) -> None:
    """peewee-migrate writes ``rounding=ROUND_HALF_EVEN`` and ``Decimal(...)`` without importing
    them (upstream issue #86): add the import so the file runs."""
    text = path.read_text(encoding="utf-8")
    if ("ROUND_HALF_EVEN" in text or "Decimal(" in text) and "from decimal import" not in text:
        text = text.replace("import peewee as pw\n",
                            "from decimal import ROUND_HALF_EVEN, Decimal\n\nimport peewee as pw\n",
                            1)
        path.write_text(text, encoding="utf-8")


def connect(settings: config.Settings) -> peewee.PostgresqlDatabase:
    """A plain (unpooled) database for migration commands: ``MIGRATION_DATABASE_URL`` when set,
    else the application settings."""
    if settings.pooler != "none" and not settings.migration_url:
        raise errors.MigrationError(
            "DB_POOLER=pgbouncer: migration commands need a session of their own (advisory "
            "lock, one transaction per migration); set MIGRATION_DATABASE_URL to the server "
            "itself, not to the pooler")
    if settings.migration_url:
        settings = config.from_url(settings.migration_url.reveal(),
                                   connect_timeout=settings.connect_timeout,
                                   application_name=settings.application_name)
    params = settings.connect_params()
    params["application_name"] = f"{settings.application_name}:migrate"[:63]
    params.pop("options", None)  # no statement timeout for schema changes
    database = peewee.PostgresqlDatabase(params.pop("dbname", None) or "", **params)
    database.deferred = False
    try:
        database.connect()
    except peewee.OperationalError as exc:
        raise errors.ConnectFailed(
            f"cannot connect to {settings.display_url}: {_first_line(exc)}") from exc
    return database


@contextlib.contextmanager
def advisory_lock(database, timeout: float):
    """Hold the migration advisory lock (session level, on this connection) for the block.

    A session-level lock on a dedicated connection: it spans the several transactions of one
    command, and it is released if the process dies (the server ends the session).
    """
    deadline = time.monotonic() + timeout
    waited = False
    while not database.execute_sql("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()[0]:
        if time.monotonic() >= deadline:
            raise errors.MigrationLocked(
                f"another migration run still holds the lock after {timeout:g}s; nothing done")
        if not waited:
            logger.warning("another migration run holds the lock; waiting up to %gs", timeout)
            waited = True
        time.sleep(0.2)
    try:
        yield
    finally:
        with contextlib.suppress(peewee.DatabaseError, peewee.InterfaceError):
            database.execute_sql("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
