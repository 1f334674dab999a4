"""The ingest's input as rows: a CSV file (with its per-line fast path) or an iterable of dicts.

    from monps_store.ingest import reader
    name, rows = reader.open_source("odds.csv", stack, mode)  # stack: a contextlib.ExitStack
    for line, item in rows: ...  # a fast-path tuple, fields in COLUMNS order, or a BadRow

The fast path takes a plain line in the standard column order that is certainly valid and
passes it on as read; a line it does not take is not wrong, only left to the csv module and
``rules.validate()``, which name what is wrong. Times and prices repeat from row to row (one
snapshot time for many prices, one kick-off for a whole match), so each distinct text is
checked once per load and the verdict looked up after that.
"""

from __future__ import annotations

import csv
import datetime
import itertools
import os
import re
from collections.abc import Iterable, Mapping

from monps_store import errors, partitions
from monps_store.ingest.rules import COLUMNS, FORBIDDEN, PRICE, BadRow, as_text

_FAST_TIME = re.compile(
    r"(?!0000|0001|9999)[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])"
    r"[T ](?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:\.[0-9]{1,6})?)?"
    r"(?:Z|[+-](?:0[0-9]|1[0-5])(?::?[0-5][0-9])?)")
_VERDICTS_KEPT = 20_000  # distinct times (or prices) remembered before starting afresh


class Mode:
    """Shared by the reader and the loader: whether fast lines need their natural key (the
    loader is merging chunks, which must hold each key once) or can go without it (a chunk
    COPYed straight into the table: the unique index itself refuses a repeated key)."""

    keyed = False


def open_source(source, stack, mode: Mode):
    """``(name for messages, rows)`` for a CSV path, a text file object or an iterable of
    mappings; a file opened here is closed by ``stack``."""
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


def _rows_from_csv(stream, name: str, mode: Mode):
    """For each data row of a CSV stream: ``(line number, fields in COLUMNS order or BadRow)``,
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
    fast = fast_path() if identity else None
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
            yield number, BadRow(None, f"malformed CSV: {exc}")
            continue
        number += record.line_num - 1
        if len(fields) != width:
            if not any(fields):
                continue  # a blank line
            yield number, BadRow(None, f"expected {width} fields, got {len(fields)}")
            continue
        yield number, fields if identity else [fields[i] for i in order]


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
    return PRICE.fullmatch(value) is not None and float(value) > 1


def fast_path():
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
        if "\r" in line or "\n" in line or (not line.isascii() and FORBIDDEN.search(line)):
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


def key_of(text: str, prefix_length: int) -> tuple:
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
                raise BadRow(None, f"expected a mapping of column to value, got "
                                    f"{type(row).__name__}")
            extra = set(row) - set(COLUMNS)
            if extra:
                raise BadRow(None, f"unknown field(s) {', '.join(sorted(map(str, extra)))}")
            yield line, [as_text(c, row.get(c)) for c in COLUMNS]
        except BadRow as bad:
            yield line, bad
