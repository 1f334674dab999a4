"""Create or drop the project's schemas and tables straight from the models.

For tests and development until migrations manage the schema. ``create_all`` also creates the
``quantum`` schema, which peewee's ``create_tables`` does not.
"""

from __future__ import annotations

from monps_store.database import connection, db
from monps_store.models import ALL_MODELS, SCHEMAS


def create_all() -> None:
    with connection(), db.atomic():
        for schema in SCHEMAS:
            db.execute_sql(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        db.create_tables(ALL_MODELS)


def drop_all() -> None:
    with connection(), db.atomic():
        db.drop_tables(ALL_MODELS, cascade=True)
        for schema in SCHEMAS:
            if schema != "public":
                db.execute_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def truncate_all() -> None:
    """Empty every project table (tests use this between cases)."""
    tables = ", ".join(f'"{m._meta.schema}"."{m._meta.table_name}"' for m in ALL_MODELS)
    with connection():
        db.execute_sql(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
