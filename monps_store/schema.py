"""Create the project's schemas and tables straight from the models, bypassing migrations.

For a database that predates monps_store's migrations (the ``stamp`` tests build one) and for
throwaway experiments; real databases are built with ``monps-store migrate``. ``create_all``
also creates the ``quantum`` schema, which peewee's ``create_tables`` does not.
"""

from __future__ import annotations

from monps_store.database import connection, db
from monps_store.models import ALL_MODELS, SCHEMAS


def create_all() -> None:
    with connection(), db.atomic():
        for schema in SCHEMAS:
            db.execute_sql(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        db.create_tables(ALL_MODELS)

