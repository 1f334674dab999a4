"""Every repository function against the real database, with hand-built rows."""

import datetime
import re
from decimal import Decimal

import pytest

import monps_store
from monps_store.errors import InvalidInput, NotFound
from monps_store.models import Odds, TeamQuantumDNA
from monps_store.repositories import clv, crud, friction, goalscorers, odds, strategies, teams
from tests.factories import (
    add_friction,
    add_odds,
    add_pick,
    add_scorer,
    add_strategy,
    add_team,
    odds_row,
)

UTC = datetime.UTC  # datetime.timezone.utc


def at(day, hour=0):
    """A moment of September 2024, in UTC."""
    return datetime.datetime(2024, 9, day, hour, tzinfo=UTC)


# -- helpers ---------------------------------------------------------------------------------


def names(rows):
    return [row.team_name for row in rows]


def bad_name(name):
    """InvalidInput naming ``name`` and listing the valid fields."""
    return pytest.raises(InvalidInput, match=re.escape(repr(name)) + ".*valid fields: .*id")


# -- crud: reads -----------------------------------------------------------------------------


def test_get_by_id_returns_the_row(db):
    lyon = add_team("Lyon")
    assert crud.get_by_id(TeamQuantumDNA, lyon.id).team_name == "Lyon"


def test_get_by_id_of_a_missing_row_raises_not_found_naming_model_and_id(db):
    with pytest.raises(NotFound, match=re.escape("TeamQuantumDNA with id=999 not found")):
        crud.get_by_id(TeamQuantumDNA, 999)


def test_get_all_orders_by_primary_key_by_default_and_applies_skip_and_limit(db):
    for name in ["Nice", "Lyon", "Lens", "Brest"]:
        add_team(name)
    assert names(crud.get_all(TeamQuantumDNA)) == ["Nice", "Lyon", "Lens", "Brest"]
    assert names(crud.get_all(TeamQuantumDNA, skip=1, limit=2)) == ["Lyon", "Lens"]
    assert names(crud.get_all(TeamQuantumDNA, skip=3)) == ["Brest"]
    assert crud.get_all(TeamQuantumDNA, limit=0) == []


def test_get_all_orders_descending_with_a_leading_minus(db):
    add_team("Lyon", roi=Decimal("1.000"))
    add_team("Nice", roi=Decimal("3.000"))
    add_team("Lens", roi=Decimal("2.000"))
    assert names(crud.get_all(TeamQuantumDNA, order_by="-roi")) == ["Nice", "Lens", "Lyon"]
    assert names(crud.get_all(TeamQuantumDNA, order_by="team_name")) == ["Lens", "Lyon", "Nice"]


def test_get_all_orders_by_a_list_of_fields(db):
    add_team("Lyon", league="Ligue 1")
    add_team("Milan", league="Serie A")
    add_team("Nice", league="Ligue 1")
    add_team("Inter", league="Serie A")
    found = crud.get_all(TeamQuantumDNA, order_by=["-league", "team_name"])
    assert names(found) == ["Inter", "Milan", "Lyon", "Nice"]


def test_get_by_field_returns_the_matching_rows_in_the_given_order(db):
    add_team("Lyon", league="Ligue 1")
    add_team("Milan", league="Serie A")
    add_team("Nice", league="Ligue 1")
    found = crud.get_by_field(TeamQuantumDNA, "league", "Ligue 1", order_by="-team_name")
    assert names(found) == ["Nice", "Lyon"]
    assert names(crud.get_by_field(TeamQuantumDNA, "league", "Ligue 1", limit=1)) == ["Lyon"]
    assert crud.get_by_field(TeamQuantumDNA, "league", "Bundesliga") == []


def test_count_counts_every_row_or_the_rows_matching_the_filters(db):
    add_odds(match_id="m1", bookmaker="pinnacle")
    add_odds(match_id="m1", bookmaker="bet365")
    add_odds(match_id="m2", bookmaker="pinnacle")
    assert crud.count(Odds) == 3
    assert crud.count(Odds, match_id="m1") == 2
    assert crud.count(Odds, match_id="m1", bookmaker="bet365") == 1
    assert crud.count(Odds, match_id="m9") == 0


