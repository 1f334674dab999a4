"""Bulk odds ingest through COPY: counts, idempotency, and every kind of bad input."""

import csv
import datetime
import os
import subprocess
import sys
from decimal import Decimal

import pytest

import monps_store
from monps_store import ingest
from monps_store.errors import InvalidInput

HEADER = ",".join(ingest.COLUMNS)
UTC = datetime.UTC


def line(match="m1", bookmaker="pinnacle", selection="home", price="2.100",
         collected="2026-11-28T12:00:00Z", league="Ligue 1", commence="2026-11-28T20:00:00+01:00"):
    return (f"{match},{league},Lyon,Nice,{bookmaker},1x2,{selection},{price},{commence},"
            f"{collected}")


def write(tmp_path, *lines, header=HEADER, name="odds.csv", encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(("\n".join([header, *lines]) + "\n").encode(encoding)
                     if header is not None else b"")
    return path


def stored(pg):
    return pg.sql("SELECT match_id, bookmaker, selection, price, collected_at FROM public.odds "
                  "ORDER BY match_id, bookmaker, selection, collected_at")


def count(pg):
    return pg.sql("SELECT count(*) FROM public.odds")[0][0]


def test_a_load_reports_counts_and_a_second_identical_load_changes_nothing(pg, db, tmp_path):
    path = write(tmp_path, line(), line(selection="draw", price="3.400"),
                 line(selection="away", price="3.900"))
    first = ingest.ingest_odds(path)
    assert (first.rows, first.inserted, first.updated, first.unchanged) == (3, 3, 0, 0)
    before = pg.sql("SELECT id, updated_at FROM public.odds ORDER BY id")
    second = ingest.ingest_odds(path)
    assert (second.rows, second.inserted, second.updated, second.unchanged) == (3, 0, 0, 3)
    assert second.summary().endswith("; nothing changed")
    assert pg.sql("SELECT id, updated_at FROM public.odds ORDER BY id") == before


def test_a_changed_price_is_an_update_and_new_snapshots_are_inserts(pg, db, tmp_path):
    ingest.ingest_odds(write(tmp_path, line(), line(selection="away", price="3.900")))
    report = ingest.ingest_odds(write(tmp_path, line(price="2.050"),
                                      line(selection="away", price="3.900"),
                                      line(collected="2026-11-28T13:00:00Z", price="2.000"),
                                      name="second.csv"))
    assert (report.inserted, report.updated, report.unchanged) == (1, 1, 1)
    assert [(r[2], r[3]) for r in stored(pg)] == [
        ("away", Decimal("3.900")), ("home", Decimal("2.050")), ("home", Decimal("2.000"))]


def test_columns_may_come_in_any_order_and_times_keep_their_offsets(pg, db, tmp_path):
    columns = list(reversed(ingest.COLUMNS))
    values = dict(zip(ingest.COLUMNS, line().split(","), strict=True))
    path = write(tmp_path, ",".join(values[c] for c in columns), header=",".join(columns))
    assert ingest.ingest_odds(path).inserted == 1
    assert pg.sql("SELECT commence_time FROM public.odds") == [
        (datetime.datetime(2026, 11, 28, 19, 0, tzinfo=UTC),)]


def test_the_last_occurrence_of_a_repeated_key_wins(pg, db, tmp_path):
    report = ingest.ingest_odds(write(tmp_path, line(price="2.100"), line(price="2.300")))
    assert (report.inserted, report.duplicates) == (1, 1)
    assert stored(pg)[0][3] == Decimal("2.300")


def test_rows_from_an_iterable_load_with_audit_columns(pg, db):
    rows = [{"match_id": "m9", "league": "Serie A", "home_team": "Milan", "away_team": "Roma",
             "bookmaker": "bet365", "market": "1x2", "selection": "home",
             "price": Decimal("1.850"), "commence_time": datetime.datetime(2026, 12, 1, 20,
                                                                           tzinfo=UTC),
             "collected_at": datetime.datetime(2026, 12, 1, 9, tzinfo=UTC)}]
    with monps_store.unit_of_work(actor="cron:odds", reason="test load"):
        assert ingest.ingest_odds(rows).inserted == 1
    assert pg.sql("SELECT created_by, updated_by, change_reason, created_at = updated_at "
                  "FROM public.odds") == [("cron:odds", "cron:odds", "test load", True)]


def test_a_price_padded_with_zeros_is_stored_as_the_same_price_and_one_that_rounds_is_not(
        pg, db, tmp_path):
    quoted = line(selection="draw", price="3.4").replace("Ligue 1", '"Ligue 1"')  # validate()
    first = ingest.ingest_odds(write(tmp_path, line(price="2.1"), quoted,
                                     line(selection="away", price="3.90000")))
    assert (first.inserted, first.rejected) == (3, 0)
    assert [str(price) for (price,) in pg.sql("SELECT price FROM public.odds ORDER BY "
                                              "selection")] == ["3.900", "3.400", "2.100"]
    again = ingest.ingest_odds(write(tmp_path, line(price="2.1000"), quoted.replace(
        "3.4", "3.4000"), line(selection="away", price="3.9"), name="padded.csv"))
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 3)
    rows = [dict(zip(ingest.COLUMNS, line(price="2.10").split(","), strict=True))]
    assert ingest.ingest_odds(rows).unchanged == 1
    for rounds in (line(price="2.1001"), quoted.replace("3.4", "3.4001")):
        with pytest.raises(InvalidInput, match=r"line 2, column price: is not a decimal with "
                                               r"at most 3 decimal places \(value '[0-9.]+'\)"):
            ingest.ingest_odds(write(tmp_path, rounds, name="rounds.csv"))
    assert count(pg) == 3


