"""What a value must be before it is written to a column or compared with one.

    from monps_store.models import checks
    checks.write(Odds, "price", "2.5")      # Decimal('2.5')
    checks.write(Odds, "price", "NaN")      # InvalidValue: Odds.price must be a finite number ...

Checked in Python so that the error names the model, the field and the value, and so that
nothing is stored differently from what the caller passed. Left to the database and peewee,
NUMERIC would store NaN and round extra decimal places away silently, a naive datetime would be
read in the session time zone, a boolean column would turn ``"false"`` into true and an integer
one ``1.5`` into 1, and whatever the server refuses would arrive as a DataError naming no column.

Decisions: text is ``str`` only (no NUL, no lone surrogates); decimals are ``Decimal``, ``int``,
a finite ``float`` or a plain decimal string, with at most the column's decimal places and
digits; integers are ``int`` within the column's range; booleans are ``bool``; JSON is built
from dicts with string keys, lists, strings, ints, finite floats, booleans and None; times are
timezone-aware datetimes whose offset PostgreSQL accepts (under 16 hours, whole seconds) and
whose UTC moment lies within 0001-01-02 .. 9999-12-30, so that a client in any session time
zone can read it back into a Python datetime. The checks run from ``BaseModel.save()``
(``save()``/``create()``), the ``crud`` bulk paths and the repositories' lookups; they never
change a field class, so the models' DDL and migrations are untouched.
"""

from __future__ import annotations

import datetime
import math
import re
from decimal import Decimal, InvalidOperation

from peewee import (
    BigAutoField,
    BigIntegerField,
    BooleanField,
    DecimalField,
    ForeignKeyField,
    IntegerField,
    JSONField,
    Model,
    TextField,
)
from playhouse.postgres_ext import DateTimeTZField

from monps_store.errors import InvalidInput, InvalidValue

UTC = datetime.UTC
INT4 = (-2**31, 2**31 - 1)
INT8 = (-2**63, 2**63 - 1)
# PostgreSQL refuses a time zone displacement of 16 hours or more.
MAX_OFFSET = datetime.timedelta(hours=16)
# One day inside Python's datetime range: read back in any session time zone, still a datetime.
EARLIEST = datetime.datetime(1, 1, 2, tzinfo=UTC)
LATEST = datetime.datetime(9999, 12, 30, 23, 59, 59, 999999, tzinfo=UTC)

FORBIDDEN_TEXT = re.compile("[\x00\ud800-\udfff]")
_DECIMAL_TEXT = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?", re.ASCII)


def short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class _Bad(Exception):
    """A problem found by one of the checks below, before the field name is known."""


def moment_problem(value: datetime.datetime) -> str | None:
    """Why an aware-or-naive datetime cannot be stored in TIMESTAMPTZ and read back, or None."""
    offset = value.utcoffset()
    if offset is None:
        return ("has no time zone (a naive datetime would be read in the session time zone): "
                "pass an aware one, e.g. tzinfo=datetime.UTC")
    if abs(offset) >= MAX_OFFSET:
        return f"has a UTC offset of {offset}, beyond what PostgreSQL accepts (under 16 hours)"
    if offset.microseconds:
        return f"has a UTC offset with a fraction of a second ({offset})"
    try:
        moment = value.astimezone(UTC)
    except OverflowError:
        moment = None
    if moment is None or not EARLIEST <= moment <= LATEST:
        return ("is outside 0001-01-02 .. 9999-12-30 UTC, the range every session time zone "
                "can read back")
    return None


def _text(value):
    if not isinstance(value, str):
        raise _Bad(f"must be text (str), got {type(value).__name__}")
    if FORBIDDEN_TEXT.search(value):
        raise _Bad("contains a NUL character or a lone surrogate (bytes that are not UTF-8)")
    return value


def _decimal(value, field, bounded):
    if isinstance(value, bool) or not isinstance(value, (Decimal, int, float, str)):
        raise _Bad(f"must be a decimal number (Decimal, int or str), got {type(value).__name__}")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _Bad("must be a finite number (NaN and infinity cannot be stored)")
        value = Decimal(repr(value))
    elif isinstance(value, str):
        if not _DECIMAL_TEXT.fullmatch(value):
            raise _Bad("is not a decimal number")
        value = Decimal(value)
    elif isinstance(value, int):
        value = Decimal(value)
    if not value.is_finite():
        raise _Bad("must be a finite number (NaN and infinity cannot be stored)")
    if not bounded:
        return value
    digits, places = field.max_digits, field.decimal_places
    if abs(value) >= 10 ** (digits - places):
        raise _Bad(f"is too large for NUMERIC({digits}, {places}): at most "
                   f"{digits - places} digits before the decimal point")
    try:
        exact = value.quantize(Decimal(1).scaleb(-places)) == value
    except InvalidOperation:
        exact = False
    if not exact:
        raise _Bad(f"has more than {places} decimal places; round it first (it would be "
                   "rounded silently)")
    return value