def test_an_unknown_ordering_name_is_refused_and_names_the_valid_fields(db):
    with bad_name("kickoff"):
        crud.get_all(Odds, order_by="-kickoff")
    with pytest.raises(InvalidInput, match="commence_time"):
        crud.get_all(Odds, order_by=["price", "kickoff"])


def test_an_unknown_field_name_is_refused_by_every_crud_function(db):
    lyon = add_team("Lyon")
    with bad_name("town"):
        crud.get_by_field(TeamQuantumDNA, "town", "Lyon")
    with bad_name("town"):
        crud.count(TeamQuantumDNA, town="Lyon")
    with bad_name("town"):
        crud.create(TeamQuantumDNA, team_name="Nice", league="Ligue 1", town="Nice")
    with bad_name("town"):
        crud.update(lyon, town="Lyon")
    with bad_name("town"):
        crud.insert_many(TeamQuantumDNA, [{"team_name": "Nice", "league": "L", "town": "x"}])
    assert names(crud.get_all(TeamQuantumDNA)) == ["Lyon"]


def test_a_malicious_field_name_is_refused_and_the_table_survives(db, pg):
    add_odds()
    evil = "price; DROP TABLE odds"
    with bad_name(evil):
        crud.get_all(Odds, order_by=evil)
    with bad_name(evil):
        crud.get_by_field(Odds, evil, 1)
    with bad_name(evil):
        crud.count(Odds, **{evil: 1})
    assert pg.sql("SELECT to_regclass('public.odds')::text") == [("odds",)]
    assert pg.sql("SELECT count(*) FROM public.odds") == [(1,)]


def test_a_negative_or_non_integer_skip_or_limit_is_refused(db):
    with pytest.raises(InvalidInput, match=re.escape("skip must be a non-negative integer, "
                                                     "got -1")):
        crud.get_all(Odds, skip=-1)
    with pytest.raises(InvalidInput, match=re.escape("limit must be a non-negative integer, "
                                                     "got -5")):
        crud.get_all(Odds, limit=-5)
    with pytest.raises(InvalidInput, match=re.escape("limit must be a non-negative integer, "
                                                     "got '10'")):
        crud.get_all(Odds, limit="10")
    with pytest.raises(InvalidInput, match=re.escape("skip must be a non-negative integer, "
                                                     "got 1.5")):
        crud.get_all(Odds, skip=1.5)
    with pytest.raises(InvalidInput, match="limit"):
        crud.get_all(Odds, limit=True)
    with pytest.raises(InvalidInput, match="limit"):
        crud.get_by_field(Odds, "match_id", "m1", limit=-1)


# -- crud: single-row writes -----------------------------------------------------------------


def test_create_inserts_the_row_with_its_audit_columns(db, pg):
    team = crud.create(TeamQuantumDNA, team_name="Lyon", league="Ligue 1",
                       roi=Decimal("2.500"))
    rows = pg.sql("SELECT id, team_name, roi, created_by IS NOT NULL, created_at IS NOT NULL "
                  "FROM quantum.team_quantum_dna")
    assert rows == [(team.id, "Lyon", Decimal("2.500"), True, True)]


def test_update_changes_the_fields_and_saves_them(db, pg):
    team = add_team("Lyon", roi=Decimal("1.000"))
    returned = crud.update(team, roi=Decimal("7.250"), league="Ligue 2")
    assert returned is team
    assert pg.sql("SELECT roi, league, updated_at >= created_at FROM quantum.team_quantum_dna"
                  ) == [(Decimal("7.250"), "Ligue 2", True)]


