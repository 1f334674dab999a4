"""The input rules of the odds ingest: one row checked, or one value from an iterable as text.

    from monps_store.ingest import rules
    key = rules.validate(fields)          # fields in COLUMNS order; raises BadRow
    bad.describe(line)                    # "line 7, column price: must be greater than 1 ..."

The rules themselves are listed in the package's docstring (``monps_store.ingest``) and in the
README ("Odds ingest and CLV settlement"). The reader's fast path (``reader``) takes only lines
these rules accept; any other line is given to ``validate()``, so the messages are these.
"""

from __future__ import annotations

import contextlib
import datetime
import re
from decimal import Decimal

from monps_store.models import checks

COLUMNS = ("match_id", "league", "home_team", "away_team", "bookmaker", "market", "selection",
           "price", "commence_time", "collected_at")
KEY = ("match_id", "bookmaker", "market", "selection", "collected_at")
VALUES = tuple(c for c in COLUMNS if c not in KEY)  # what an update may change

_TEXT = tuple(i for i, c in enumerate(COLUMNS) if c not in ("price", "commence_time",
                                                            "collected_at"))
_PRICE_AT, _TIMES_AT = COLUMNS.index("price"), (COLUMNS.index("commence_time"),
                                                COLUMNS.index("collected_at"))
# ASCII digits only: Python's \d and float() accept other scripts' digits, PostgreSQL does not.
# Zeros padding the 3 places change no value (2.1000 is 2.100); 15 places at most in all.
PRICE = re.compile(r"[0-9]{1,7}(\.[0-9]{1,3}0{0,12})?")
_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?"
                   r"(Z|[+-][0-9]{2}(:?[0-9]{2})?)")
# NUL cannot be stored in text; lone surrogates are what undecodable bytes become (or come
# from an iterable); a bare CR would end the line in the COPY stream.
FORBIDDEN = re.compile("[\x00\r\ud800-\udfff]")


class BadRow(Exception):
    def __init__(self, column: str | None, reason: str, value=None):
        self.column, self.reason, self.value = column, reason, value

    def describe(self, line: int) -> str:
        where = f"line {line}" + (f", column {self.column}" if self.column else "")
        shown = "" if self.value is None else f" (value {short(self.value)})"
        return f"{where}: {self.reason}{shown}"


class _Raw(str):
    """Text holding undecodable bytes (as surrogate escapes): shown with the bytes as read."""

    def __repr__(self):
        return repr(self.encode("utf-8", "surrogateescape"))


def short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def validate(fields: list[str]) -> tuple:
    """Check one row in ``COLUMNS`` order; returns its natural key (with ``collected_at`` as an
    aware datetime, so ``Z`` and ``+00:00`` name the same moment), or raises BadRow."""
    for i in _TEXT:
        value = fields[i]
        if not value:
            raise BadRow(COLUMNS[i], "is empty")
        found = FORBIDDEN.search(value)
        if found:
            char = found.group()
            if "\udc80" <= char <= "\udcff":  # a byte the file's UTF-8 decoding could not read
                raise BadRow(COLUMNS[i], f"is not valid UTF-8: byte 0x{ord(char) - 0xdc00:02X} "
                              f"at character {found.start() + 1}", _Raw(value))
            reason = ("contains a NUL byte" if char == "\x00" else
                      "contains a carriage return (CR), which text fields may not hold"
                      if char == "\r" else "contains a lone surrogate, which is not text")
            raise BadRow(COLUMNS[i], reason, value)
    price = fields[_PRICE_AT]
    if not PRICE.fullmatch(price):
        raise BadRow("price", "is not a decimal with at most 3 decimal places", price)
    if float(price) <= 1:
        raise BadRow("price", "must be greater than 1", price)
    for i in _TIMES_AT:
        value = fields[i]
        if not _TIME.fullmatch(value):
            reason = ("has no time zone offset" if _TIME.fullmatch(value + "Z")
                      else "is not an ISO 8601 time with an offset")
            raise BadRow(COLUMNS[i], reason, value)
        try:
            moment = datetime.datetime.fromisoformat(value)
        except ValueError:
            raise BadRow(COLUMNS[i], "is not a valid date and time", value) from None
        offset = moment.utcoffset()
        if offset is not None and abs(offset) >= checks.MAX_OFFSET:
            raise BadRow(COLUMNS[i], "has a UTC offset PostgreSQL refuses (16 hours or more)",
                          value)
        if moment.year in (1, 9999):  # only there can the UTC moment leave the range
            try:
                utc = moment.astimezone(datetime.UTC)
            except OverflowError:
                utc = None
            if utc is None or not checks.EARLIEST <= utc <= checks.LATEST:
                raise BadRow(COLUMNS[i], "is outside 0001-01-02 .. 9999-12-30 UTC, the range "
                              "that reads back as a Python datetime in any time zone", value)
    # collected_at is checked last: `moment` is its parsed value.
    return fields[0], fields[4], fields[5], fields[6], moment


def as_text(column: str, value) -> str:
    """A value from an iterable as the CSV text ``validate()`` checks, or BadRow for a type
    the column does not take (text: ``str``; price: also Decimal, int, float; times: also an
    aware datetime)."""
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
                raise BadRow(column, "has no time zone", value.isoformat())
            return value.isoformat()
    else:
        raise BadRow(column, f"must be text (str), got {type(value).__name__}", value)
    raise BadRow(column, f"has an unsupported type {type(value).__name__}", value)