def _integer(value, limits, bounded):
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Bad(f"must be an integer (int), got {type(value).__name__}")
    if bounded and not limits[0] <= value <= limits[1]:
        raise _Bad(f"is out of range {limits[0]} .. {limits[1]}")
    return value


def _json(value, path="value"):
    if value is None or isinstance(value, (bool, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _Bad(f"holds {value!r} at {path}; JSON has no NaN or infinity")
        return
    if isinstance(value, str):
        if FORBIDDEN_TEXT.search(value):
            raise _Bad(f"holds a NUL character or a lone surrogate at {path}")
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            _json(item, f"{path}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise _Bad(f"has a non-text key {key!r} at {path} (JSON keys are strings)")
            _json(key, f"{path} key")
            _json(item, f"{path}[{key!r}]")
        return
    raise _Bad(f"holds a {type(value).__name__} at {path}; JSON takes dict, list, str, int, "
               "finite float, bool or None")


def _datetime(value):
    if not isinstance(value, datetime.datetime):
        raise _Bad(f"must be a timezone-aware datetime, got {type(value).__name__}")
    problem = moment_problem(value)
    if problem:
        raise _Bad(problem)
    return value


def _foreign_key(value, field, bounded):
    if isinstance(value, Model):
        if not isinstance(value, field.rel_model):
            raise _Bad(f"must be a {field.rel_model.__name__} or its id, got "
                       f"{type(value).__name__}")
        if value._pk is None:
            raise _Bad(f"refers to a {field.rel_model.__name__} that is not saved yet")
        return value
    return _check(field.rel_field, value, bounded)


def _check(field, value, bounded):
    if isinstance(field, ForeignKeyField):
        return _foreign_key(value, field, bounded)
    if isinstance(field, (BigAutoField, BigIntegerField)):
        return _integer(value, INT8, bounded)
    if isinstance(field, IntegerField):  # AutoField included
        return _integer(value, INT4, bounded)
    if isinstance(field, DecimalField):
        return _decimal(value, field, bounded)
    if isinstance(field, BooleanField):
        if not isinstance(value, bool):
            raise _Bad(f"must be a bool, got {type(value).__name__}")
        return value
    if isinstance(field, DateTimeTZField):
        return _datetime(value)
    if isinstance(field, JSONField):
        _json(value)
        return value
    if isinstance(field, TextField):
        return _text(value)
    return value  # a field type without checks of its own


def _fail(model, name, problem, value, error=InvalidValue):
    return error(f"{model.__name__}.{name} {problem} (value {short(value)})")


def write(model, name: str, value):
    """``value`` as it will be stored in ``model.name``, or InvalidInput naming field and value.

    None is refused for a NOT NULL column."""
    field = model._meta.fields[name]
    if value is None:
        if field.null or field.primary_key:
            return None
        # A missing value, not a bad one: plain InvalidInput (peewee would raise IntegrityError).
        raise _fail(model, name, "is required (NOT NULL)", value, InvalidInput)
    try:
        return _check(field, value, bounded=True)
    except _Bad as bad:
        raise _fail(model, name, str(bad), value) from None


def compare(model, name: str, value, *, allow_none: bool = True):
    """``value`` checked for comparison with ``model.name`` (a lookup or filter): the type and
    what the server would refuse, but not the column's size (such a value simply matches
    nothing)."""
    if value is None:
        if allow_none:
            return None
        raise _fail(model, name, "must not be None", value, InvalidInput)
    try:
        return _check(model._meta.fields[name], value, bounded=False)
    except _Bad as bad:
        raise _fail(model, name, str(bad), value) from None


def has_default(field) -> bool:
    """Whether an INSERT may leave ``field`` out: nullable, a Python default or a SQL DEFAULT."""
    if field.null or field.primary_key or field.default is not None:
        return True
    return any(getattr(c, "sql", "").upper().startswith("DEFAULT") for c in field.constraints or ())


def row(model, data: dict, *, complete: bool, where: str = "") -> dict:
    """Every value of ``data`` checked with :func:`write`; with ``complete``, every column the
    insert needs must be present. ``where`` (e.g. ``"row 3: "``) prefixes the messages."""
    try:
        cleaned = {name: write(model, name, value) for name, value in data.items()}
        if complete:
            missing = [f.name for f in model._meta.sorted_fields
                       if f.name not in data and not has_default(f)]
            if missing:
                raise InvalidInput(f"{model.__name__}: {', '.join(missing)} required (NOT NULL, "
                                   "no default) but not given")
    except InvalidInput as exc:
        if not where:
            raise
        raise type(exc)(f"{where}{exc}") from None
    return cleaned
