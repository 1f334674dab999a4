"""The unit of work: one transaction across any number of repository calls, with audit info.

    with monps_store.unit_of_work(actor="cron:odds", reason="nightly import") as uow:
        odds.upsert(rows)
        crud.update(team, roi=4.2)
        if something_wrong:
            uow.rollback()                    # undo this scope's writes so far, keep going

Commits on a clean exit; an exception rolls back everything inside the scope and propagates.
A unit of work inside another is a savepoint: its failure undoes only its own part. Actor and
reason apply to every write inside, nested scopes inheriting what they do not set.
``isolation_level="serializable"`` (or ``"repeatable read"``, ...) begins the transaction at
that level; only the outermost unit can choose it (``cron.job`` retries serialization failures).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import peewee

from monps_store import audit, config, database, errors


@contextlib.contextmanager
def unit_of_work(actor: str | None = None, reason: str | None = None,
                 isolation_level: str | None = None,
                 ) -> Iterator[peewee._transaction | peewee._savepoint]:
    """A transaction (savepoint when nested) with ``actor``/``reason`` for its writes. Yields
    the transaction: ``rollback()`` undoes its writes so far, ``commit()`` makes them final."""
    level = check_isolation_level(isolation_level, database.current().in_transaction())
    options = {"isolation_level": level} if level else {}
    with database.connection(), audit.audit_context(actor, reason), \
            database.current().atomic(**options) as transaction:
        yield transaction


def check_isolation_level(value: object, nested: bool) -> str | None:
    """A unit of work's ``isolation_level`` as PostgreSQL spells it, or InvalidInput naming the
    value: an unknown level, or any level for a unit nested in an open transaction."""
    try:
        level = config.isolation_level(value, "unit_of_work(isolation_level=...)")
    except ValueError as exc:
        raise errors.InvalidInput(str(exc)) from None
    if level is not None and nested:
        raise errors.InvalidInput(
            f"unit_of_work(isolation_level={value!r}) inside an open transaction: a nested unit "
            "is a savepoint of that transaction and cannot change its level. Choose the level "
            "on the outermost unit of work")
    return level