def test_update_writes_only_the_changed_and_audit_columns_keeping_a_concurrent_change(db, pg):
    team = add_team("Lyon", roi=Decimal("1.000"))
    pg.sql("UPDATE quantum.team_quantum_dna SET league = 'changed elsewhere', "
           "matches_played = 7")
    with monps_store.audit_context("editor", "roi fix"):
        crud.update(team, roi=Decimal("2.000"))
    assert pg.sql("SELECT roi, league, matches_played, updated_by, change_reason "
                  "FROM quantum.team_quantum_dna") == [
        (Decimal("2.000"), "changed elsewhere", 7, "editor", "roi fix")]


def test_delete_removes_an_instance_or_the_row_with_a_primary_key(db, pg):
    lyon, nice, lens = add_team("Lyon"), add_team("Nice"), add_team("Lens")
    assert crud.delete(lyon) == 1
    assert crud.delete(TeamQuantumDNA, nice.id) == 1
    assert pg.sql("SELECT id FROM quantum.team_quantum_dna") == [(lens.id,)]


def test_deleting_a_missing_primary_key_raises_not_found(db, pg):
    add_team("Lyon")
    with pytest.raises(NotFound, match=re.escape("TeamQuantumDNA with id=999 not found")):
        crud.delete(TeamQuantumDNA, 999)
    assert pg.sql("SELECT count(*) FROM quantum.team_quantum_dna") == [(1,)]


# -- crud: bulk writes -----------------------------------------------------------------------


def test_insert_many_inserts_every_row_in_batches_with_audit_columns(db, pg):
    rows = [{"team_name": f"T{i}", "league": "L"} for i in range(5)]
    assert crud.insert_many(TeamQuantumDNA, rows, batch_size=2) == 5
    assert pg.sql("SELECT team_name, created_by IS NOT NULL, updated_at IS NOT NULL "
                  "FROM quantum.team_quantum_dna ORDER BY team_name") == [
        (f"T{i}", True, True) for i in range(5)]
    assert crud.insert_many(TeamQuantumDNA, []) == 0


def test_upsert_many_inserts_then_ignores_unchanged_rows_then_updates_a_changed_one(db, pg):
    rows = [odds_row(selection="home", price="2.100"),
            odds_row(selection="draw", price="3.300"),
            odds_row(selection="away", price="3.900")]
    key = Odds.natural_key
    assert crud.upsert_many(Odds, rows, conflict=key) == 3
    assert crud.upsert_many(Odds, rows, conflict=key) == 0

    rows[1] = odds_row(selection="draw", price="3.450")
    assert crud.upsert_many(Odds, rows, conflict=key) == 1
    assert pg.sql("SELECT selection, price FROM public.odds ORDER BY selection") == [
        ("away", Decimal("3.900")), ("draw", Decimal("3.450")), ("home", Decimal("2.100"))]


def test_upsert_many_only_touches_the_named_update_columns(db, pg):
    add_team("Lyon", league="Ligue 1", roi=Decimal("1.000"))
    changed = crud.upsert_many(
        TeamQuantumDNA,
        [{"team_name": "Lyon", "league": "Ligue 2", "roi": Decimal("4.000")},
         {"team_name": "Nice", "league": "Ligue 1", "roi": Decimal("2.000")}],
        conflict=["team_name"], update=["roi"])
    assert changed == 2
    assert pg.sql("SELECT team_name, league, roi FROM quantum.team_quantum_dna "
                  "ORDER BY team_name") == [("Lyon", "Ligue 1", Decimal("4.000")),
                                            ("Nice", "Ligue 1", Decimal("2.000"))]


def test_update_where_needs_a_filter_and_updates_only_the_matching_rows(db, pg):
    add_team("Lyon", league="Ligue 1")
    add_team("Nice", league="Ligue 1")
    add_team("Milan", league="Serie A")
    with pytest.raises(InvalidInput, match="at least one filter"):
        crud.update_where(TeamQuantumDNA, {"total_bets": 9})
    with bad_name("town"):
        crud.update_where(TeamQuantumDNA, {"total_bets": 9}, town="Lyon")
    with bad_name("bets"):
        crud.update_where(TeamQuantumDNA, {"bets": 9}, league="Ligue 1")
    assert pg.sql("SELECT sum(total_bets) FROM quantum.team_quantum_dna") == [(0,)]

    assert crud.update_where(TeamQuantumDNA, {"total_bets": 9}, league="Ligue 1") == 2
    assert pg.sql("SELECT team_name, total_bets FROM quantum.team_quantum_dna "
                  "ORDER BY team_name") == [("Lyon", 9), ("Milan", 0), ("Nice", 9)]


