"""A deterministic sample data set at the scale of production (seeded, so every run agrees).

    from monps_store import sample
    data = sample.SampleData(seed=42, scale=1.0)
    data.teams()          # 99 teams in five leagues, eight DNA vectors, performance figures
    data.odds_rows()      # 1,083,270 odds rows, streamed (an iterator of dicts)

Production counts at ``scale=1.0``: 1,083,270 odds rows, 3,361 CLV picks, 99 teams, 3,403
friction pairs, 876 goalscorer profiles, 12 tactical classifications. Odds behave like the
real feed: matches in five leagues over a season, six bookmakers with their own margins, three
markets (1x2, over/under 2.5, both teams to score), prices collected at twelve moments from
three days before kick-off, drifting towards each match's fair price as kick-off nears.
``scale`` shrinks the odds and picks (tests and quick demos); the reference data keeps its size.
"""

from __future__ import annotations

import datetime
import math
import random
from decimal import Decimal

ODDS_ROWS = 1_083_270
PICKS = 3_361
FRICTION_PAIRS = 3_403
GOALSCORERS = 876
LEAGUES = {"Ligue 1": 20, "Premier League": 20, "La Liga": 20, "Serie A": 20, "Bundesliga": 19}
BOOKMAKERS = {"pinnacle": 0.025, "bet365": 0.055, "unibet": 0.06, "betfair": 0.03,
              "williamhill": 0.065, "winamax": 0.07}  # overround
MARKETS = {"1x2": ("home", "draw", "away"), "over_under_2.5": ("over", "under"),
           "btts": ("yes", "no")}
SNAPSHOT_HOURS = (72, 48, 36, 24, 18, 12, 8, 6, 4, 2, 1, 0.25)  # before kick-off
AGENTS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel")
CLASSIFICATIONS = (
    ("POS", "Positional Squeeze"), ("GEG", "Gegenpress"), ("LOB", "Low Block"),
    ("CTR", "Counter Strike"), ("TIK", "Tiki-Taka"), ("DIR", "Direct Route"),
    ("WNG", "Wing Overload"), ("MAN", "Man Marking"), ("HYB", "Hybrid Press"),
    ("PRK", "Park the Bus"), ("TRN", "Transition Chaos"), ("SET", "Set-Piece Specialists"),
)
DNA_VECTORS = ("market_dna", "context_dna", "temporal_dna", "nemesis_dna", "psyche_dna",
               "roster_dna", "physical_dna", "luck_dna")
_CITIES = ("Lyon", "Nice", "Brest", "Lens", "Lille", "Nantes", "Reims", "Rennes", "Metz",
           "Angers", "Toulouse", "Lorient", "Monaco", "Paris", "Marseille", "Auxerre", "Le Havre",
           "Montpellier", "Strasbourg", "Saint-Etienne")
_SUFFIXES = {"Ligue 1": "FC", "Premier League": "United", "La Liga": "CF", "Serie A": "Calcio",
             "Bundesliga": "SV"}
SEASON_START = datetime.datetime(2025, 8, 15, 18, 0, tzinfo=datetime.UTC)


def _money(value: float, places: int = 3) -> Decimal:
    return Decimal(f"{value:.{places}f}")


