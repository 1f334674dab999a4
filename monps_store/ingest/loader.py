"""The ingest's loading side: one transaction in the calling thread, each chunk COPYed straight
into ``public.odds`` in a savepoint, or staged and merged when it meets stored keys.

    from monps_store.ingest import loader
    report = loader.ingest_odds("odds.csv", skip_invalid=True, rejects="rejects.csv")

``ingest_odds`` starts the producer (``producer``) on the rows of the source (``reader``) and
consumes its chunks; docs/ARCHITECTURE.md ("Odds ingest") has the measurements behind the shape.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import os
import sys
import threading
import time

import psycopg2

from monps_store import audit, events, partitions, translate
from monps_store.database import advisory_lock_key, connection, db
from monps_store.ingest.producer import CHUNK_ROWS, IngestReport, Producer, drain
from monps_store.ingest.reader import Mode, key_of, open_source
from monps_store.ingest.rules import COLUMNS, KEY, VALUES, short

# The package's name, as before it was split: log lines (the CLI prints the logger's name)
# and any filter configured on it stay as they were.
logger = logging.getLogger("monps_store.ingest")

CHANGED_CHANNEL = "odds_changed"  # published on commit: {"match_ids": [...], "table": ...}
# Sent with every row; created_at and updated_at come from their column default, now() (the
# load's transaction start): parsing two more timestamps per row cost the server a quarter.
AUDIT = ("created_by", "updated_by", "change_reason")
_LOADED = ", ".join((*AUDIT, *COLUMNS))
_STAGE = """
CREATE TEMP TABLE IF NOT EXISTS monps_odds_stage
    (LIKE public.odds INCLUDING DEFAULTS) ON COMMIT DROP
"""
# Built from the ingest's own column constants, never from input.
_COPY_DIRECT = f"COPY public.odds ({_LOADED}) FROM STDIN WITH (FORMAT csv)"
_COPY_STAGE = f"COPY monps_odds_stage ({_LOADED}) FROM STDIN WITH (FORMAT csv)"
_MERGE = f"""
WITH merged AS (
    INSERT INTO public.odds AS o ({_LOADED})
    SELECT {_LOADED} FROM monps_odds_stage  -- one row per key (see Producer)
    ON CONFLICT ({', '.join(KEY)}) DO UPDATE SET
        {', '.join(f'{c} = EXCLUDED.{c}' for c in VALUES)},
        updated_at = clock_timestamp(), updated_by = EXCLUDED.updated_by,
        change_reason = EXCLUDED.change_reason
    WHERE ({', '.join(f'o.{c}' for c in VALUES)})
          IS DISTINCT FROM ({', '.join(f'EXCLUDED.{c}' for c in VALUES)})
    -- A partitioned table cannot return xmax: a new row has updated_at = now() (its
    -- default, the transaction's start), an updated one the later clock_timestamp().
    RETURNING o.match_id, (o.updated_at = now()) AS inserted
)
SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted),
       array_agg(DISTINCT match_id)