def test_bulk_update_writes_the_named_fields_of_loaded_rows(db, pg):
    for name in ["Lyon", "Nice", "Lens"]:
        add_team(name)
    loaded = crud.get_all(TeamQuantumDNA, order_by="team_name")
    for n, team in enumerate(loaded):
        team.roi = Decimal(n + 1)
        team.league = "not saved"
    assert crud.bulk_update(loaded, ["roi"], batch_size=2) == 3
    assert pg.sql("SELECT team_name, roi, league FROM quantum.team_quantum_dna "
                  "ORDER BY team_name") == [("Lens", Decimal("1.000"), "Ligue 1"),
                                            ("Lyon", Decimal("2.000"), "Ligue 1"),
                                            ("Nice", Decimal("3.000"), "Ligue 1")]
    assert crud.bulk_update([], ["roi"]) == 0
    with bad_name("score"):
        crud.bulk_update(loaded, ["score"])


def test_bulk_update_writes_a_jsonb_field(db, pg):
    add_team("Lyon")
    add_team("Nice")
    loaded = crud.get_all(TeamQuantumDNA, order_by="team_name")
    for team in loaded:
        team.market_dna = {"team": team.team_name}
    assert crud.bulk_update(loaded, ["market_dna"]) == 2
    assert pg.sql("SELECT team_name, market_dna FROM quantum.team_quantum_dna "
                  "ORDER BY team_name") == [("Lyon", {"team": "Lyon"}),
                                            ("Nice", {"team": "Nice"})]


# -- odds ------------------------------------------------------------------------------------


def test_odds_of_a_match_come_oldest_first_then_by_bookmaker_market_and_selection(db):
    add_odds(match_id="m1", bookmaker="pinnacle", selection="home", collected_at=at(1, 12))
    add_odds(match_id="m1", bookmaker="bet365", selection="home", collected_at=at(1, 12))
    add_odds(match_id="m1", bookmaker="bet365", selection="away", collected_at=at(1, 12))
    add_odds(match_id="m1", bookmaker="bet365", selection="home", collected_at=at(1, 9))
    add_odds(match_id="m1", bookmaker="bet365", market="ou25", selection="over",
             collected_at=at(1, 12))
    add_odds(match_id="m2", bookmaker="bet365", selection="home", collected_at=at(1, 1))

    found = [(o.collected_at, o.bookmaker, o.market, o.selection)
             for o in odds.get_by_match("m1")]
    assert found == [
        (at(1, 9), "bet365", "1x2", "home"),
        (at(1, 12), "bet365", "1x2", "away"),
        (at(1, 12), "bet365", "1x2", "home"),
        (at(1, 12), "bet365", "ou25", "over"),
        (at(1, 12), "pinnacle", "1x2", "home"),
    ]
    assert odds.get_by_match("m9") == []


def test_odds_of_a_league_are_filtered_by_a_half_open_kick_off_window(db):
    add_odds(match_id="early", commence_time=at(1, 15))
    add_odds(match_id="start", commence_time=at(2, 15))
    add_odds(match_id="middle", commence_time=at(3, 15), collected_at=at(3, 9))
    add_odds(match_id="middle", commence_time=at(3, 15), collected_at=at(3, 8))
    add_odds(match_id="end", commence_time=at(4, 15))
    add_odds(match_id="other", league="Serie A", commence_time=at(3, 15))

    def window(**kwargs):
        return [(o.match_id, o.collected_at) for o in odds.get_by_league("Ligue 1", **kwargs)]

    assert window(since=at(2, 15), until=at(4, 15)) == [
        ("start", at(1, 12)), ("middle", at(3, 8)), ("middle", at(3, 9))]
    assert window(since=at(3, 15)) == [("middle", at(3, 8)), ("middle", at(3, 9)),
                                       ("end", at(1, 12))]
    assert window(until=at(2, 15)) == [("early", at(1, 12))]
    assert window(limit=2) == [("early", at(1, 12)), ("start", at(1, 12))]
    assert [o.match_id for o in odds.get_by_league("Serie A")] == ["other"]


