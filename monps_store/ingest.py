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
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import io
import itertools
import logging
import os
import queue
import re
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

import psycopg2

from monps_store import audit, errors, events, partitions, translate
from monps_store.database import advisory_lock_key, connection, db
from monps_store.models import checks

logger = logging.getLogger(__name__)

COLUMNS = ("match_id", "league", "home_team", "away_team", "bookmaker", "market", "selection",
           "price", "commence_time", "collected_at")
KEY = ("match_id", "bookmaker", "market", "selection", "collected_at")
VALUES = tuple(c for c in COLUMNS if c not in KEY)  # what an update may change
CHUNK_ROWS = 20_000
SKIP_INVALID_HINT = "pass skip_invalid=True to load the good rows"  # the CLI names its flag
CHANGED_CHANNEL = "odds_changed"  # published on commit: {"match_ids": [...], "table": ...}

_TEXT = tuple(i for i, c in enumerate(COLUMNS) if c not in ("price", "commence_time",
                                                            "collected_at"))
_PRICE_AT, _TIMES_AT = COLUMNS.index("price"), (COLUMNS.index("commence_time"),
                                                COLUMNS.index("collected_at"))
# ASCII digits only: Python's \d and float() accept other scripts' digits, PostgreSQL does not.
# Zeros padding the 3 places change no value (2.1000 is 2.100); 15 places at most in all.
_PRICE = re.compile(r"[0-9]{1,7}(\.[0-9]{1,3}0{0,12})?")
_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?"
                   r"(Z|[+-][0-9]{2}(:?[0-9]{2})?)")
# NUL cannot be stored in text; lone surrogates are what undecodable bytes become (or come
# from an iterable); a bare CR would end the line in the COPY stream.
_FORBIDDEN = re.compile("[\x00\r\ud800-\udfff]")


@dataclass
class IngestReport:
    rows: int = 0          # data rows read
    inserted: int = 0
    updated: int = 0       # existing rows whose values changed
    unchanged: int = 0     # rows identical to what was stored
    duplicates: int = 0    # repeats of a key within one chunk of the input (the last one won)
    rejected: int = 0
    seconds: float = 0.0

    @property
    def changed(self) -> int:
        return self.inserted + self.updated

    def summary(self) -> str:
        text = (f"{self.rows:,} rows read: {self.inserted:,} inserted, {self.updated:,} updated, "
                f"{self.unchanged:,} unchanged, {self.rejected:,} rejected in {self.seconds:.1f}s")
        if self.duplicates:
            text += f" ({self.duplicates:,} repeated keys, last one kept)"
        if self.rows and not self.changed:
            text += "; nothing changed"
        return text


class _BadRow(Exception):
    def __init__(self, column: str | None, reason: str, value=None):
        self.column, self.reason, self.value = column, reason, value

    def describe(self, line: int) -> str:
        where = f"line {line}" + (f", column {self.column}" if self.column else "")
        shown = "" if self.value is None else f" (value {_short(self.value)})"
        return f"{where}: {self.reason}{shown}"