BAD_ROWS = [
    (line(price="1.000"), "column price: must be greater than 1 (value '1.000')"),
    (line(price="0.5"), "column price: must be greater than 1 (value '0.5')"),
    (line(price="NaN"), "column price: is not a decimal with at most 3 decimal places "
                        "(value 'NaN')"),
    (line(price="inf"), "column price: is not a decimal"),
    (line(price="2.1234"), "column price: is not a decimal with at most 3 decimal places"),
    (line(price="12345678.5"), "column price: is not a decimal"),
    (line(price=""), "column price: is not a decimal"),
    (line(collected="2026-11-28T12:00:00"), "column collected_at: has no time zone offset "
                                            "(value '2026-11-28T12:00:00')"),
    (line(collected="yesterday"), "column collected_at: is not an ISO 8601 time"),
    (line(commence="2026-13-40T20:00:00Z"), "column commence_time: is not a valid date and "
                                            "time"),
    (line(match=""), "column match_id: is empty"),
    (line(league="Ligue\x001"), "column league: contains a NUL byte"),
    ("m1,Ligue 1,Lyon,Nice,pinnacle,1x2,home,2.1", "expected 10 fields, got 8"),
]


@pytest.mark.parametrize("bad,message", BAD_ROWS, ids=[m[:40] for _, m in BAD_ROWS])
def test_strict_mode_names_line_column_and_value_and_writes_nothing(pg, db, tmp_path, bad,
                                                                     message):
    path = write(tmp_path, line(selection="draw"), bad, line(selection="away"))
    with pytest.raises(InvalidInput) as caught:
        ingest.ingest_odds(path)
    assert f"{path}: line 3" in str(caught.value)
    assert message in str(caught.value)
    assert "nothing was written" in str(caught.value)
    assert count(pg) == 0


def test_a_bad_row_after_many_good_chunks_still_writes_nothing(pg, db, tmp_path):
    good = [line(match=f"m{i}") for i in range(2_500)]
    path = write(tmp_path, *good, line(price="abc"))
    with pytest.raises(InvalidInput, match="line 2502, column price"):
        ingest.ingest_odds(path, chunk_rows=500)  # five chunks already upserted in the transaction
    assert count(pg) == 0


def test_skip_mode_loads_exactly_the_good_rows_and_writes_each_reject(pg, db, tmp_path):
    path = write(tmp_path, line(selection="home"), line(selection="draw", price="1"),
                 "too,few,fields", line(selection="away", collected="2026-11-28T12:00:00"),
                 line(selection="away"))
    rejects = tmp_path / "rejects.csv"
    report = ingest.ingest_odds(path, skip_invalid=True, rejects=rejects)
    assert (report.rows, report.inserted, report.rejected) == (5, 2, 3)
    assert [r[2] for r in stored(pg)] == ["away", "home"]
    rows = list(csv.reader(rejects.open()))
    assert rows[0] == ["line", "reason", *ingest.COLUMNS]
    assert [(r[0], r[1]) for r in rows[1:]] == [
        ("3", "line 3, column price: must be greater than 1 (value '1')"),
        ("4", "line 4: expected 10 fields, got 3"),
        ("5", "line 5, column collected_at: has no time zone offset (value "
              "'2026-11-28T12:00:00')"),
    ]
    assert rows[1][2:] == line(selection="draw", price="1").split(",")


