"""A complete cron job: refresh team figures, at most one run at a time.

crontab:  */10 * * * *  cd /srv/monps && .venv/bin/python examples/cron_job.py
"""

from decimal import Decimal

from monps_store import cron
from monps_store.models import TeamQuantumDNA
from monps_store.repositories import crud


@cron.job("team-figures", retries=3, statement_timeout=60_000, reason="10-minute refresh")
def main():
    # One transaction: committed when main() returns, rolled back (and retried, if the
    # failure is retryable) when it raises. Overlapping runs exit 75 without doing anything.
    crud.upsert_many(
        TeamQuantumDNA,
        [{"team_name": "Lyon", "league": "Ligue 1", "roi": Decimal("4.250")},
         {"team_name": "Nice", "league": "Ligue 1", "roi": Decimal("-1.100")}],
        conflict=["team_name"], update=["league", "roi"],
    )


if __name__ == "__main__":
    main()  # exits 0 done, 1 failed, 2 configuration error, 75 another run holds the lock