class _Raw(str):
    """Text holding undecodable bytes (as surrogate escapes): shown with the bytes as read."""

    def __repr__(self):
        return repr(self.encode("utf-8", "surrogateescape"))


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def validate(fields: list[str]) -> tuple:
    """Check one row in ``COLUMNS`` order; returns its natural key (with ``collected_at`` as an
    aware datetime, so ``Z`` and ``+00:00`` name the same moment), or raises _BadRow."""
    for i in _TEXT:
        value = fields[i]
        if not value:
            raise _BadRow(COLUMNS[i], "is empty")
        found = _FORBIDDEN.search(value)
        if found:
            char = found.group()
            if "\udc80" <= char <= "\udcff":  # a byte the file's UTF-8 decoding could not read
                raise _BadRow(COLUMNS[i], f"is not valid UTF-8: byte 0x{ord(char) - 0xdc00:02X} "
                              f"at character {found.start() + 1}", _Raw(value))
            reason = ("contains a NUL byte" if char == "\x00" else
                      "contains a carriage return (CR), which text fields may not hold"
                      if char == "\r" else "contains a lone surrogate, which is not text")
            raise _BadRow(COLUMNS[i], reason, value)
    price = fields[_PRICE_AT]
    if not _PRICE.fullmatch(price):
        raise _BadRow("price", "is not a decimal with at most 3 decimal places", price)
    if float(price) <= 1:
        raise _BadRow("price", "must be greater than 1", price)
    for i in _TIMES_AT:
        value = fields[i]
        if not _TIME.fullmatch(value):
            reason = ("has no time zone offset" if _TIME.fullmatch(value + "Z")
                      else "is not an ISO 8601 time with an offset")
            raise _BadRow(COLUMNS[i], reason, value)
        try:
            moment = datetime.datetime.fromisoformat(value)
        except ValueError:
            raise _BadRow(COLUMNS[i], "is not a valid date and time", value) from None
        offset = moment.utcoffset()
        if offset is not None and abs(offset) >= checks.MAX_OFFSET:
            raise _BadRow(COLUMNS[i], "has a UTC offset PostgreSQL refuses (16 hours or more)",
                          value)
        if moment.year in (1, 9999):  # only there can the UTC moment leave the range
            try:
                utc = moment.astimezone(datetime.UTC)
            except OverflowError:
                utc = None
            if utc is None or not checks.EARLIEST <= utc <= checks.LATEST:
                raise _BadRow(COLUMNS[i], "is outside 0001-01-02 .. 9999-12-30 UTC, the range "
                              "that reads back as a Python datetime in any time zone", value)
    # collected_at is checked last: `moment` is its parsed value.
    return fields[0], fields[4], fields[5], fields[6], moment


def _as_text(column: str, value) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if column == "price":
        if isinstance(value, float):  # NaN, inf and binary noise must not slip through
            return repr(value)
        if isinstance(value, Decimal) and value.is_finite():
            # Decimal("2.1000") and Decimal("2E+1") are exact prices too.
            with contextlib.suppress(ArithmeticError):
                rounded = value.quantize(Decimal("0.001"))
                if rounded == value:
                    return format(rounded, "f")
            return format(value, "f")
        if isinstance(value, (int, Decimal)) and not isinstance(value, bool):
            return str(value)
    elif column in ("commence_time", "collected_at"):
        if isinstance(value, datetime.datetime):
            if value.utcoffset() is None:
                raise _BadRow(column, "has no time zone", value.isoformat())
            return value.isoformat()
    else:
        raise _BadRow(column, f"must be text (str), got {type(value).__name__}", value)
    raise _BadRow(column, f"has an unsupported type {type(value).__name__}", value)


def _rows_from_csv(stream, name: str, mode: _Mode):
    """For each data row of a CSV stream: ``(line number, fields in COLUMNS order or _BadRow)``,
    or, for a plain line in the standard column order that passes the fast checks,
    ``(line number, (natural key or None, the line for COPY, UTC month))`` as a tuple."""
    lines = iter(stream)
    reader = csv.reader(lines, strict=True)
    try:
        header = next(reader, None)
    except UnicodeDecodeError as exc:  # a stream opened with strict decoding
        raise errors.InvalidInput(
            f"{name}: not valid UTF-8 at byte {exc.start} ({exc.reason}), in the header row or "
            "the first lines read with it; pass the file's path to have the line and column "
            "named") from None
    except csv.Error as exc:
        raise errors.InvalidInput(f"{name}: cannot read the header row: {exc}") from None
    if not header:
        raise errors.InvalidInput(f"{name}: the file is empty (a header row is required)")
    header = [h.strip() for h in header]
    unknown = [h for h in header if h not in COLUMNS]
    missing = [c for c in COLUMNS if c not in header]
    repeated = sorted({h for h in header if header.count(h) > 1})
    if unknown or missing or repeated:
        parts = [f"unknown column(s) {', '.join(unknown)}" if unknown else "",
                 f"missing column(s) {', '.join(missing)}" if missing else "",
                 f"repeated column(s) {', '.join(repeated)}" if repeated else ""]
        raise errors.InvalidInput(f"{name}: bad header: {'; '.join(p for p in parts if p)}; "
                                  f"expected the columns {', '.join(COLUMNS)}")
    order = [header.index(c) for c in COLUMNS]
    identity = order == list(range(len(COLUMNS)))
    width = len(header)
    number = reader.line_num
    fast = _fast_path() if identity else None
    while True:
        try:
            line = next(lines)
        except StopIteration:
            return
        except UnicodeDecodeError as exc:  # a stream opened with strict decoding
            raise errors.InvalidInput(
                f"{name}: not valid UTF-8 after line {number} ({exc.reason}); pass "
                "the file's path to have the line and column named") from None
        number += 1
        if fast is not None:
            row = fast(line, mode.keyed)
            if row is not None:
                yield number, row
                continue
        # Anything else (quotes, a field over several lines, a bad value) goes through the
        # csv module and the full checks, which name what is wrong.
        record = csv.reader(itertools.chain((line,), lines), strict=True)
        try:
            fields = next(record, [])
        except csv.Error as exc:
            number += record.line_num - 1
            yield number, _BadRow(None, f"malformed CSV: {exc}")
            continue
        number += record.line_num - 1
        if len(fields) != width:
            if not any(fields):
                continue  # a blank line
            yield number, _BadRow(None, f"expected {width} fields, got {len(fields)}")
            continue
        yield number, fields if identity else [fields[i] for i in order]