@pytest.mark.parametrize("header,message", [
    (None, "the file is empty (a header row is required)"),
    (HEADER + ",margin", "bad header: unknown column(s) margin"),
    (HEADER.replace(",price", ""), "bad header: missing column(s) price"),
    (HEADER + ",price", "bad header: repeated column(s) price"),
])
def test_a_bad_header_or_empty_file_is_refused_clearly(pg, db, tmp_path, header, message):
    path = write(tmp_path, header=header) if header is None else write(tmp_path, line(),
                                                                        header=header)
    with pytest.raises(InvalidInput, match=message.replace("(", r"\(").replace(")", r"\)")):
        ingest.ingest_odds(path)
    assert count(pg) == 0


def test_bytes_that_are_not_utf8_are_refused(pg, db, tmp_path):
    path = write(tmp_path, line(), line(league="Ligue 1 \xe9t\xe9", selection="away"),
                 encoding="latin-1")
    with pytest.raises(InvalidInput) as refused:
        ingest.ingest_odds(path)
    # The byte as it is in the file, not the surrogate Python decoded it to; and the
    # parameter that loads the good rows, not the command line's flag.
    assert ("line 3, column league: is not valid UTF-8: byte 0xE9 at character 9 (value "
            "b'Ligue 1 \\xe9t\\xe9'); nothing was written (pass skip_invalid=True to load the "
            "good rows)") in str(refused.value)
    assert "surrogate" not in str(refused.value) and "--skip-invalid" not in str(refused.value)
    assert count(pg) == 0


def test_a_header_only_file_loads_nothing(pg, db, tmp_path):
    report = ingest.ingest_odds(write(tmp_path))
    assert (report.rows, report.changed) == (0, 0)


def test_naive_datetimes_and_unknown_fields_from_an_iterable_are_rejected(pg, db):
    row = {"match_id": "m1", "league": "L", "home_team": "A", "away_team": "B",
           "bookmaker": "b", "market": "1x2", "selection": "home", "price": Decimal("2"),
           "commence_time": datetime.datetime(2026, 12, 1, 20),
           "collected_at": datetime.datetime(2026, 12, 1, 9, tzinfo=UTC)}
    with pytest.raises(InvalidInput, match="line 1, column commence_time: has no time zone"):
        ingest.ingest_odds([row])
    with pytest.raises(InvalidInput, match=r"line 1: unknown field\(s\) margin"):
        ingest.ingest_odds([row | {"margin": 1}])
    with pytest.raises(InvalidInput, match="column price: is not a decimal .*'nan'"):
        ingest.ingest_odds([row | {"price": float("nan"),
                                   "commence_time": row["collected_at"]}])
    assert count(pg) == 0


def test_the_cli_loads_a_file_and_exits_one_on_bad_input(pg, db, tmp_path):
    good = write(tmp_path, line(), name="good.csv")
    bad = write(tmp_path, line(), line(price="x"), name="bad.csv")
    env = {"PATH": os.environ.get("PATH", ""), "DATABASE_URL": pg.url}

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "monps_store", "ingest", "odds", *args],
                              capture_output=True, text=True, env=env, timeout=120)

    result = cli(str(good))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("odds: 1 rows read: 1 inserted, 0 updated, 0 unchanged")
    again = cli(str(good))
    assert again.stdout.rstrip().endswith("; nothing changed")
    failed = cli(str(bad))
    assert failed.returncode == 1
    assert failed.stderr == (f"error: {bad}: line 3, column price: is not a decimal with at "
                             "most 3 decimal places (value 'x'); nothing was written (use "
                             "--skip-invalid to load the good rows)\n")
    rejects = tmp_path / "rejects.csv"
    skipped = cli(str(bad), "--skip-invalid", "--rejects", str(rejects))
    assert skipped.returncode == 0, skipped.stderr
    assert "1 rejected" in skipped.stdout
    assert len(rejects.read_text().splitlines()) == 2
    assert cli(str(bad), "--rejects", str(rejects)).returncode == 2
    assert count(pg) == 1