def test_upserting_the_same_odds_twice_changes_nothing(db, pg):
    rows = [odds_row(selection="home"), odds_row(selection="away", price="3.100")]
    assert odds.upsert(rows) == 2
    before = pg.sql("SELECT id, price, updated_at FROM public.odds ORDER BY id")
    assert odds.upsert(rows) == 0
    assert pg.sql("SELECT id, price, updated_at FROM public.odds ORDER BY id") == before

    assert odds.upsert([odds_row(selection="away", price="3.250")]) == 1
    assert pg.sql("SELECT selection, price FROM public.odds ORDER BY id") == [
        ("home", Decimal("2.100")), ("away", Decimal("3.250"))]


# -- clv -------------------------------------------------------------------------------------


def test_an_agents_picks_come_newest_first_and_can_be_limited(db):
    first = add_pick(agent="alpha", picked_at=at(1), match_id="a1")
    add_pick(agent="alpha", picked_at=at(3), match_id="a3")
    add_pick(agent="alpha", picked_at=at(2), match_id="a2")
    tied = add_pick(agent="alpha", picked_at=at(1), match_id="a1b")
    add_pick(agent="beta", picked_at=at(5), match_id="b5")

    assert [p.match_id for p in clv.get_by_agent("alpha")] == ["a3", "a2", "a1b", "a1"]
    assert tied.id > first.id  # equal times: the later row first
    assert [p.match_id for p in clv.get_by_agent("alpha", limit=2)] == ["a3", "a2"]
    assert clv.get_by_agent("gamma") == []


def test_recent_picks_are_those_of_the_last_days_up_to_now(db):
    now = at(20, 12)
    add_pick(agent="alpha", match_id="one_day", picked_at=now - datetime.timedelta(days=1))
    add_pick(agent="beta", match_id="exactly_seven", picked_at=now - datetime.timedelta(days=7))
    add_pick(agent="alpha", match_id="almost_seven",
             picked_at=now - datetime.timedelta(days=6, hours=23))
    add_pick(agent="beta", match_id="too_old",
             picked_at=now - datetime.timedelta(days=7, seconds=1))
    add_pick(agent="alpha", match_id="after_now", picked_at=now + datetime.timedelta(hours=1))

    recent = clv.get_recent_picks(days=7, now=now)
    assert [p.match_id for p in recent] == ["one_day", "almost_seven", "exactly_seven"]
    assert [p.match_id for p in clv.get_recent_picks(days=2, now=now)] == ["one_day"]
    assert [p.match_id for p in clv.get_recent_picks(days=7, now=now, limit=1)] == ["one_day"]
    with pytest.raises(InvalidInput, match="days must not be negative"):
        clv.get_recent_picks(days=-1, now=now)


# -- teams -----------------------------------------------------------------------------------


def test_a_team_is_found_by_name_and_a_missing_one_is_named_in_not_found(db):
    lyon = add_team("Lyon")
    assert teams.get_by_name("Lyon").id == lyon.id
    with pytest.raises(NotFound, match=re.escape("team 'Atlantis' not found")):
        teams.get_by_name("Atlantis")


def test_the_teams_of_a_league_come_by_name(db):
    add_team("Nice")
    add_team("Milan", league="Serie A")
    add_team("Brest")
    assert names(teams.get_by_league("Ligue 1")) == ["Brest", "Nice"]
    assert teams.get_by_league("Bundesliga") == []