class SampleData:
    """One reproducible data set; every method returns the same rows for the same seed."""

    def __init__(self, seed: int = 42, scale: float = 1.0):
        if not 0 < scale <= 1:
            raise ValueError(f"scale must be in (0, 1], got {scale!r}")
        self.seed, self.scale = seed, scale
        self.odds_count = max(1, round(ODDS_ROWS * scale))
        self.pick_count = max(1, round(PICKS * scale))
        rng = random.Random(seed)
        self._teams = []
        for league, size in LEAGUES.items():
            for i in range(size):
                name = f"{_CITIES[i]} {_SUFFIXES[league]}"
                self._teams.append((name, league, rng.gauss(0, 0.45)))  # (name, league, strength)

    # -- reference data --------------------------------------------------------------------

    def classifications(self) -> list[dict]:
        return [{"code": code, "name": name, "description": f"{name} tactical profile"}
                for code, name in CLASSIFICATIONS]

    def teams(self) -> list[dict]:
        """Team rows; ``chess_classification`` holds the classification code."""
        rng = random.Random(self.seed + 1)
        rows = []
        for name, league, strength in self._teams:
            bets = rng.randint(40, 400)
            win_rate = min(max(50 + strength * 12 + rng.gauss(0, 5), 5), 95)
            rows.append({
                "team_name": name, "league": league,
                "chess_classification": rng.choice(CLASSIFICATIONS)[0],
                **{v: {"signal": round(rng.uniform(-1, 1), 3),
                       "confidence": round(rng.uniform(0, 1), 3)} for v in DNA_VECTORS},
                "matches_played": rng.randint(20, 38), "total_bets": bets,
                "win_rate": _money(win_rate, 2), "roi": _money(strength * 6 + rng.gauss(0, 3)),
                "total_pnl": _money(bets * rng.gauss(0.5, 3), 2),
                "avg_clv": _money(rng.gauss(1, 2)) if rng.random() > 0.1 else None,
            })
        return rows

    def friction_pairs(self) -> list[dict]:
        """``FRICTION_PAIRS`` ordered pairs of distinct teams, by team name."""
        rng = random.Random(self.seed + 2)
        names = [name for name, _, _ in self._teams]
        pairs = rng.sample([(h, a) for h in names for a in names if h != a], FRICTION_PAIRS)
        return [{"home_team": h, "away_team": a,
                 "friction_score": _money(100 * rng.betavariate(5, 4), 2),
                 "style_clash": _money(rng.uniform(0, 10), 2),
                 "tempo_friction": _money(rng.uniform(0, 10), 2),
                 "chaos_potential": _money(rng.uniform(0, 10), 2),
                 "predicted_goals": _money(rng.uniform(1.5, 3.8), 2),
                 "matches_analyzed": rng.randint(2, 30)} for h, a in pairs]

    def strategies(self) -> list[dict]:
        rng = random.Random(self.seed + 3)
        rows = []
        for name, _, strength in self._teams:
            for market in MARKETS:
                for strategy in ("value", "steam"):
                    rows.append({"team": name, "market": market, "strategy_name": strategy,
                                 "win_rate": _money(min(max(52 + strength * 8
                                                            + rng.gauss(0, 6), 0), 100), 2),
                                 "roi": _money(rng.gauss(1.5, 5)),
                                 "sample_size": rng.randint(10, 300),
                                 "is_active": rng.random() > 0.15})
        return rows

    def goalscorers(self) -> list[dict]:
        rng = random.Random(self.seed + 4)
        names = [name for name, _, _ in self._teams]
        rows = []
        for n in range(GOALSCORERS):
            team = names[n % len(names)]
            minutes = rng.randint(200, 3400)
            xg = max(rng.gauss(minutes / 400, 2), 0)
            rows.append({"team": team, "player_name": f"Player {n + 1:03d}",
                         "position": rng.choice(("FW", "FW", "MF", "MF", "DF")),
                         "goals": max(int(rng.gauss(xg, 1.5)), 0), "assists": rng.randint(0, 9),
                         "expected_goals": _money(xg, 2), "minutes_played": minutes,
                         "shots": rng.randint(int(xg * 4), int(xg * 8) + 5),
                         "penalty_goals": rng.randint(0, 3)})
        return rows

    # -- odds and picks ---------------------------------------------------------------------

    def matches(self):
        """(match_id, league, home, away, kick-off, fair probabilities per selection) in
        kick-off order, as many as the odds rows need."""
        rng = random.Random(self.seed + 5)
        rows_per_match = len(BOOKMAKERS) * sum(map(len, MARKETS.values())) * len(SNAPSHOT_HOURS)
        needed = math.ceil(self.odds_count / rows_per_match)
        by_league = {league: [t for t in self._teams if t[1] == league] for league in LEAGUES}
        for n in range(needed):
            league = list(LEAGUES)[n % len(LEAGUES)]
            (home, _, hs), (away, _, as_) = rng.sample(by_league[league], 2)
            kick_off = SEASON_START + datetime.timedelta(days=n // 25, hours=rng.choice(
                (0, 2, 3, 26, 27)))
            edge = hs - as_ + 0.25  # home advantage
            p_home = 1 / (1 + math.exp(-edge * 1.6)) * 0.75
            p_draw = 0.27 - abs(edge) * 0.05
            p_over = min(max(0.52 + rng.gauss(0, 0.08), 0.2), 0.8)
            p_yes = min(max(0.5 + rng.gauss(0, 0.07), 0.2), 0.8)
            fair = {"home": p_home, "draw": p_draw, "away": max(1 - p_home - p_draw, 0.05),
                    "over": p_over, "under": 1 - p_over, "yes": p_yes, "no": 1 - p_yes}
            yield f"{league[:3].upper()}-{n + 1:05d}", league, home, away, kick_off, fair

    def odds_rows(self):
        """Exactly ``odds_count`` odds rows as dicts of text, ready for ``ingest_odds``."""
        rng = random.Random(self.seed + 6)
        produced = 0
        for match_id, league, home, away, kick_off, fair in self.matches():
            commence = kick_off.isoformat()
            for hours in SNAPSHOT_HOURS:
                collected = (kick_off - datetime.timedelta(hours=hours)).isoformat()
                noise = 0.06 * math.sqrt(hours / 72)  # prices settle as kick-off nears
                for bookmaker, margin in BOOKMAKERS.items():
                    for market, selections in MARKETS.items():
                        for selection in selections:
                            p = fair[selection] * (1 + margin) * (1 + rng.gauss(0, noise))
                            price = max(1 / max(p, 0.01), 1.01)
                            yield {"match_id": match_id, "league": league, "home_team": home,
                                   "away_team": away, "bookmaker": bookmaker, "market": market,
                                   "selection": selection, "price": f"{price:.3f}",
                                   "commence_time": commence, "collected_at": collected}
                            produced += 1
                            if produced == self.odds_count:
                                return

    def picks(self) -> list[dict]:
        """CLV picks: each agent takes a price some hours before kick-off, which the closing
        price may beat or not."""
        rng = random.Random(self.seed + 7)
        rows_per_match = len(BOOKMAKERS) * sum(map(len, MARKETS.values())) * len(SNAPSHOT_HOURS)
        matches = list(self.matches())[: max(1, self.odds_count // rows_per_match)]
        seen: set = set()
        rows: list[dict] = []
        while len(rows) < self.pick_count:
            match_id, _, _, _, kick_off, fair = rng.choice(matches)
            market = rng.choice(list(MARKETS))
            selection = rng.choice(MARKETS[market])
            bookmaker = rng.choice(list(BOOKMAKERS))
            agent = rng.choice(AGENTS)
            picked_at = kick_off - datetime.timedelta(hours=rng.choice(SNAPSHOT_HOURS[:8]))
            key = (agent, match_id, market, selection, bookmaker, picked_at)
            if key in seen:
                continue
            seen.add(key)
            skill = 0.02 * (AGENTS.index(agent) - 3)  # some agents beat the close, some not
            price = max(1 / (fair[selection] * (1 + BOOKMAKERS[bookmaker])) * (1 + skill
                        + rng.gauss(0, 0.03)), 1.01)
            rows.append({"agent": agent, "match_id": match_id, "market": market,
                         "selection": selection, "bookmaker": bookmaker,
                         "odds_taken": _money(price), "stake": _money(rng.choice((5, 10, 25)), 2),
                         "picked_at": picked_at})
        return rows
