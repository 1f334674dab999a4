"""Hostile input: every call either stores exactly what it was given or refuses it clearly.

Each generated value is drawn from a strategy of valid values or one of invalid ones and carries
that flag, so the test knows independently what must happen: a valid input must be stored
exactly (read back with raw SQL, never with the function under test) and an invalid one must
raise the package's ``InvalidInput`` naming the field (and the line, for the CSV ingest) with the
tables exactly as they were before the call. The only other error allowed is peewee's
``IntegrityError`` for an input that really violates a constraint (``price > 1``, a unique key).
Names taken from strings (orderings, filters, conflict and update lists) are checked for SQL
injection by proving every table and row intact afterwards.
"""

from __future__ import annotations

import csv
import datetime
import io
import json
import re
import unittest.mock
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from peewee import IntegrityError

from monps_store import ingest, partitions
from monps_store.errors import InvalidInput, NotFound
from monps_store.models import Odds, TeamQuantumDNA
from monps_store.repositories import crud, friction, goalscorers, odds, strategies, teams
from tests.factories import add_friction, add_scorer, add_strategy, add_team

# No shrinking: each example costs database round trips, and shrinking a failure took minutes;
# derandomized, a failing example is reproduced by running the test again.
settings.register_profile(
    "monps-hostile", deadline=None, derandomize=True, database=None, max_examples=40,
    phases=[Phase.explicit, Phase.generate], print_blob=False,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
HOSTILE = settings.get_profile("monps-hostile")

UTC = datetime.UTC
TEXT_COLUMNS = ("match_id", "league", "home_team", "away_team", "bookmaker", "market",
                "selection")
TIME_COLUMNS = ("commence_time", "collected_at")
ODDS_SELECT = ("SELECT match_id, league, home_team, away_team, bookmaker, market, selection, "
               "price, commence_time, collected_at FROM public.odds")
TABLES = ("public.odds", "public.tracking_clv_picks", "quantum.chess_classifications",
          "quantum.team_quantum_dna", "quantum.quantum_friction_matrix",
          "quantum.quantum_strategies", "quantum.goalscorer_profiles")


def tz(minutes):
    return datetime.timezone(datetime.timedelta(minutes=minutes))


# -- value strategies: (value, valid) --------------------------------------------------------

SPECIAL_TEXT = ['"quoted"', "a,b", "line\nbreak", "O'Brien", "\\.", "\n\\.\n", " padded ",
                "Ünïcödé", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 astral", "e\u0301\u0308 combining", "\u202eRTL override",
                "مرحبا", "'; DROP TABLE public.odds; --", "x" * 5_000, "\t", "\ufeffbom"]
# What PostgreSQL text can hold: anything but NUL and lone surrogates.
_storable = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")


def text_values(allow_cr=True):
    chars = _storable if allow_cr else st.characters(blacklist_categories=("Cs",),
                                                       blacklist_characters="\x00\r")
    valid = st.one_of(st.text(chars, min_size=1, max_size=30),
                      st.sampled_from([t for t in SPECIAL_TEXT if allow_cr or "\r" not in t]))
    return valid.map(lambda v: (v, True))


BAD_TEXT = st.one_of(
    st.text(_storable, max_size=5).map(lambda t: t + "\x00" + t),   # NUL
    st.sampled_from(["\ud800", "a\udc80b", "\udfff"]),                 # lone surrogates
).map(lambda v: (v, False))
WRONG_TYPES = st.sampled_from([5, 10**30, 2.5, True, [1, 2], {"a": 1}, b"bytes",
                               Decimal("1.5")]).map(lambda v: (v, False))

OFFSETS = st.sampled_from([0, 345, 14 * 60, -12 * 60, 330, -150, 15 * 60 + 59, -(15 * 60 + 59)])
VALID_MOMENTS = st.builds(
    lambda naive, minutes: naive.replace(tzinfo=tz(minutes)),
    st.one_of(st.datetimes(datetime.datetime(1, 1, 3), datetime.datetime(9999, 12, 29)),
              st.sampled_from([datetime.datetime(1, 1, 2, 16), datetime.datetime(9999, 12, 29,
                                                                                 23, 59)])),
    OFFSETS)
BAD_MOMENTS = st.one_of(
    st.datetimes(datetime.datetime(1, 1, 3), datetime.datetime(9999, 12, 29)),   # naive
    st.sampled_from([datetime.datetime(9999, 12, 31, 23, tzinfo=tz(-300)),
                     datetime.datetime(1, 1, 1, 1, tzinfo=tz(300)),
                     datetime.datetime(1, 1, 1, tzinfo=UTC),
                     datetime.datetime(9999, 12, 31, 12, tzinfo=UTC),
                     datetime.datetime(2024, 1, 1, tzinfo=tz(16 * 60)),
                     datetime.datetime(2024, 1, 1, tzinfo=tz(-(23 * 60 + 59)))]))

VALID_PRICES = st.decimals(Decimal("1.001"), Decimal("9999999.999"), places=3)
TOO_MANY_PLACES = st.decimals(Decimal("1.0001"), Decimal("999"), places=5).filter(
    lambda d: d != d.quantize(Decimal("0.001")))
# Feeds pad prices with zeros: "2.1000" is 2.100 exactly, so it is a valid price.
PADDED_PRICES = st.builds(lambda d, zeros: format(d, "f") + "0" * zeros, VALID_PRICES,
                          st.integers(1, 4))
BAD_PRICES = st.one_of(
    TOO_MANY_PLACES, st.sampled_from([Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity"),
                                      Decimal("sNaN"), Decimal(10**7), Decimal(10**30),
                                      float("nan"), float("inf")]))


def time_text(moment, style):
    text = moment.isoformat(sep="T" if style % 2 else " ")
    if moment.utcoffset() == datetime.timedelta(0) and style % 3 == 0:
        text = text[:-6] + "Z"
    elif style % 5 == 0:
        text = text[:-3] + text[-2:]  # +0545
    return text


def csv_time(hostile=True):
    valid = st.builds(time_text, VALID_MOMENTS, st.integers(0, 29)).map(lambda v: (v, True))
    if not hostile:
        return valid
    bad = st.one_of(
        st.builds(lambda m: m.isoformat(), st.datetimes()),                  # no offset
        st.builds(lambda m: m.isoformat(), BAD_MOMENTS.filter(lambda m: m.tzinfo)),
        st.sampled_from(["2024-01-01T00:00:00+25:00", "2024-02-30T00:00Z", "yesterday", "",
                         "2024-01-01t00:00:00z", "٢٠٢٤-01-01T00:00:00Z", "2024-01-01T00:00Z ",
                         "2024-01-01T00:00:00+05:45:30"]),
    ).map(lambda v: (v, False))
    return st.one_of(valid, bad)


def csv_price(hostile=True):
    valid = st.one_of(VALID_PRICES.map(lambda d: format(d, "f")),
                      st.integers(2, 9_999_999).map(str),
                      PADDED_PRICES).map(lambda v: (v, True))
    if not hostile:
        return valid
    bad = st.one_of(
        TOO_MANY_PLACES.map(str),
        st.sampled_from(["NaN", "nan", "inf", "Infinity", "-2.5", "1", "1.000", "0.5",
                         "12345678", "10000000.5", "1e3", "", " 2.5", "٢.٥", "2,5", "0x10"]),
    ).map(lambda v: (v, False))
    return st.one_of(valid, bad)


@st.composite
def odds_csv_rows(draw):
    """(fields in COLUMNS order, invalid column names) for one CSV row; a few keys, so that
    upserts and repeated keys happen."""
    fields, bad = {}, set()
    hostile = draw(st.integers(0, 3)) == 0  # most rows valid, so loads happen too
    for column in ingest.COLUMNS:
        if column in TEXT_COLUMNS:
            if column in ("match_id", "selection") and not hostile:
                value, ok = draw(st.sampled_from(["m1", "m2"])), True
            else:
                value, ok = draw(st.one_of(text_values(allow_cr=False), st.just(("", False)),
                                           st.just(("a\rb", False)))
                                 if hostile else text_values(allow_cr=False))
        elif column == "price":
            value, ok = draw(csv_price(hostile))
        else:
            value, ok = draw(csv_time(hostile))
        fields[column] = value
        if not ok:
            bad.add(column)
    return [fields[c] for c in ingest.COLUMNS], bad


def moment_of(text):
    return datetime.datetime.fromisoformat(text)


def odds_snapshot(pg):
    return sorted(pg.sql(ODDS_SELECT), key=repr)


def stored_form(fields):
    """A CSV row as the database must hold it."""
    values = dict(zip(ingest.COLUMNS, fields, strict=True))
    return (*[values[c] for c in TEXT_COLUMNS], Decimal(values["price"]),
            moment_of(values["commence_time"]), moment_of(values["collected_at"]))


def natural_key(row):
    # match_id, bookmaker, market, selection, collected_at (a moment: Z == +00:00)
    return row[0], row[4], row[5], row[6], row[9]


def expected_after(before, good_rows):
    table = {natural_key(r): r for r in before}
    for fields in good_rows:
        row = stored_form(fields)
        table[natural_key(row)] = row
    return sorted(table.values(), key=repr)


def physical_lines(record_text):
    return len(re.findall(r"\r\n|\r|\n", record_text))


# -- (a) CSV ingest ---------------------------------------------------------------------------


@settings(HOSTILE, max_examples=45)
@given(rows=st.lists(odds_csv_rows(), min_size=1, max_size=6),
       source=st.sampled_from(["path", "file", "rows"]), skip=st.booleans(),
       latin1_row=st.one_of(st.none(), st.integers(0, 5)))
def test_csv_ingest_stores_exactly_the_valid_rows_or_names_line_and_column(
        pg, db, tmp_path_factory, figures, rows, source, skip, latin1_row):
    pg.sql("TRUNCATE public.odds RESTART IDENTITY")
    pg.sql("SELECT public.monps_odds_partition('2024-01-01T00:00Z')")  # raw SQL: its month
    pg.sql("INSERT INTO public.odds (match_id, league, home_team, away_team, bookmaker, market, "
           "selection, price, commence_time, collected_at) VALUES ('m1', 'L', 'A', 'B', 'x', "
           "'y', 'm1', 2.5, '2024-01-01T00:00Z', '2024-01-01T00:00Z')")
    before = odds_snapshot(pg)
    bads = [set(bad) for _, bad in rows]
    path = tmp_path_factory.mktemp("odds") / "odds.csv"
    records = []
    for fields, _ in rows:
        buffer = io.StringIO()
        csv.writer(buffer).writerow(fields)  # CRLF: quotes a field holding CR
        records.append(buffer.getvalue())
    data = (",".join(ingest.COLUMNS) + "\r\n" + "".join(records)).encode("utf-8")
    if latin1_row is not None and latin1_row < len(rows) and source != "rows":
        # a byte that is not UTF-8, in the league of that row
        fields = rows[latin1_row][0]
        fields[1] = fields[1] + "\udce9"
        bads[latin1_row].add("league")
        buffer = io.StringIO()
        csv.writer(buffer).writerow(fields)  # CRLF: quotes a field holding CR
        records[latin1_row] = buffer.getvalue()
        data = (",".join(ingest.COLUMNS) + "\r\n" + "".join(records)).encode("utf-8",
                                                                          "surrogateescape")
    path.write_bytes(data)

    def call():
        if source == "path":
            return ingest.ingest_odds(path, skip_invalid=skip)
        if source == "file":
            with open(path, encoding="utf-8", newline="") as stream:
                return ingest.ingest_odds(stream, skip_invalid=skip)
        dicts = [dict(zip(ingest.COLUMNS, f, strict=True)) for f, _ in rows]
        return ingest.ingest_odds(dicts, skip_invalid=skip)

    first_bad = next((i for i, bad in enumerate(bads) if bad), None)
    strict_file_decode = source == "file" and latin1_row is not None and latin1_row < len(rows)
    try:
        report = call()
    except InvalidInput as exc:
        message = str(exc)
        assert first_bad is not None, f"valid rows rejected: {message}"
        assert odds_snapshot(pg) == before, "half-written after an error"
        if strict_file_decode:
            assert "not valid UTF-8" in message
        else:
            assert not skip, f"skip mode raised: {message}"
            if source == "rows":
                line = first_bad + 1
            else:
                line = 1 + sum(physical_lines(r) for r in records[:first_bad + 1])
            assert f"line {line}, column " in message, message
            named = re.search(r"column (\w+)", message).group(1)
            assert named in bads[first_bad], (named, bads[first_bad], message)
        outcome = "rejected"
    else:
        assert not strict_file_decode
        good = [fields for (fields, _), bad in zip(rows, bads, strict=True) if not bad]
        assert skip or first_bad is None
        assert report.rejected == sum(1 for bad in bads if bad)
        assert odds_snapshot(pg) == expected_after(before, good)
        outcome = "accepted"
    figures.add("hostile input: CSV ingest", examples=1, **{outcome: 1},
                rows_checked=pg.sql("SELECT count(*) FROM public.odds")[0][0], half_written=0)


# Values at the edges of what the fast path takes: those it must take (the common forms), the
# rest it must leave to validate().
FAST_PRICES = ("1.001", "9999999.999", "01.5", "2", "2.5")
EDGE_PRICES = (*FAST_PRICES, "1", "1.000", "1.0", "0.999", "1.0001", "10000000", ".5", "2.",
               "+2.5", "2.5 ", "٢.٥")
FAST_TIMES = ("2024-02-29T10:00Z", "2026-04-30T23:59:59Z", "2026-12-31T23:30:00-01:00",
              "2027-01-01T00:30:00+01:00", "2026-05-31 23:00:00-15:59",
              "2026-06-01T10:00:00.5+05", "2026-06-01T10:00+0530", "2026-06-01T10:00:00.123456Z")
EDGE_TIMES = (*FAST_TIMES, "2026-02-29T10:00Z", "2026-04-31T10:00Z", "2026-06-01T00:00:00+16:00",
              "2026-06-01T24:00:00Z", "2026-06-01T10:00:60Z", "2026-06-01T10:00:00.1234567Z",
              "2026-06-01T10Z", "2026-6-01T10:00Z", "2026-06-01T10:00:00", "0001-01-02T16:00Z",
              "9999-12-29T00:00Z", "2026-06-01t10:00Z")


@st.composite
def nearly_plain_rows(draw):
    """(fields, bad columns): a plain valid row, times in this era, with at most one field
    from the hostile strategies or at the fast path's edges (not marked bad: validate()
    decides), so that a line fails, if it does, on that field alone."""
    plain = st.text("abcxyz XYZ-1é", min_size=1, max_size=8)
    fields = {c: draw(plain) for c in TEXT_COLUMNS}
    fields["price"] = draw(csv_price(hostile=False))[0]
    era = st.builds(lambda naive, minutes: naive.replace(tzinfo=tz(minutes)),
                    st.datetimes(datetime.datetime(2000, 1, 1), datetime.datetime(2100, 1, 1)),
                    OFFSETS)
    for column in TIME_COLUMNS:
        fields[column] = time_text(draw(era), draw(st.integers(0, 29)))
    bad = set()
    column = draw(st.sampled_from([None, "match_id", "home_team", "selection", "price",
                                   "price", "commence_time", "collected_at", "collected_at"]))
    if column in TEXT_COLUMNS:
        value, ok = draw(st.one_of(text_values(), BAD_TEXT, st.just(("", False))))
    elif column == "price":
        value, ok = draw(st.one_of(csv_price(), st.sampled_from(EDGE_PRICES).map(
            lambda v: (v, True))))
    elif column is not None:
        value, ok = draw(st.one_of(csv_time(), st.sampled_from(EDGE_TIMES).map(
            lambda v: (v, True))))
    if column is not None:
        fields[column] = value
        if not ok:
            bad.add(column)
    return [fields[c] for c in ingest.COLUMNS], bad


@settings(HOSTILE, max_examples=200)
@given(rows=st.lists(st.one_of(nearly_plain_rows(), odds_csv_rows()), min_size=1, max_size=8),
       order=st.lists(st.integers(0, 7), max_size=12), quoted=st.booleans(),
       ending=st.sampled_from(["\n", "\r\n", "\r", ""]), forgetful=st.booleans())
def test_the_fast_path_takes_a_line_only_as_the_full_checks_would(
        figures, rows, order, quoted, ending, forgetful):
    """The per-line fast path (which remembers the times and prices it has checked) takes a
    line only if the csv module and validate() accept it, with the same key and UTC month, and
    passes it on as read; whatever lines came before it, and however often a value repeats."""
    lines, bad_of = [], {}
    for i in [*range(len(rows)), *(i for i in order if i < len(rows))]:  # values repeat
        fields, bad = rows[i]
        if quoted:
            buffer = io.StringIO()
            csv.writer(buffer, lineterminator="").writerow(fields)
            text = buffer.getvalue()
        else:
            text = ",".join(fields)
        lines.append(text + ending)
        bad_of[text + ending] = bad
    with unittest.mock.patch.object(ingest.reader, "_VERDICTS_KEPT", 2 if forgetful else 20_000):
        taken = fast_path_verdicts(lines, bad_of)
    figures.add("hostile input: CSV fast path", examples=1, lines=len(lines), taken=len(taken))


def test_the_fast_path_at_its_edges_takes_the_common_forms_and_leaves_the_rest(figures):
    base = dict(zip(ingest.COLUMNS, ["m1", "Ligue 1", "Lyon", "Nice", "pinnacle", "1x2", "home",
                                     "2.100", "2026-11-28T20:00:00+01:00",
                                     "2026-11-28T12:00:00Z"], strict=True))
    lines, must_take = [], set()
    for column, values, fast in (("price", EDGE_PRICES, FAST_PRICES),
                                 ("commence_time", EDGE_TIMES, FAST_TIMES),
                                 ("collected_at", EDGE_TIMES, FAST_TIMES)):
        for value in values:
            text = ",".join({**base, column: value}.values())
            for ending in ("\n", "\r\n"):
                lines += [text + ending] * 2  # the second time from what it remembers
                if value in fast:
                    must_take.add(text + ending)
    taken = fast_path_verdicts(lines, {})
    assert must_take <= taken, sorted(must_take - taken)
    new_year_in_utc = ",".join({**base, "collected_at": "2026-12-31T23:30:00-01:00"}.values())
    assert ingest.fast_path()(new_year_in_utc, False)[2] == (2027, 1)
    figures.add("hostile input: CSV fast path", examples=1, lines=len(lines), taken=len(taken))


def fast_path_verdicts(lines, bad_of) -> set[str]:
    """Run the fast path over ``lines`` in order, checking each line it takes against the csv
    module and validate(); the lines taken."""
    remembering, taken = ingest.fast_path(), set()
    for text in lines:
        verdict = remembering(text, True)
        assert verdict == ingest.fast_path()(text, True), text  # as if seen first
        if verdict is None:
            continue
        taken.add(text)
        assert not bad_of.get(text), (text, bad_of[text])
        fields = next(csv.reader([text], strict=True))
        key = ingest.validate(fields)  # raises if the fast path took a bad line
        assert verdict[0] == key and verdict[2] == partitions.month_of(key[4])
        assert verdict[1] == text.rstrip("\r\n") + "\n" and verdict[3] == fields[0]
        assert ingest.key_of("prefix," + verdict[1], len("prefix,")) == key
    return taken


ROUNDING_PRICES = st.builds(lambda d, zeros: str(d) + "0" * zeros, TOO_MANY_PLACES,
                            st.integers(0, 3))


@settings(HOSTILE, max_examples=100)
@given(prices=st.lists(st.one_of(PADDED_PRICES.map(lambda v: (v, True)),
                                 ROUNDING_PRICES.map(lambda v: (v, False))),
                       min_size=1, max_size=10))
def test_prices_padded_with_zeros_are_taken_and_prices_that_would_round_are_refused(
        figures, prices):
    """Both the fast path and validate() take "2.1000" (2.100 exactly) and refuse "2.1001"."""
    base = dict(zip(ingest.COLUMNS, ["m1", "Ligue 1", "Lyon", "Nice", "pinnacle", "1x2", "home",
                                     "2.100", "2026-11-28T20:00:00+01:00",
                                     "2026-11-28T12:00:00Z"], strict=True))
    lines, bad_of = [], {}
    for price, exact in prices:
        fields = list({**base, "price": price}.values())
        text = ",".join(fields) + "\n"
        lines.append(text)
        bad_of[text] = set() if exact else {"price"}
        if exact:
            assert ingest.fast_path()(text, True) is not None, price
            assert ingest.validate(fields)[0] == "m1"
        else:
            with pytest.raises(ingest.BadRow) as refused:
                ingest.validate(fields)
            assert refused.value.reason == "is not a decimal with at most 3 decimal places"
    taken = fast_path_verdicts(lines, bad_of)
    figures.add("hostile input: CSV fast path", examples=1, lines=len(lines), taken=len(taken))


# -- (b) repositories: writes -----------------------------------------------------------------


def odds_field(column, hostile):
    if column in TEXT_COLUMNS:
        return st.one_of(BAD_TEXT, WRONG_TYPES, st.just((None, False))) if hostile \
            else text_values()
    if column == "price":
        valid = st.one_of(VALID_PRICES, VALID_PRICES.map(str),
                          st.integers(1001, 9_999_999).map(lambda i: i / 1000),  # float
                          st.integers(2, 9_999_999)).map(lambda v: (v, True))
        bad = st.one_of(BAD_PRICES, st.sampled_from(["NaN", "abc", "", True, [2]])
                        ).map(lambda v: (v, False))
        return bad if hostile else valid
    return BAD_MOMENTS.map(lambda v: (v, False)) if hostile \
        else VALID_MOMENTS.map(lambda v: (v, True))


@st.composite
def odds_dicts(draw):
    row, bad = {}, set()
    for column in ingest.COLUMNS:
        hostile = draw(st.integers(0, 24)) == 0
        if column in ("match_id", "selection") and not hostile:
            row[column], ok = draw(st.sampled_from(["m1", "m2"])), True
        else:
            row[column], ok = draw(odds_field(column, hostile))
        if not ok:
            bad.add(column)
    low_price = draw(st.integers(0, 7)) == 0 and not bad  # violates CHECK (price > 1) only
    if low_price:
        row["price"] = draw(st.sampled_from([Decimal("1"), Decimal("0.5"), Decimal("-3.25"), 0]))
    return row, bad, low_price


def as_stored(row):
    price = row["price"]
    price = Decimal(repr(price)) if isinstance(price, float) else Decimal(price)
    return (*[row[c] for c in TEXT_COLUMNS], price, row["commence_time"], row["collected_at"])


def names_a_bad_field(message, model, bad):
    return any(f"{model}.{column} " in message for column in bad)


@settings(HOSTILE, max_examples=60)
@given(batch=st.lists(odds_dicts(), min_size=1, max_size=4),
       how=st.sampled_from(["create", "insert_many", "upsert"]))
def test_odds_writes_store_exactly_or_refuse_naming_the_field(pg, db, figures, batch, how):
    pg.sql("TRUNCATE public.odds RESTART IDENTITY")
    if how == "create":
        batch = batch[:1]
    before = odds_snapshot(pg)
    bad = [b for _, b, _ in batch]
    low = any(lp for _, _, lp in batch)
    rows = [r for r, _, _ in batch]
    keys = [natural_key(as_stored(r)) for r, b, _ in batch if not b]
    repeated = len(set(keys)) < len(keys)
    try:
        if how == "create":
            crud.create(Odds, **rows[0])
        elif how == "insert_many":
            crud.insert_many(Odds, rows)
        else:
            odds.upsert(rows)
    except InvalidInput as exc:
        message = str(exc)
        assert any(bad), f"valid odds rejected: {message}"
        first = next(i for i, b in enumerate(bad) if b)
        assert names_a_bad_field(message, "Odds", bad[first]), (message, bad[first])
        if how != "create":
            assert message.startswith(f"row {first + 1}: "), message
        outcome = "rejected"
    except IntegrityError as exc:
        # only a real constraint violation: price <= 1, or a repeated key in insert_many
        assert not any(bad), exc
        assert low or (how == "insert_many" and repeated), exc
        outcome = "constraint"
    else:
        assert not any(bad) and not low
        expected = {}
        for row in rows:
            expected[natural_key(as_stored(row))] = as_stored(row)
        assert odds_snapshot(pg) == sorted(expected.values(), key=repr)
        outcome = "accepted"
    if outcome != "accepted":
        assert odds_snapshot(pg) == before, "half-written after an error"
    figures.add("hostile input: odds writes (crud/odds)", examples=1, **{outcome: 1},
                rows_checked=len(odds_snapshot(pg)), half_written=0)


JSON_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20),
                        st.floats(allow_nan=False, allow_infinity=False),
                        st.text(_storable, max_size=10))
