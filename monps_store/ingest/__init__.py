"""Bulk upsert of bookmaker odds through COPY: validated, streamed, idempotent.

    from monps_store import ingest
    report = ingest.ingest_odds("odds.csv")                    # or an iterable of dicts
    report.inserted, report.updated, report.unchanged, report.rejected

How it runs: a producer thread reads the CSV (or the rows), validates every row and writes the
good ones into chunks of CSV lines (a plain line in the standard column order is split and
checked field by field, each distinct time and price once per load, and passed on as read;
anything else goes through ``validate()``). The calling thread, inside one transaction, first
creates the month partitions a chunk needs, then COPYs it straight into ``public.odds`` inside
a savepoint. A chunk that meets a stored key is undone and merged instead, through a temporary
table::

    INSERT INTO odds SELECT ... FROM stage
    ON CONFLICT (natural key) DO UPDATE SET ... WHERE (values) IS DISTINCT FROM (EXCLUDED values)

so validation of the next chunk overlaps with the server's work on this one, memory stays
bounded by a few chunks whatever the file size, a row identical to the stored one is left alone
(loading the same file twice changes nothing), the last occurrence of a key in a chunk wins
(a later chunk's occurrence then updates it), and concurrent loads queue on an advisory lock.
When the load commits, ``odds_changed`` events (``monps_store.events``) name the match ids of
every row inserted or changed, as many events as the payload limit needs; none if nothing
changed.
``created_by``/``updated_by``/``change_reason`` come from the audit scope; ``created_at`` and
``updated_at`` are the load's transaction time (an updated row: the time of its update).

Input rules (README, "Odds ingest and CLV settlement"): UTF-8, a header row, the ten columns in
any order, no others; ``price`` a decimal > 1 with at most 3 decimal places (at most 7 digits
before the point; zeros past the third place are padding: ``2.1000`` is ``2.100``); times
ISO 8601 with an offset (``Z`` allowed): a time without one is rejected, never guessed; text
fields non-empty and free of NUL bytes. Strict mode (the default)
stops at the first bad row and writes nothing; the error names the line, the column and the
value. ``skip_invalid=True`` loads the good rows and hands each bad one, with its reason, to
``rejects`` (a path or a writable text file, written as CSV).

Modules, each importing only those named before it: ``rules`` (the input rules:
``validate()`` and the columns), ``reader`` (the CSV, its per-line fast path, or an iterable,
as rows), ``producer`` (the thread that checks the rows and cuts them into chunks), ``loader``
(the transaction: COPY, staging, merge, and ``ingest_odds`` itself). They import one another's
names directly (``from monps_store.ingest.rules import PRICE``): on the hot path a module
global costs what it did before the split, where ``rules.PRICE`` would add a lookup.
"""

from monps_store.ingest.loader import AUDIT, CHANGED_CHANNEL, ingest_odds
from monps_store.ingest.producer import CHUNK_ROWS, SKIP_INVALID_HINT, IngestReport
from monps_store.ingest.reader import fast_path, key_of
from monps_store.ingest.rules import COLUMNS, KEY, VALUES, BadRow, validate

__all__ = ["AUDIT", "CHANGED_CHANNEL", "CHUNK_ROWS", "COLUMNS", "KEY", "SKIP_INVALID_HINT",
           "VALUES", "BadRow", "IngestReport", "fast_path", "ingest_odds", "key_of", "validate"]
