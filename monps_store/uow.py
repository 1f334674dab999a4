"""The unit of work: one transaction across any number of repository calls, with audit info.

    with monps_store.unit_of_work(actor="cron:odds", reason="nightly import") as uow:
        odds.upsert(rows)
        crud.update(team, roi=4.2)
        if something_wrong:
            uow.rollback()                    # undo this scope's writes so far, keep going

Commits on a clean exit; an exception rolls back everything inside the scope and propagates.
A unit of work inside another is a savepoint: its failure undoes only its own part. Actor and
reason apply to every write inside, nested scopes inheriting what they do not set.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import peewee

from monps_store import audit, database


@contextlib.contextmanager
def unit_of_work(actor: str | None = None,
                 reason: str | None = None) -> Iterator[peewee._transaction | peewee._savepoint]:
    """A transaction (savepoint when nested) with ``actor``/``reason`` for its writes. Yields
    the transaction: ``rollback()`` undoes its writes so far, ``commit()`` makes them final."""
    with database.connection(), audit.audit_context(actor, reason), \
            database.current().atomic() as transaction:
        yield transaction