VALID_JSON = st.recursive(JSON_LEAVES, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(_storable, max_size=5), inner,
                                                 max_size=3)), max_leaves=8)
BAD_JSON = st.sampled_from([{"a": float("nan")}, [float("inf")], {"a": "\x00"}, {1: "int key"},
                            {"d": Decimal("1.5")}, {"s": {1, 2}}, ["\ud800"], b"raw",
                            {"t": datetime.datetime(2024, 1, 1, tzinfo=UTC)}])


def team_change():
    """(field name, value, valid) for a change to a team."""
    ints = ("matches_played", "total_bets")
    return st.one_of(
        st.tuples(st.sampled_from(ints), st.integers(0, 2**31 - 1), st.just(True)),
        st.tuples(st.sampled_from(ints), st.sampled_from([2**31, 10**30, -2**31 - 1, 1.5, "12",
                                                          True, None, Decimal("3")]),
                  st.just(False)),
        st.tuples(st.just("win_rate"), st.decimals(0, 100, places=2), st.just(True)),
        st.tuples(st.just("roi"), st.decimals(Decimal("-9999999.999"), Decimal("9999999.999"),
                                              places=3), st.just(True)),
        st.tuples(st.sampled_from(["roi", "win_rate", "total_pnl", "avg_clv"]),
                  st.sampled_from([Decimal("NaN"), float("inf"), "NaN", Decimal(10**30),
                                   Decimal("1.23456"), "", [1], False]), st.just(False)),
        st.tuples(st.just("avg_clv"), st.none(), st.just(True)),
        st.tuples(st.sampled_from(["market_dna", "luck_dna"]), VALID_JSON, st.just(True)),
        st.tuples(st.sampled_from(["market_dna", "luck_dna"]), BAD_JSON, st.just(False)),
        st.tuples(st.sampled_from(["league", "team_name"]), text_values().map(lambda p: p[0]),
                  st.just(True)),
        st.tuples(st.sampled_from(["league", "team_name"]),
                  st.one_of(BAD_TEXT, WRONG_TYPES).map(lambda p: p[0]), st.just(False)),
    )


