"""The month partitions of ``public.odds`` (partitioned by range on ``collected_at``).

    from monps_store import partitions
    partitions.ensure_for([moment, ...])     # create the months these moments need
    partitions.listing()                     # [Partition(name, start, end, estimated_rows,
                                             #            bytes), ...]
    partitions.create_ahead(3)               # this month and the next 3
    partitions.drop_older(12)                # detach and drop months before the last 12

Months are UTC months: ``odds_y2026m12`` holds ``[2026-12-01 00:00 UTC, 2027-01-01 00:00 UTC)``.
There is no DEFAULT partition: a row for a month without one is refused by the server, so the
write paths (the ingest, ``odds.upsert``, ``crud`` and ``save()`` on ``Odds``) create the month
first. They do so through ``public.monps_odds_partition(timestamptz)`` (migration
003_partition_odds), which runs with the table owner's rights: the application role may
create partitions without owning the table. Dropping is the owner's: ``drop_older`` needs the
role that owns ``public.odds`` (the CLI uses ``MIGRATION_DATABASE_URL`` when set).
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable
from dataclasses import dataclass

import peewee

from monps_store import database as _database
from monps_store.errors import InvalidInput

TABLE = "public.odds"
_NAME = re.compile(r"odds_y([0-9]{4})m([0-9]{2})")
UTC = datetime.UTC

Month = tuple[int, int]  # (year, month), UTC

# The planner's row estimate (-1: never analysed or vacuumed), never a count(*): counting a
# partition reads all of it (8 s for one loaded month).
_LIST = """
SELECT c.relname, c.reltuples::bigint,
       pg_total_relation_size(c.oid)
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'public.odds'::regclass
ORDER BY c.relname
"""


@dataclass(frozen=True)
class Partition:
    name: str
    start: datetime.datetime | None   # None for a partition this package did not name
    end: datetime.datetime | None
    estimated_rows: int | None        # the planner's estimate; None: never analysed
    bytes: int                        # table, indexes and TOAST


def month_of(moment: datetime.datetime) -> Month:
    utc = moment.astimezone(UTC)
    return utc.year, utc.month


def month_start(month: Month) -> datetime.datetime:
    return datetime.datetime(month[0], month[1], 1, tzinfo=UTC)


def _month_end(month: Month) -> datetime.datetime:
    """The exclusive end of ``month``; for December 9999, the last moment Python can hold."""
    following = add_months(month, 1)
    if following[0] > datetime.MAXYEAR:
        return datetime.datetime.max.replace(tzinfo=UTC)
    return month_start(following)


def add_months(month: Month, count: int) -> Month:
    index = month[0] * 12 + month[1] - 1 + count
    return index // 12, index % 12 + 1


def _month_of_name(name: str) -> Month | None:
    found = _NAME.fullmatch(name)
    return (int(found.group(1)), int(found.group(2))) if found else None


def existing(database: peewee.Database | None = None) -> set[Month]:
    """The months that have a partition, as this connection sees the catalog."""
    database = database or _database.current()
    rows = database.execute_sql(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'public.odds'::regclass").fetchall()
    return {m for (name,) in rows if (m := _month_of_name(name)) is not None}


def ensure(months: Iterable[Month], database: peewee.Database | None = None,
           known: set[Month] | None = None) -> list[str]:
    """Create the partitions of ``months`` that are missing, in the caller's transaction;
    returns the names created. ``known`` (months already checked in this transaction) is
    read and extended, which saves the catalog query for months seen before."""
    database = database or _database.current()
    wanted = set(months) - (known or set())
    if not wanted:
        return []
    present = existing(database)
    if known is not None:
        known |= present
    created = []
    for month in sorted(wanted - present):
        (name,) = database.execute_sql("SELECT public.monps_odds_partition(%s)",
                                       (month_start(month),)).fetchone()
        created.append(name)
        if known is not None:
            known.add(month)
    return created


def ensure_for(moments: Iterable[datetime.datetime | None],
               database: peewee.Database | None = None) -> list[str]:
    """``ensure`` for the months of ``moments`` (aware datetimes; None is skipped)."""
    return ensure({month_of(m) for m in moments if isinstance(m, datetime.datetime)
                   and m.utcoffset() is not None}, database)


def listing(database: peewee.Database | None = None) -> list[Partition]:
    """Every partition of ``public.odds``, oldest month first: one catalog query, so rows are
    the planner's estimates (exact after an ANALYZE of a small table), None for a partition
    never analysed (``ANALYZE public.odds`` fills them in; autovacuum does so in time)."""
    database = database or _database.current()
    result = []
    for name, rows, size in database.execute_sql(_LIST).fetchall():
        month = _month_of_name(name)
        start = month_start(month) if month else None
        end = _month_end(month) if month else None
        result.append(Partition(name, start, end, rows if rows >= 0 else None, size))
    return sorted(result, key=lambda p: (p.start is None, p.start or p.name, p.name))


def current_month(now: datetime.datetime | None = None) -> Month:
    return month_of(now or datetime.datetime.now(UTC))


def create_ahead(count: int, database: peewee.Database | None = None,
                 now: datetime.datetime | None = None) -> list[str]:
    """Make sure this month and the next ``count`` have partitions; returns those created."""
    if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= 1200:
        raise InvalidInput(f"ahead must be a whole number of months, 0 to 1200, got {count!r}")
    database = database or _database.current()
    this = current_month(now)
    with database.atomic():
        return ensure([add_months(this, n) for n in range(count + 1)], database)


def drop_older(retain: int, database: peewee.Database | None = None,
               now: datetime.datetime | None = None) -> list[str]:
    """Detach and drop every partition whose month ends before the last ``retain`` whole
    months: with ``retain=3`` on 2026-12-02, September, October, November and December stay,
    August and older go (with their rows). One transaction; returns the names dropped."""
    if isinstance(retain, bool) or not isinstance(retain, int) or retain < 1:
        raise InvalidInput(f"retain must be a whole number of months >= 1, got {retain!r}")
    database = database or _database.current()
    cutoff = month_start(add_months(current_month(now), -retain))
    dropped = []
    with database.atomic():
        for partition in listing(database):
            if partition.end is not None and partition.end <= cutoff:
                database.execute_sql(
                    f'ALTER TABLE public.odds DETACH PARTITION public."{partition.name}"')
                database.execute_sql(f'DROP TABLE public."{partition.name}"')
                dropped.append(partition.name)
    return dropped
