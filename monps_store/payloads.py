"""What an event is on the wire: channel names, JSON payloads, the size one notification holds.

    from monps_store import payloads
    payloads.check_channel("odds_changed")                   # or InvalidInput naming it
    text = payloads.encode("odds_changed", {"match_ids": ["m1"]})
    texts = payloads.batches("odds_changed", "match_ids", ids, {"table": "public.odds"})

Channels are lower-case identifiers (``[a-z_][a-z0-9_]*``, at most 63 bytes). Payloads are
JSON (datetimes, dates, Decimals and UUIDs as strings, sets and tuples as lists); one
notification holds at most ``MAX_PAYLOAD_BYTES`` of it. Shared by the publisher
(:mod:`monps_store.events`) and the listeners, which import this rather than each other.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import json
import re
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from monps_store import errors

MAX_PAYLOAD_BYTES = 7999  # the server refuses a payload of 8000 bytes or more
_CHANNEL = re.compile(r"[a-z_][a-z0-9_]*")


@dataclasses.dataclass(frozen=True)
class Event:
    channel: str
    payload: Any     # the decoded JSON (the raw text if someone sent one that is not JSON)
    pid: int         # the server process of the publishing session


def check_channel(channel: object) -> str:
    """``channel`` if it is a valid channel name, else InvalidInput naming it."""
    if not isinstance(channel, str) or not _CHANNEL.fullmatch(channel) or len(channel) > 63:
        raise errors.InvalidInput(
            f"bad channel name {channel!r}: use lower-case letters, digits and underscores, "
            "starting with a letter or underscore, at most 63 characters")
    return channel


def _json_default(value: object) -> str | list:
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (decimal.Decimal, uuid.UUID)):
        return str(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"a {type(value).__name__} is not JSON")


def _json(channel: str, payload: object) -> str:
    try:
        return json.dumps(payload, default=_json_default, ensure_ascii=False,
                          separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise errors.InvalidInput(f"event on {channel!r}: the payload cannot be sent as JSON "
                                  f"({exc})") from None


def _size(text: str) -> int:
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate
        raise errors.InvalidInput(f"an event payload holds text that is not valid Unicode: "
                                  f"{text[:60]!r}") from None


def encode(channel: str, payload: object) -> str:
    """The JSON text of ``payload``, checked to fit one notification."""
    text = _json(channel, payload)
    size = _size(text)
    if size > MAX_PAYLOAD_BYTES:
        raise errors.InvalidInput(
            f"event on {channel!r}: the payload is {size} bytes as JSON and one notification "
            f"holds at most {MAX_PAYLOAD_BYTES}; nothing was published. Send less (ids rather "
            "than rows), or split a list with events.publish_batched()")
    return text


def batches(channel: str, key: str, values: Iterable, fixed: Mapping[str, object]) -> list[str]:
    """The JSON texts of ``{key: [...values], **fixed}`` split over as few payloads as fit one
    notification each, in the order of ``values`` (none for no values); InvalidInput if one
    value alone does not fit."""
    values = list(values)
    if not values:
        return []
    texts: list[str] = []
    overhead = _size(encode(channel, {key: [], **fixed}))
    batch: list = []
    size = overhead
    for value in values:
        item = _size(_json(channel, value)) + (1 if batch else 0)
        if overhead + item > MAX_PAYLOAD_BYTES:
            raise errors.InvalidInput(f"event on {channel!r}: the value {value!r:.60} alone "
                                      "does not fit one notification; nothing was published")
        if size + item > MAX_PAYLOAD_BYTES:
            texts.append(encode(channel, {key: batch, **fixed}))
            batch, size = [], overhead
            item -= 1
        batch.append(value)
        size += item
    texts.append(encode(channel, {key: batch, **fixed}))
    return texts


def decode(channel: str, text: str, pid: int) -> Event:
    """The :class:`Event` of a notification as a driver hands it over."""
    try:
        payload = json.loads(text) if text else None
    except ValueError:
        payload = text
    return Event(channel, payload, pid)
