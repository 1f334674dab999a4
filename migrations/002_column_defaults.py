"""Database defaults for the columns whose default 001_initial declared in Python only.

These columns are NOT NULL with a Python default and had no SQL DEFAULT, so a raw INSERT from
legacy code that left them out was refused although the same insert through the models
succeeded. Each gets the models' default in the database too. The frozen values are written
in below; no application model is imported. Plain SQL only: peewee-migrate's autogenerator
compares neither defaults nor constraints, so the frozen models of 001_initial still describe
the schema for `monps-store create NAME --auto`.
"""

import peewee as pw
from peewee_migrate import Migrator

# table -> {column: SQL default}
DEFAULTS = {
    "public.tracking_clv_picks": {"stake": "1"},
    "quantum.chess_classifications": {"description": "''"},
    "quantum.team_quantum_dna": {"matches_played": "0", "total_bets": "0", "win_rate": "0",
                                 "roi": "0", "total_pnl": "0"},
    "quantum.quantum_friction_matrix": {"matches_analyzed": "0"},
    "quantum.goalscorer_profiles": {"goals": "0", "assists": "0", "expected_goals": "0",
                                    "minutes_played": "0", "shots": "0", "penalty_goals": "0"},
}


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    for table, columns in DEFAULTS.items():
        changes = ", ".join(f"ALTER COLUMN {column} SET DEFAULT {default}"
                            for column, default in columns.items())
        migrator.sql(f"ALTER TABLE {table} {changes}")


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    for table, columns in DEFAULTS.items():
        changes = ", ".join(f"ALTER COLUMN {column} DROP DEFAULT" for column in columns)
        migrator.sql(f"ALTER TABLE {table} {changes}")