def build_performers():
    add_team("Lyon", roi=Decimal("5.000"), win_rate=Decimal("51.00"), avg_clv=Decimal("1.0"))
    add_team("Nice", roi=Decimal("8.000"), win_rate=Decimal("48.00"), avg_clv=None)
    add_team("Brest", roi=Decimal("5.000"), win_rate=Decimal("60.00"), avg_clv=Decimal("-2"))
    add_team("Milan", league="Serie A", roi=Decimal("9.000"), win_rate=Decimal("40.00"),
             avg_clv=Decimal("3.0"))


def test_top_performers_rank_by_roi_by_default_with_ties_by_name(db):
    build_performers()
    assert names(teams.get_top_performers()) == ["Milan", "Nice", "Brest", "Lyon"]
    assert names(teams.get_top_performers(limit=2)) == ["Milan", "Nice"]


def test_top_performers_rank_by_win_rate_within_a_league(db):
    build_performers()
    assert names(teams.get_top_performers(by="win_rate")) == ["Brest", "Lyon", "Nice", "Milan"]
    assert names(teams.get_top_performers(by="roi", league="Ligue 1")) == [
        "Nice", "Brest", "Lyon"]


def test_top_performers_by_average_clv_put_unknown_values_last(db):
    build_performers()
    assert names(teams.get_top_performers(by="avg_clv")) == ["Milan", "Lyon", "Brest", "Nice"]


def test_ranking_teams_by_an_unknown_figure_is_refused_and_lists_the_choices(db):
    with pytest.raises(InvalidInput, match=re.escape(
            "cannot rank teams by 'goals'; choose one of roi, win_rate, total_pnl, avg_clv, "
            "total_bets")):
        teams.get_top_performers(by="goals")


# -- friction --------------------------------------------------------------------------------


def test_the_friction_of_an_ordered_pair_is_found_with_both_teams_loaded(db):
    lyon, nice = add_team("Lyon"), add_team("Nice")
    row = add_friction(lyon, nice, "64.50")
    found = friction.get_friction("Lyon", "Nice")
    assert found.id == row.id
    assert found.friction_score == Decimal("64.50")
    assert (found.home_team.team_name, found.away_team.team_name) == ("Lyon", "Nice")


def test_the_reverse_pair_is_not_found_when_only_one_direction_exists(db):
    lyon, nice = add_team("Lyon"), add_team("Nice")
    add_friction(lyon, nice, "64.50")
    with pytest.raises(NotFound, match=re.escape("no friction row for 'Nice' (home) v "
                                                 "'Lyon' (away)")):
        friction.get_friction("Nice", "Lyon")


def test_high_friction_matches_are_at_least_the_threshold_highest_first(db):
    lyon, nice, lens = add_team("Lyon"), add_team("Nice"), add_team("Lens")
    add_friction(lyon, nice, "90.00")
    add_friction(nice, lyon, "70.00")
    add_friction(lyon, lens, "69.99")
    add_friction(lens, nice, "95.50")
    add_friction(nice, lens, "90.00")

    def pairs(rows):
        return [(r.home_team.team_name, r.away_team.team_name, r.friction_score) for r in rows]

    assert pairs(friction.get_high_friction_matches()) == [
        ("Lens", "Nice", Decimal("95.50")),
        ("Lyon", "Nice", Decimal("90.00")),
        ("Nice", "Lens", Decimal("90.00")),
        ("Nice", "Lyon", Decimal("70.00")),
    ]
    assert pairs(friction.get_high_friction_matches(threshold=Decimal("90"), limit=2)) == [
        ("Lens", "Nice", Decimal("95.50")), ("Lyon", "Nice", Decimal("90.00"))]
    assert friction.get_high_friction_matches(threshold=99) == []


def test_all_pairs_come_in_insertion_order_with_both_teams(db):
    lyon, nice = add_team("Lyon"), add_team("Nice")
    add_friction(nice, lyon, "10")
    add_friction(lyon, nice, "20")
    assert [(r.home_team.team_name, r.away_team.team_name)
            for r in friction.get_all_pairs()] == [("Nice", "Lyon"), ("Lyon", "Nice")]


# -- strategies ------------------------------------------------------------------------------


