"""A legacy psycopg2 script that adopts monps_store for part of its work, in its own
transaction: one commit (or rollback) covers both kinds of writes."""

import os

import psycopg2

from monps_store import legacy, unit_of_work
from monps_store.models import TeamQuantumDNA
from monps_store.repositories import crud, teams

conn = psycopg2.connect(os.environ["DATABASE_URL"])  # the script's own connection
try:
    cur = conn.cursor()
    cur.execute("UPDATE quantum.team_quantum_dna SET league = %s WHERE league = %s",
                ("Ligue 1", "L1"))
    with legacy.use_connection(conn):  # monps_store joins the script's transaction
        with unit_of_work(actor="legacy:league-fix", reason="rename league L1"):
            if not crud.count(TeamQuantumDNA, team_name="Brest"):
                crud.create(TeamQuantumDNA, team_name="Brest", league="Ligue 1")
        print(len(teams.get_by_league("Ligue 1")), "teams in Ligue 1")
    conn.commit()  # the legacy commit decides for both
except Exception:
    conn.rollback()  # undoes the legacy UPDATE and the monps_store writes alike
    raise
finally:
    conn.close()