# The fast path: a line of ten plain fields that are certainly valid. A line it does not take
# is not wrong, only left to the full checks (validate()). Times and prices repeat from row to
# row (one snapshot time for many prices, one kick-off for a whole match), so each distinct
# text is checked once per load and the verdict looked up after that.
_FAST_TIME = re.compile(
    r"(?!0000|0001|9999)[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])"
    r"[T ](?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:\.[0-9]{1,6})?)?"
    r"(?:Z|[+-](?:0[0-9]|1[0-5])(?::?[0-5][0-9])?)")
_VERDICTS_KEPT = 20_000  # distinct times (or prices) remembered before starting afresh


class _Mode:
    """Shared by the reader and the loader: whether fast lines need their natural key (the
    loader is merging chunks, which must hold each key once) or can go without it (a chunk
    COPYed straight into the table: the unique index itself refuses a repeated key)."""

    keyed = False


def _fast_time(value: str):
    """(the moment, its UTC month) for a time the fast path may take, else None."""
    if _FAST_TIME.fullmatch(value) is None:
        return None
    try:
        moment = datetime.datetime.fromisoformat(value)
    except ValueError:  # 2026-02-30 and the like: the regex allows the 31st in any month
        return None
    return moment, partitions.month_of(moment)


def _fast_price(value: str) -> bool:
    return _PRICE.fullmatch(value) is not None and float(value) > 1


def _fast_path():
    """A function of (line, keyed) giving (natural key or None, the line ending in one LF, UTC
    month, match id) for a line certainly valid, else None; it remembers the times and prices
    it has checked. The key holds ``collected_at`` parsed, so ``Z`` and ``+00:00`` are one
    moment."""
    times: dict[str, tuple] = {}  # () for a time the fast path does not take
    prices: dict[str, bool] = {}

    def remember_time(value: str) -> tuple:
        if len(times) >= _VERDICTS_KEPT:
            times.clear()
        checked = times[value] = _fast_time(value) or ()
        return checked

    def fast_line(line: str, keyed: bool):
        if '"' in line or "\x00" in line:
            return None
        if line[-1:] == "\n":
            line = line[:-1]
        if line[-1:] == "\r":
            line = line[:-1]
        if "\r" in line or "\n" in line or (not line.isascii() and _FORBIDDEN.search(line)):
            return None
        fields = line.split(",")
        if len(fields) != 10:
            return None
        match, league, home, away, bookmaker, market, selection, price, commence, collected \
            = fields
        if not (match and league and home and away and bookmaker and market and selection):
            return None
        ok = prices.get(price)
        if ok is None:
            if len(prices) >= _VERDICTS_KEPT:
                prices.clear()
            ok = prices[price] = _fast_price(price)
        if not ok:
            return None
        start, end = times.get(commence), times.get(collected)
        if start is None:
            start = remember_time(commence)
        if end is None:
            end = remember_time(collected)
        if not (start and end):
            return None
        moment, month = end
        key = (match, bookmaker, market, selection, moment) if keyed else None
        return key, line + "\n", month, match

    return fast_line


def _key_of(text: str, prefix_length: int) -> tuple:
    """The natural key of a chunk line the fast path took without one."""
    fields = text[prefix_length:].rstrip("\n").split(",")
    return (fields[0], fields[4], fields[5], fields[6],
            datetime.datetime.fromisoformat(fields[9]))