def test_a_teams_strategies_come_by_market_then_best_roi_active_only_by_default(db):
    lyon, nice = add_team("Lyon"), add_team("Nice")
    add_strategy(lyon, "steady", "2.000")
    add_strategy(lyon, "bold", "6.000")
    add_strategy(lyon, "goals", "4.000", market="btts")
    add_strategy(lyon, "retired", "9.000", is_active=False)
    add_strategy(nice, "other team", "7.000")

    active = strategies.get_team_strategies("Lyon")
    assert [(s.market, s.strategy_name) for s in active] == [
        ("1x2", "bold"), ("1x2", "steady"), ("btts", "goals")]
    every = strategies.get_team_strategies("Lyon", active_only=False)
    assert [s.strategy_name for s in every] == ["retired", "bold", "steady", "goals"]
    with pytest.raises(NotFound, match="'Atlantis'"):
        strategies.get_team_strategies("Atlantis")


def test_the_best_strategy_per_team_for_a_market_is_ranked_by_roi(db):
    lyon, nice, lens = add_team("Lyon"), add_team("Nice"), add_team("Lens")
    add_strategy(lyon, "lyon best", "6.000")
    add_strategy(lyon, "lyon second", "3.000")
    add_strategy(lyon, "lyon retired", "12.000", is_active=False)
    add_strategy(lyon, "lyon btts", "20.000", market="btts")
    add_strategy(nice, "nice best", "8.000", sample_size=5)
    add_strategy(nice, "nice second", "1.000", sample_size=80)
    add_strategy(lens, "lens low win rate", "4.000", win_rate="40.00")
    add_strategy(lens, "lens high win rate", "4.000", win_rate="60.00")

    best = strategies.get_best_by_market("1x2")
    assert [(s.team.team_name, s.strategy_name) for s in best] == [
        ("Nice", "nice best"), ("Lyon", "lyon best"), ("Lens", "lens high win rate")]

    seasoned = strategies.get_best_by_market("1x2", min_sample=10)
    assert [(s.team.team_name, s.strategy_name) for s in seasoned] == [
        ("Lyon", "lyon best"), ("Lens", "lens high win rate"), ("Nice", "nice second")]

    assert [s.strategy_name for s in strategies.get_best_by_market("1x2", limit=1)] == [
        "nice best"]
    assert strategies.get_best_by_market("corners") == []


# -- goalscorers -----------------------------------------------------------------------------


def test_a_teams_scorers_come_most_goals_first_then_by_name(db):
    lyon, nice = add_team("Lyon"), add_team("Nice")
    add_scorer(lyon, "Cherki", 4)
    add_scorer(lyon, "Lacazette", 11)
    add_scorer(lyon, "Fofana", 4)
    add_scorer(nice, "Moffi", 9)
    assert [p.player_name for p in goalscorers.get_by_team("Lyon")] == [
        "Lacazette", "Cherki", "Fofana"]
    with pytest.raises(NotFound, match="'Atlantis'"):
        goalscorers.get_by_team("Atlantis")


def test_top_scorers_rank_by_goals_then_expected_goals_with_a_league_filter(db):
    lyon, nice = add_team("Lyon"), add_team("Nice")
    milan = add_team("Milan", league="Serie A")
    add_scorer(lyon, "Lacazette", 11, "9.50")
    add_scorer(nice, "Moffi", 11, "12.10")
    add_scorer(lyon, "Cherki", 4, "3.00")
    add_scorer(milan, "Leao", 15, "10.00")

    def top(**kwargs):
        return [(p.player_name, p.team.team_name) for p in goalscorers.get_top_scorers(**kwargs)]

    assert top() == [("Leao", "Milan"), ("Moffi", "Nice"), ("Lacazette", "Lyon"),
                     ("Cherki", "Lyon")]
    assert top(limit=2) == [("Leao", "Milan"), ("Moffi", "Nice")]
    assert top(league="Ligue 1") == [("Moffi", "Nice"), ("Lacazette", "Lyon"),
                                     ("Cherki", "Lyon")]
    assert top(league="Bundesliga") == []
