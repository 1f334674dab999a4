"""CLV settlement on hand-checked examples: closing price = last price collected before
kick-off for the same match, market and selection; CLV% = (odds taken / closing - 1) * 100."""

import datetime
import os
import subprocess
import sys
from decimal import Decimal

import pytest

import monps_store
from monps_store.errors import InvalidInput
from monps_store.repositories import clv
from tests.factories import add_odds, add_pick

UTC = datetime.UTC
KICK_OFF = datetime.datetime(2026, 11, 28, 20, 0, tzinfo=UTC)


def hours_before(hours):
    return KICK_OFF - datetime.timedelta(hours=hours)


def odds(price, hours, bookmaker="pinnacle", selection="home", match_id="m1"):
    add_odds(match_id=match_id, bookmaker=bookmaker, selection=selection, price=price,
             commence_time=KICK_OFF, collected_at=hours_before(hours))


def picks(pg):
    return pg.sql("SELECT agent, status, closing_odds, clv_percent, updated_by, change_reason "
                  "FROM public.tracking_clv_picks ORDER BY agent")


def test_clv_uses_the_last_price_before_kick_off_from_the_picks_bookmaker(pg, db):
    odds("2.300", 24)
    odds("2.000", 1)            # the closing price: the last one before kick-off
    odds("1.500", -1)           # in play, after kick-off: ignored
    odds("2.400", 1, bookmaker="bet365")
    add_pick(agent="beat", odds_taken="2.100", picked_at=hours_before(30))
    add_pick(agent="lost", odds_taken="1.900", picked_at=hours_before(30))
    add_pick(agent="bet365", bookmaker="bet365", odds_taken="2.500", picked_at=hours_before(30))
    with monps_store.unit_of_work(actor="cron:settle"):
        result = clv.settle()
    assert result == clv.Settlement(settled=3, still_open=0)
    assert picks(pg) == [
        ("beat", "settled", Decimal("2.000"), Decimal("5.000"), "cron:settle", "CLV settlement"),
        # 2.5 / 2.4 - 1 = 0.041666... -> 4.167 %
        ("bet365", "settled", Decimal("2.400"), Decimal("4.167"), "cron:settle",
         "CLV settlement"),
        ("lost", "settled", Decimal("2.000"), Decimal("-5.000"), "cron:settle",
         "CLV settlement"),
    ]


def test_a_pick_made_after_the_last_price_before_kick_off_settles_on_that_price(pg, db):
    odds("2.300", 24 * 40)      # weeks earlier, in another month
    odds("2.000", 2)            # the closing price, collected before the pick
    odds("1.500", -1)           # in play: ignored
    add_pick(agent="late", odds_taken="2.100", picked_at=hours_before(0.5))
    assert clv.settle() == clv.Settlement(settled=1, still_open=0)
    assert picks(pg)[0][1:4] == ("settled", Decimal("2.000"), Decimal("5.000"))


def test_a_reference_bookmaker_replaces_each_picks_own(pg, db):
    odds("2.000", 1)
    odds("2.200", 1, bookmaker="sharp")
    add_pick(agent="a", odds_taken="2.500", picked_at=hours_before(30))
    assert clv.settle(reference_bookmaker="sharp").settled == 1
    # 2.5 / 2.2 - 1 = 0.136363... -> 13.636 %
    assert picks(pg)[0][2:4] == (Decimal("2.200"), Decimal("13.636"))
    with pytest.raises(InvalidInput, match="reference bookmaker must not be blank"):
        clv.settle(reference_bookmaker=" ")


def test_picks_without_a_closing_price_stay_open_and_are_counted(pg, db):
    odds("2.000", 1)
    odds("1.800", -2, selection="away")  # only after kick-off: no closing price
    add_pick(agent="a", odds_taken="2.100", picked_at=hours_before(30))
    add_pick(agent="b", selection="away", odds_taken="1.900", picked_at=hours_before(30))
    add_pick(agent="c", match_id="unknown", odds_taken="1.900", picked_at=hours_before(30))
    assert clv.settle() == clv.Settlement(settled=1, still_open=2)
    assert [(p[0], p[1], p[2]) for p in picks(pg)] == [
        ("a", "settled", Decimal("2.000")), ("b", "open", None), ("c", "open", None)]


def test_settling_again_changes_nothing_already_settled(pg, db):
    odds("2.000", 1)
    add_pick(agent="a", odds_taken="2.100", picked_at=hours_before(30))
    clv.settle()
    before = pg.sql("SELECT updated_at, clv_percent FROM public.tracking_clv_picks")
    odds("1.500", 0.5)  # a later pre-match price arrives: settled picks keep their CLV
    assert clv.settle() == clv.Settlement(settled=0, still_open=0)
    assert pg.sql("SELECT updated_at, clv_percent FROM public.tracking_clv_picks") == before


def test_the_cli_settles_and_reports(pg, db):
    odds("2.000", 1)
    add_pick(agent="a", odds_taken="2.100", picked_at=hours_before(30))
    add_pick(agent="b", match_id="none", odds_taken="2.100", picked_at=hours_before(30))
    env = {"PATH": os.environ.get("PATH", ""), "DATABASE_URL": pg.url}
    result = subprocess.run([sys.executable, "-m", "monps_store", "settle-clv"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ("settled 1 pick(s); 1 still open (no price collected before "
                             "kick-off)\n")
    assert pg.sql("SELECT updated_by FROM public.tracking_clv_picks WHERE status = 'settled'"
                  ) == [("cli:settle-clv",)]
