"""How a cached result's arguments are matched with the values an event names.

    from monps_store.cache_keys import forms_of
    forms_of(uuid.UUID(text)) & forms_of(text)             # shared: the event names it
    forms_of(decimal.Decimal("1.50")) & forms_of("1.5")    # numbers match by value

``monps_store.cache`` reduces a keyed argument (``invalidate_on={"odds_changed": "match_id"}``)
to its forms once, when it keeps a result, and each value an event lists when it arrives; a
result is dropped when the two share a form.
"""

from __future__ import annotations

import datetime
import decimal
import uuid


def forms_of(value: object) -> set | None:
    """The forms under which ``value``, an argument or a value an event lists, matches the
    other side; None for one that cannot be compared (a list, an object). Events send JSON
    (``payloads._json_default``: a UUID, Decimal, date or datetime arrives as its string), so
    both sides are reduced alike and match when they share a form. When in doubt they match:
    an extra drop costs a read, a missed one serves a stale result. Numbers match by value
    (``1``, ``"1"``, ``Decimal("1.50")`` and ``"1.5"``); aware datetimes by instant, and every
    datetime also by wall-clock time (a naive one cannot be placed in time)."""
    if value is None or isinstance(value, bool):
        return {value}  # JSON null, true, false as they come
    if isinstance(value, str):
        text = str.__str__(value)  # a str enum's own text, hashed as a str
        forms: set = {text}
        number = _number(text.strip())
        if number is not None:
            forms.add(number)
        for parse in (uuid.UUID, datetime.date.fromisoformat, datetime.datetime.fromisoformat,
                      datetime.time.fromisoformat):
            try:
                forms |= forms_of(parse(text.strip())) or set()
            except (ValueError, TypeError):
                pass
        return forms
    if isinstance(value, (int, float, decimal.Decimal)):
        number = _number(value)
        return {str(value)} if number is None else {str(value), number}
    if isinstance(value, uuid.UUID):
        return {str(value)}
    if isinstance(value, datetime.datetime):
        return {value, ("wall clock", value.replace(tzinfo=None))}
    if isinstance(value, (list, dict)):
        return None
    try:
        return {value}
    except TypeError:  # unhashable
        return None


def _number(value: str | int | float | decimal.Decimal) -> decimal.Decimal | None:
    """``value`` as a finite Decimal (1.5 and 1.50 are equal and hash alike), or None."""
    try:
        number = decimal.Decimal(repr(value) if isinstance(value, float) else value)
    except (ValueError, ArithmeticError):
        return None
    return number if number.is_finite() else None