FROM merged
"""  # noqa: S608
_COPY_BLOCK = 1 << 20  # characters handed to the driver at a time


def ingest_odds(source, *, skip_invalid: bool = False, rejects=None,
                chunk_rows: int = CHUNK_ROWS, progress=None) -> IngestReport:
    """Upsert odds from ``source`` (a CSV path, a text file object, or an iterable of mappings
    with the ``COLUMNS`` keys) in one transaction. ``progress(rows_done)`` is called after each
    chunk. Raises InvalidInput (strict mode) having written nothing."""
    start = time.perf_counter()
    with contextlib.ExitStack() as stack:
        mode = Mode()
        name, rows = open_source(source, stack, mode)
        rejects_writer = None
        if rejects is not None:
            target = stack.enter_context(open(rejects, "w", newline="", encoding="utf-8")) \
                if isinstance(rejects, (str, os.PathLike)) else rejects
            rejects_writer = csv.writer(target, lineterminator="\n")
            rejects_writer.writerow(["line", "reason", *COLUMNS])
        producer = Producer(rows, name, skip_invalid, rejects_writer, chunk_rows,
                             _audit_prefix(), mode)
        producer.start()
        try:
            report = _load(producer, progress)
        finally:
            producer.stop.set()
            drain(producer)
            producer.join()
    report.seconds = time.perf_counter() - start
    return report


def _audit_prefix() -> str:
    """The audit columns of every loaded row, as the start of its CSV line."""
    info = audit.current()
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(
        [info.actor, info.actor, info.reason, ""])  # None: an empty field, NULL
    return buffer.getvalue()


def _load(producer: Producer, progress) -> IngestReport:
    """Each chunk: COPY straight into ``public.odds`` inside a savepoint (every row new: the
    speed of COPY); if a row's key is already stored, that chunk goes through the staging
    table instead and one ``INSERT ... ON CONFLICT DO UPDATE ... WHERE (values) IS DISTINCT
    FROM (new values)``: new rows inserted, changed ones updated, identical ones left alone.
    After a chunk that met stored keys the next one is staged too, until one stages without
    a conflict."""
    totals = {"inserted": 0, "updated": 0, "distinct": 0, "staged": 0}
    known_months: set = set()
    changed_matches: set[str] = set()  # of rows inserted or changed
    direct = True
    with connection(), db.atomic(), translate.raw_cursor_errors(db):
        _lock_odds_ingest()
        cursor = db.cursor()
        staged_before = False
        while True:
            item = producer.chunks.get()
            if item is None:
                break
            texts, keys, months, count, matches = item
            distinct = len(texts)
            partitions.ensure(months, db, known_months)
            if direct and _copy_direct(cursor, "".join(texts)):
                inserted, updated = distinct, 0  # the unique index let no key in twice
                changed_matches |= matches
            else:
                if not staged_before:
                    cursor.execute(_STAGE)
                    staged_before = True
                if keys is None:  # each key once already
                    text = "".join(texts)
                else:
                    text, distinct = _last_of_each_key(texts, keys, len(producer.prefix))
                inserted, updated, merged_matches = _stage_and_merge(cursor, text)
                changed_matches.update(merged_matches or ())
                direct = inserted == distinct  # no stored key met: try COPY again
            producer.mode.keyed = not direct  # merged chunks need their keys
            totals["inserted"] += inserted
            totals["updated"] += updated
            totals["distinct"] += distinct
            totals["staged"] += count
            if progress is not None:
                progress(totals["staged"])
        if producer.error is not None:
            raise producer.error  # inside the transaction: everything is rolled back
        # Delivered when the load commits, never if it rolls back.
        events.publish_batched(CHANGED_CHANNEL, "match_ids", sorted(changed_matches),
                               table="public.odds")
    report = producer.report
    report.inserted, report.updated = totals["inserted"], totals["updated"]
    report.duplicates = totals["staged"] - totals["distinct"]
    report.unchanged = totals["distinct"] - report.inserted - report.updated
    return report


def _last_of_each_key(texts: list[str], keys: list, prefix_length: int) -> tuple[str, int]:
    """The chunk with each natural key once (its last line), and how many keys."""
    last = {}
    for text, key in zip(texts, keys, strict=True):
        last[key if key is not None else key_of(text, prefix_length)] = text
    return "".join(last.values()), len(last)


def _copy_direct(cursor, text: str) -> bool:
    """COPY ``text`` into public.odds; False (and nothing of it kept) if a key was stored."""
    cursor.execute("SAVEPOINT monps_ingest_chunk")
    try:
        with _quiet_copy_errors():
            cursor.copy_expert(_COPY_DIRECT, io.StringIO(text), size=_COPY_BLOCK)
    except psycopg2.errors.UniqueViolation:
        cursor.execute("ROLLBACK TO SAVEPOINT monps_ingest_chunk")
        return False
    cursor.execute("RELEASE SAVEPOINT monps_ingest_chunk")
    return True


def _stage_and_merge(cursor, text: str) -> tuple[int, int, list[str] | None]:
    cursor.execute("TRUNCATE monps_odds_stage")
    with _quiet_copy_errors():
        cursor.copy_expert(_COPY_STAGE, io.StringIO(text), size=_COPY_BLOCK)
    cursor.execute(_MERGE)
    return cursor.fetchone()


def _lock_odds_ingest() -> None:
    """Queue behind any other odds ingest until this transaction ends.

    Each load is one transaction that locks its rows chunk by chunk, in key order only within a
    chunk: two loads of overlapping files would lock the same keys in different orders and
    deadlock. Taking one transaction-level advisory lock first makes concurrent loads run one
    after the other, each with the whole table to itself, so the result equals a serial load.
    """
    key = advisory_lock_key("monps_store.ingest:public.odds")
    if not db.execute_sql("SELECT pg_try_advisory_xact_lock(%s)", (key,)).fetchone()[0]:
        logger.info("another odds ingest is running; waiting for it to finish")
        db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (key,))


# -- psycopg2's own traceback when the connection dies during a COPY --------------------------

_copying = threading.local()  # .active: this thread is inside copy_expert
_hook_lock = threading.Lock()  # held only to count COPYs and swap the hook, never across I/O
_hook_installed: _CopyExceptHook | None = None
_copies_running = 0  # in all threads


@contextlib.contextmanager
def _quiet_copy_errors():
    """Keep psycopg2 from printing a traceback when the connection dies during a COPY.

    In that case psycopg2 reports a ``SystemError`` (caused by the server's error) through
    ``sys.excepthook`` before raising its ``OperationalError``, which is what the caller gets
    (as ConnectionLost). The printed one is logged at DEBUG instead; every other uncaught
    exception still reaches the previous hook. The filtering hook is installed only while some
    thread runs a COPY, and put back when the last one ends (unless something replaced it
    meanwhile: then it stays, passing everything on, rather than undo that replacement).
    """
    global _hook_installed, _copies_running
    with _hook_lock:
        if _copies_running == 0:
            _hook_installed = sys.excepthook = _CopyExceptHook(sys.excepthook)
        _copies_running += 1
    _copying.active = True
    try:
        yield
    finally:
        _copying.active = False
        with _hook_lock:
            _copies_running -= 1
            hook = _hook_installed
            if _copies_running == 0 and hook is not None and sys.excepthook is hook:
                sys.excepthook = hook.previous
                _hook_installed = None


class _CopyExceptHook:
    def __init__(self, previous):
        self.previous = previous

    def __call__(self, exc_type, exc, tb):
        if (getattr(_copying, "active", False) and issubclass(exc_type, SystemError)
                and isinstance(exc.__cause__, psycopg2.Error)):
            logger.debug("psycopg2 reported during COPY: %s", short(str(exc.__cause__)))
            return
        self.previous(exc_type, exc, tb)