def _rows_from_iterable(rows: Iterable[Mapping]):
    try:
        rows = iter(rows)
    except TypeError:
        raise errors.InvalidInput(f"cannot ingest a {type(rows).__name__}: pass a CSV path, a "
                                  "text file object or an iterable of dicts") from None
    for line, row in enumerate(rows, start=1):
        try:
            if not isinstance(row, Mapping):
                raise _BadRow(None, f"expected a mapping of column to value, got "
                                    f"{type(row).__name__}")
            extra = set(row) - set(COLUMNS)
            if extra:
                raise _BadRow(None, f"unknown field(s) {', '.join(sorted(map(str, extra)))}")
            yield line, [_as_text(c, row.get(c)) for c in COLUMNS]
        except _BadRow as bad:
            yield line, bad


class _Producer(threading.Thread):
    """Validates rows and queues chunks; None ends the stream. A chunk is the rows' COPY
    lines (each starting with the audit columns, ``prefix``), their natural keys (None for a
    line the fast path took while ``mode.keyed`` was off; the whole list None when the chunk
    already holds each key once), their UTC months, the number of rows read and their match
    ids."""

    def __init__(self, rows, name, skip_invalid, rejects_writer, chunk_rows, prefix, mode):
        super().__init__(daemon=True, name="monps-ingest-validate")
        self.rows, self.source_name, self.skip_invalid = rows, name, skip_invalid
        self.rejects, self.chunk_rows, self.prefix = rejects_writer, chunk_rows, prefix
        self.mode = mode
        self.chunks: queue.Queue = queue.Queue(maxsize=2)
        self.report = IngestReport()
        self.error: BaseException | None = None
        self.stop = threading.Event()

    def run(self):
        try:
            self._produce()
        except BaseException as exc:  # handed to the consumer, which raises it
            self.error = exc
        finally:
            self.chunks.put(None)

    def _produce(self):
        try:
            self._chunk_rows()
        except UnicodeDecodeError as exc:
            raise errors.InvalidInput(f"{self.source_name}: not valid UTF-8 ({exc.reason} at byte "
                                      f"{exc.start} of a read block)") from None

    def _chunk_rows(self):
        texts, keys, months, matches = [], [], set(), set()
        prefix, buffer = self.prefix, io.StringIO()
        # "\n" as the terminator also makes the writer quote a field holding one.
        writer = csv.writer(buffer, lineterminator="\n")
        rows = 0
        for line, item in self.rows:
            rows += 1
            if type(item) is tuple:  # the fast path's
                key, text, month, match = item
                texts.append(prefix + text)
                keys.append(key)
                months.add(month)
                matches.add(match)
            else:
                try:
                    if isinstance(item, _BadRow):
                        raise item
                    key = validate(item)
                except _BadRow as bad:
                    self._reject(bad, line, item)
                    continue
                buffer.seek(0)
                buffer.truncate()
                writer.writerow(item)
                texts.append(prefix + buffer.getvalue())
                keys.append(key)
                months.add(partitions.month_of(key[4]))
                matches.add(key[0])
            if len(texts) == self.chunk_rows:
                if self.stop.is_set():
                    return
                self.report.rows = rows
                self._put(texts, keys, months, matches)
                texts, keys, months, matches = [], [], set(), set()
        self.report.rows = rows
        if texts:
            self._put(texts, keys, months, matches)

    def _put(self, texts: list[str], keys: list, months: set, matches: set) -> None:
        count = len(texts)
        if self.mode.keyed and None not in keys:
            # The loader merges: each key once, the last line of it (done here, in this
            # thread: in the loader's it would compete for the GIL with this one).
            last = dict(zip(keys, texts, strict=True))
            self.chunks.put((list(last.values()), None, months, count, matches))
            return
        self.chunks.put((texts, keys, months, count, matches))

    def _reject(self, bad: _BadRow, line: int, fields) -> None:
        message = bad.describe(line)
        if not self.skip_invalid:
            raise errors.InvalidInput(f"{self.source_name}: {message}; nothing was written "
                                      f"({SKIP_INVALID_HINT})") from None
        self.report.rejected += 1
        if self.rejects is not None:
            self.rejects.writerow([line, message, *(fields if isinstance(fields, list) else [])])


