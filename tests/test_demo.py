"""The main job, end to end at a small scale: migrate, load, settle, report; then again,
changing nothing."""

import os
import subprocess
import sys

from monps_store import sample


def demo(url):
    env = {"PATH": os.environ.get("PATH", ""), "DATABASE_URL": url}
    return subprocess.run([sys.executable, "-m", "monps_store", "demo", "--scale", "0.002"],
                          env=env, capture_output=True, text=True, timeout=300)


def test_the_demo_loads_settles_reports_and_is_idempotent(empty_database):
    first = demo(empty_database)
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert lines[0] == "migrate: applied 001_initial, 002_column_defaults, 003_partition_odds"
    assert lines[1] == ("reference data: 12 classifications, 99 teams, 3,403 friction pairs, "
                        "876 goalscorers")
    assert lines[2].startswith("odds: 2,167 rows read: 2,167 inserted, 0 updated, 0 unchanged")
    assert lines[3].startswith("settle-clv: settled 7 pick(s); 0 still open")
    assert lines[4] == ("rows        Odds 2,167 | TrackingCLVPick 7 | TeamQuantumDNA 99 | "
                        "QuantumFrictionMatrix 3,403 | GoalscorerProfile 876 | "
                        "ChessClassification 12 | QuantumStrategy 594")
    assert lines[5] == "best CLV    agent      picks   avg CLV %"
    friction_at = lines.index("friction    highest-friction fixtures")
    assert len(lines[friction_at + 1:friction_at + 6]) == 5
    assert " v " in lines[friction_at + 1]
    assert lines[-1].startswith("pool        max_connections=15 in_use=0")

    again = demo(empty_database)
    assert again.returncode == 0, again.stderr
    lines = again.stdout.splitlines()
    assert lines[0] == "migrate: up to date"
    assert lines[2].endswith("; nothing changed")
    assert lines[3].startswith("settle-clv: settled 0 pick(s); 0 still open")


def test_the_sample_data_has_production_counts_and_is_reproducible():
    data = sample.SampleData()
    assert data.odds_count == 1_083_270 and data.pick_count == 3_361
    assert (len(data.teams()), len(data.friction_pairs()), len(data.goalscorers()),
            len(data.classifications())) == (99, 3_403, 876, 12)
    small = sample.SampleData(scale=0.001)
    assert list(small.odds_rows()) == list(sample.SampleData(scale=0.001).odds_rows())
    assert len(list(small.odds_rows())) == 1_083
    assert small.picks() == sample.SampleData(scale=0.001).picks()
    prices = [float(r["price"]) for r in small.odds_rows()]
    assert min(prices) > 1