def json_normal(value):
    """jsonb keeps a number as the decimal text json.dumps wrote: compare numbers as such."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if isinstance(value, list):
        return [json_normal(v) for v in value]
    return {k: json_normal(v) for k, v in value.items()}


TEAM_COLUMNS = ("team_name", "league", "matches_played", "total_bets", "win_rate", "roi",
                "total_pnl", "avg_clv", "market_dna", "luck_dna")


def team_row(pg, team_id):
    row = pg.sql(f"SELECT {', '.join(TEAM_COLUMNS)} FROM quantum.team_quantum_dna "  # noqa: S608
                 "WHERE id = %s", (team_id,))[0]
    return dict(zip(TEAM_COLUMNS, row, strict=True))


@settings(HOSTILE, max_examples=60)
@given(changes=st.lists(team_change(), min_size=1, max_size=3),
       how=st.sampled_from(["update", "update_where", "create"]))
def test_team_changes_store_exactly_or_refuse_naming_the_field(pg, db, figures, changes, how):
    pg.sql("TRUNCATE quantum.team_quantum_dna RESTART IDENTITY CASCADE")
    team = add_team("Lyon")
    add_team("Nice")
    before = pg.sql("SELECT * FROM quantum.team_quantum_dna ORDER BY id")
    data = {name: value for name, value, _ in changes}
    bad = {name for name, value, ok in changes if not ok and data[name] is value}
    clash = (data.get("team_name") == "Nice" and "team_name" not in bad
             or how == "create" and data.get("team_name", "Lyon") in ("Lyon", "Nice"))
    try:
        if how == "update":
            crud.update(team, **data)
            target = team.id
        elif how == "update_where":
            crud.update_where(TeamQuantumDNA, data, team_name="Lyon")
            target = team.id
        else:
            target = crud.create(TeamQuantumDNA, **({"team_name": "Lyon", "league": "L"} | data)
                                 ).id
    except InvalidInput as exc:
        assert bad, f"valid change rejected: {exc}"
        assert names_a_bad_field(str(exc), "TeamQuantumDNA", bad), (str(exc), bad)
        outcome = "rejected"
    except IntegrityError as exc:
        assert not bad and clash, exc  # a unique team name taken
        outcome = "constraint"
    else:
        assert not bad and not clash
        stored = team_row(pg, target)
        for name, value in data.items():
            if name.endswith("_dna"):
                assert json_normal(stored[name]) == json_normal(value), name
            elif isinstance(value, float):
                assert stored[name] == Decimal(repr(value)), name
            else:
                assert stored[name] == value, name
        outcome = "accepted"
    if outcome != "accepted":
        assert pg.sql("SELECT * FROM quantum.team_quantum_dna ORDER BY id") == before
    figures.add("hostile input: team writes (crud)", examples=1, **{outcome: 1},
                rows_checked=2, half_written=0)


# -- (b) names taken from strings never build SQL --------------------------------------------

ODDS_FIELDS = sorted(Odds._meta.fields)
HOSTILE_NAMES = st.one_of(
    st.sampled_from(["price; DROP TABLE public.odds", "id) OR 1=1 --", '"price"', "PRICE",
                     "price ", "-", "--price", "", "odds.price", "ｐｒｉｃｅ", "price\x00",
                     "1", "*", "match_id, league", "\udc80", "collected_at DESC"]),
    st.text(max_size=12).filter(lambda t: t not in ODDS_FIELDS and t.lstrip("-") not in
                                ODDS_FIELDS),
    st.sampled_from([5, 2.5, b"price", {"price": 1}]),
)
NAMES = st.one_of(st.sampled_from(ODDS_FIELDS).map(lambda n: (n, True)),
                  HOSTILE_NAMES.map(lambda n: (n, False)))


def intact(pg):
    return [pg.sql(f"SELECT to_regclass('{t}') IS NOT NULL, (SELECT count(*) FROM {t})")[0]  # noqa: S608
            for t in TABLES]


def seed_odds(n=3):
    crud.insert_many(Odds, [{
        "match_id": f"m{i}", "league": "L", "home_team": "A", "away_team": "B",
        "bookmaker": "b", "market": "1x2", "selection": "home", "price": Decimal("2.500"),
        "commence_time": datetime.datetime(2024, 1, 1, tzinfo=UTC),
        "collected_at": datetime.datetime(2024, 1, 1, i, tzinfo=UTC)} for i in range(n)])


@pytest.fixture
def seeded(db, pg):
    seed_odds()
    return pg


@settings(HOSTILE, max_examples=80)
@given(name=NAMES, descending=st.booleans(),
       how=st.sampled_from(["get_all", "get_by_field", "count", "update_where", "upsert"]))
def test_field_and_ordering_names_from_strings_never_inject_sql(seeded, figures, name,
                                                                descending, how):
    pg = seeded
    value, valid = name
    if how in ("count", "update_where"):  # keyword arguments: names are always str
        value = value if isinstance(value, str) else str(value)
    before = intact(pg)
    snapshot = odds_snapshot(pg)
    expect_error = not valid
    try:
        if how == "get_all":
            order = f"-{value}" if descending and isinstance(value, str) else value
            rows = crud.get_all(Odds, order_by=[order, "id"] if descending else order)
            assert len(rows) == 3
        elif how == "get_by_field":
            # a lookup with a value of the wrong type is refused too: compare with "m1" only
            # where the field is text
            field = Odds._meta.fields.get(value) if isinstance(value, str) else None
            probe = "m1" if field is None or field.field_type == "TEXT" else None
            crud.get_by_field(Odds, value, probe)
        elif how == "count":
            crud.count(Odds, **{value: None})
        elif how == "update_where":
            expect_error = not valid or value in ("id", "match_id", "price", "commence_time",
                                                  "collected_at", "created_at", "updated_at")
            crud.update_where(Odds, {value: "changed"}, match_id="nobody")
        else:
            rows = [dict(zip(ingest.COLUMNS, ["m0", "L", "A", "B", "b", "1x2", "home",
                                              Decimal("2.500"),
                                              datetime.datetime(2024, 1, 1, tzinfo=UTC),
                                              datetime.datetime(2024, 1, 1, tzinfo=UTC)],
                             strict=True))]
            keys = list(Odds.natural_key)
            expect_error = not valid or value == "id"
            if descending:  # the hostile name in the conflict target
                expect_error = value != "collected_at"  # only the natural key is unique
                crud.upsert_many(Odds, rows, conflict=[*keys[:-1], value])
            else:
                crud.upsert_many(Odds, rows, conflict=keys, update=[value])
    except InvalidInput as exc:
        assert expect_error, f"valid name {value!r} refused: {exc}"
        message = str(exc)
        assert (repr(value) in message or f"Odds.{value} " in message
                or "unique key" in message or "primary key" in message), message
        outcome = "rejected"
    else:
        assert not expect_error, f"{how} accepted {value!r}"
        outcome = "accepted"
    assert intact(pg) == before
    if outcome == "rejected" or how != "upsert":
        assert odds_snapshot(pg) == snapshot
    figures.add("hostile input: names from strings", examples=1, **{outcome: 1},
                tables_checked=len(TABLES))


# -- (b) repository lookups with hostile arguments -------------------------------------------

LOOKUP_VALUES = st.one_of(
    st.sampled_from(["Lyon", "Nice", "Ligue 1", "m1", "1x2"]).map(lambda v: (v, True)),
    text_values(), BAD_TEXT, WRONG_TYPES, st.just((None, False)))


@settings(HOSTILE, max_examples=60)
@given(arg=LOOKUP_VALUES, what=st.sampled_from([
    "odds.get_by_match", "odds.get_by_league", "teams.get_by_name", "teams.get_by_league",
    "teams.get_top_performers", "friction.get_friction", "goalscorers.get_by_team",
    "strategies.get_team_strategies", "strategies.get_best_by_market"]))
def test_lookups_by_natural_key_answer_correctly_or_refuse_the_argument(pg, db, figures, arg,
                                                                         what):
    value, valid = arg
    optional = what == "teams.get_top_performers" and value is None  # None: every league
    valid = valid or optional
    if not pg.sql("SELECT 1 FROM quantum.team_quantum_dna WHERE team_name = 'Lyon'"):
        lyon, nice = add_team("Lyon"), add_team("Nice")
        add_friction(lyon, nice)
        add_scorer(lyon, "Fekir")
        add_strategy(lyon, market="1x2")
        seed_odds()
    before = intact(pg)
    team_exists = bool(valid and pg.sql("SELECT 1 FROM quantum.team_quantum_dna "
                                        "WHERE team_name = %s", (value,)))
    calls = {
        "odds.get_by_match": lambda: [o.id for o in odds.get_by_match(value)],
        "odds.get_by_league": lambda: [o.id for o in odds.get_by_league(value)],
        "teams.get_by_name": lambda: [teams.get_by_name(value).id],
        "teams.get_by_league": lambda: [t.id for t in teams.get_by_league(value)],
        "teams.get_top_performers": lambda: [t.id for t in teams.get_top_performers(
            limit=5, league=value)],
        "friction.get_friction": lambda: [friction.get_friction(value, "Nice").id],
        "goalscorers.get_by_team": lambda: [g.id for g in goalscorers.get_by_team(value)],
        "strategies.get_team_strategies": lambda: [
            s.id for s in strategies.get_team_strategies(value)],
        "strategies.get_best_by_market": lambda: [
            s.id for s in strategies.get_best_by_market(value)],
    }
    truth = {  # the same questions in raw SQL
        "odds.get_by_match": ("SELECT id FROM public.odds WHERE match_id = %s "
                              "ORDER BY collected_at, bookmaker, market, selection"),
        "odds.get_by_league": ("SELECT id FROM public.odds WHERE league = %s "
                               "ORDER BY commence_time, match_id, collected_at"),
        "teams.get_by_league": ("SELECT id FROM quantum.team_quantum_dna WHERE league = %s "
                                "ORDER BY team_name"),
        "teams.get_top_performers": ("SELECT id FROM quantum.team_quantum_dna WHERE league = %s"
                                     " ORDER BY roi DESC NULLS LAST, team_name LIMIT 5"),
        "friction.get_friction": ("SELECT f.id FROM quantum.quantum_friction_matrix f JOIN "
                                  "quantum.team_quantum_dna h ON h.id = f.home_team_id JOIN "
                                  "quantum.team_quantum_dna a ON a.id = f.away_team_id "
                                  "WHERE h.team_name = %s AND a.team_name = 'Nice'"),
        "strategies.get_best_by_market": ("SELECT id FROM quantum.quantum_strategies "
                                          "WHERE market = %s AND is_active ORDER BY roi DESC"),
    }
    try:
        found = calls[what]()
    except InvalidInput as exc:
        assert not valid, f"valid argument {value!r} refused: {exc}"
        assert short_repr(value) in str(exc), str(exc)
        outcome = "rejected"
    except NotFound as exc:
        assert valid and not team_exists and what != "friction.get_friction" or \
            what == "friction.get_friction" and valid, exc
        assert repr(value) in str(exc)
        outcome = "not found"
    else:
        assert valid, f"{what} accepted {value!r}"
        if what in truth and not optional:
            assert found == [r[0] for r in pg.sql(truth[what], (value,))]
        outcome = "answered"
    assert intact(pg) == before
    figures.add("hostile input: repository lookups", examples=1, **{outcome: 1})


def short_repr(value):
    text = repr(value)
    return text if len(text) <= 60 else text[:57]


def test_a_json_dumped_then_read_back_is_the_same_value(db, pg):
    """The one JSON subtlety the property test normalises: jsonb keeps numbers as decimals."""
    team = add_team("Lyon", market_dna={"big": 1e23, "small": 0.1, "n": [1, -0.0]})
    stored = team_row(pg, team.id)["market_dna"]
    assert json_normal(stored) == json_normal({"big": 1e23, "small": 0.1, "n": [1, -0.0]})
    assert json.dumps(stored)  # readable back as ordinary JSON


@pytest.mark.parametrize("sql,params,named", [
    ("SELECT %s::int", (2**40,), "integer out of range"),
    ("SELECT %s::numeric(10, 3)", (Decimal(10**30),), "numeric field overflow"),
    ("SELECT %s::jsonb", ('{"a": NaN}',), "invalid input syntax for type json"),
    ("SELECT %s::timestamptz", ("2024-01-01T00:00+16:00",), "time zone displacement"),
    ("SELECT %s", ("a\x00b",), "NUL"),
    ("SELECT %s", ("\ud800",), "surrogates"),
])
def test_what_the_server_or_driver_refuses_becomes_invalid_input_in_one_place(
        db, pg, figures, sql, params, named):
    """The backstop behind the field checks: raw SQL through the package database."""
    import monps_store

    with monps_store.connection(), pytest.raises(InvalidInput, match=named) as caught:
        db.execute_sql(sql, params)
    assert caught.value.__cause__ is not None
    with monps_store.unit_of_work():  # the connection is usable afterwards
        assert db.execute_sql("SELECT 1").fetchone() == (1,)
    figures.add("hostile input: server/driver refusals translated", examples=1, rejected=1)