# Sent with every row; created_at and updated_at come from their column default, now() (the
# load's transaction start): parsing two more timestamps per row cost the server a quarter.
AUDIT = ("created_by", "updated_by", "change_reason")
_LOADED = ", ".join((*AUDIT, *COLUMNS))
_STAGE = """
CREATE TEMP TABLE IF NOT EXISTS monps_odds_stage
    (LIKE public.odds INCLUDING DEFAULTS) ON COMMIT DROP
"""
# Built from this module's own column constants, never from input.
_COPY_DIRECT = f"COPY public.odds ({_LOADED}) FROM STDIN WITH (FORMAT csv)"
_COPY_STAGE = f"COPY monps_odds_stage ({_LOADED}) FROM STDIN WITH (FORMAT csv)"
_MERGE = f"""
WITH merged AS (
    INSERT INTO public.odds AS o ({_LOADED})
    SELECT {_LOADED} FROM monps_odds_stage  -- one row per key (see _Producer)
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


def ingest_odds(source, *, skip_invalid: bool = False, rejects=None,
                chunk_rows: int = CHUNK_ROWS, progress=None) -> IngestReport:
    """Upsert odds from ``source`` (a CSV path, a text file object, or an iterable of mappings
    with the ``COLUMNS`` keys) in one transaction. ``progress(rows_done)`` is called after each
    chunk. Raises InvalidInput (strict mode) having written nothing."""
    start = time.perf_counter()
    with contextlib.ExitStack() as stack:
        mode = _Mode()
        name, rows = _open_source(source, stack, mode)
        rejects_writer = None
        if rejects is not None:
            target = stack.enter_context(open(rejects, "w", newline="", encoding="utf-8")) \
                if isinstance(rejects, (str, os.PathLike)) else rejects
            rejects_writer = csv.writer(target, lineterminator="\n")
            rejects_writer.writerow(["line", "reason", *COLUMNS])
        producer = _Producer(rows, name, skip_invalid, rejects_writer, chunk_rows,
                             _audit_prefix(), mode)
        producer.start()
        try:
            report = _load(producer, progress)
        finally:
            producer.stop.set()
            _drain(producer)
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


def _open_source(source, stack, mode: _Mode):
    if isinstance(source, (str, os.PathLike)):
        try:
            # Undecodable bytes become lone surrogates that validation reports by line and
            # column, instead of a decode error somewhere in a read block.
            stream = stack.enter_context(open(source, encoding="utf-8-sig", newline="",
                                              errors="surrogateescape"))
        except OSError as exc:
            raise errors.InvalidInput(f"{source}: cannot open: {exc.strerror}") from None
        return str(source), _rows_from_csv(stream, str(source), mode)
    if hasattr(source, "read"):
        name = getattr(source, "name", "<stream>")
        return str(name), _rows_from_csv(source, str(name), mode)
    return "<rows>", _rows_from_iterable(source)


def _load(producer: _Producer, progress) -> IngestReport:
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
        last[key if key is not None else _key_of(text, prefix_length)] = text
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


_COPY_BLOCK = 1 << 20  # characters handed to the driver at a time


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


_copying = threading.local()


@contextlib.contextmanager
def _quiet_copy_errors():
    """Keep psycopg2 from printing a traceback when the connection dies during a COPY.

    In that case psycopg2 reports a ``SystemError`` (caused by the server's error) through
    ``sys.excepthook`` before raising its ``OperationalError``, which is what the caller gets
    (as ConnectionLost). The printed one is logged at DEBUG instead; every other uncaught
    exception still reaches the hook that was installed.
    """
    if not isinstance(sys.excepthook, _CopyExceptHook):
        sys.excepthook = _CopyExceptHook(sys.excepthook)
    _copying.active = True
    try:
        yield
    finally:
        _copying.active = False


class _CopyExceptHook:
    def __init__(self, previous):
        self.previous = previous

    def __call__(self, exc_type, exc, tb):
        if (getattr(_copying, "active", False) and issubclass(exc_type, SystemError)
                and isinstance(exc.__cause__, psycopg2.Error)):
            logger.debug("psycopg2 reported during COPY: %s", _short(str(exc.__cause__)))
            return
        self.previous(exc_type, exc, tb)


def _drain(producer: _Producer) -> None:
    # Unblock a producer waiting on a full queue after the consumer stopped early.
    while producer.is_alive():
        try:
            producer.chunks.get(timeout=0.1)
        except queue.Empty:
            pass

