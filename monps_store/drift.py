"""Compare the models with the live database, both ways, in both schemas.

    from monps_store import drift
    differences = drift.compare(db)          # [] when the database matches the models

The expected side is not guessed from the model classes: the models' own DDL is run as
temporary tables inside a transaction that is rolled back, and both sides are read back from
the catalog with the same queries. Types, defaults and CHECK expressions are therefore compared
as PostgreSQL itself renders them. Compared per table: columns (type, nullability, default),
indexes and unique constraints (columns, uniqueness, predicate), foreign keys (columns, target,
delete rule), CHECK constraints and partitioning (the partition key; a table's partitions are
part of it, never extra tables). Tables in ``quantum`` that no model declares are reported
too; ``public`` is shared with other software, so extra tables there are not.
"""

from __future__ import annotations

import re

from monps_store.models import ALL_MODELS

OWNED_SCHEMAS = ("quantum",)
IGNORED_TABLES = {"monps_migrations"}  # the migration history lives beside the models
_QUALIFIER = re.compile(r'"(?:public|quantum)"\.')
_ON_DELETE = {"a": "NO ACTION", "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL",
              "d": "SET DEFAULT"}

_COLUMNS = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       pg_get_expr(d.adbin, d.adrelid)
FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped
"""
_INDEXES = """
SELECT i.indisunique, i.indisprimary, pg_get_expr(i.indpred, i.indrelid),
       ARRAY(SELECT a.attname FROM unnest(i.indkey) WITH ORDINALITY AS k(attnum, n)
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum ORDER BY k.n)
FROM pg_index i WHERE i.indrelid = %s
"""
_FOREIGN_KEYS = """
SELECT ARRAY(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY AS k(attnum, n)
             JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum ORDER BY k.n),
       t.relname,
       ARRAY(SELECT a.attname FROM unnest(c.confkey) WITH ORDINALITY AS k(attnum, n)
             JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.attnum ORDER BY k.n),
       c.confdeltype
FROM pg_constraint c JOIN pg_class t ON t.oid = c.confrelid
WHERE c.conrelid = %s AND c.contype = 'f'
"""
_CHECKS = """
SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s AND contype = 'c'
"""


class _Rollback(Exception):
    pass


def _describe(database, oid: int) -> dict:
    def rows(sql):
        return database.execute_sql(sql, (oid,)).fetchall()

    columns = {}
    for name, type_, not_null, default in rows(_COLUMNS):
        if default and default.startswith("nextval("):
            default = "nextval(<sequence>)"  # sequence names differ by schema
        columns[name] = (type_, "NOT NULL" if not_null else "NULL", default)
    indexes = {("PRIMARY KEY " if primary else "UNIQUE " if unique else "")
               + f"({', '.join(cols)})" + (f" WHERE {pred}" if pred else "")
               for unique, primary, pred, cols in rows(_INDEXES)}
    foreign_keys = {f"({', '.join(cols)}) REFERENCES {target} ({', '.join(target_cols)}) "
                    f"ON DELETE {_ON_DELETE.get(rule, rule)}"
                    for cols, target, target_cols, rule in rows(_FOREIGN_KEYS)}
    checks = {definition for (definition,) in rows(_CHECKS)}
    (partitioning,) = database.execute_sql(
        "SELECT pg_get_partkeydef(%s)", (oid,)).fetchone()
    return {"columns": columns, "indexes": indexes, "foreign_keys": foreign_keys,
            "checks": checks, "partitioning": partitioning}


def _live_tables(database) -> dict:
    sql = ("SELECT n.nspname, c.relname, c.oid FROM pg_class c "
           "JOIN pg_namespace n ON n.oid = c.relnamespace "
           "WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition "
           "AND n.nspname IN ('public', 'quantum')")  # a partition is part of its table
    return {(schema, name): oid for schema, name, oid in database.execute_sql(sql).fetchall()}


def _expected(database, models) -> dict:
    """Each model's table as PostgreSQL builds it from the models' DDL (temporary, rolled back)."""
    described = {}
    try:
        with database.atomic():
            for model in models:
                statements = [model._schema._create_table(safe=False)]
                statements += model._schema._create_indexes(safe=False)
                for statement in statements:
                    sql, params = statement.query()
                    sql = _QUALIFIER.sub("", sql).replace("CREATE TABLE", "CREATE TEMP TABLE", 1)
                    database.execute_sql(sql, params)
            for model in models:
                oid = database.execute_sql(
                    "SELECT c.oid FROM pg_class c WHERE c.relname = %s "
                    "AND c.relnamespace = pg_my_temp_schema()", (model._meta.table_name,)
                ).fetchone()[0]
                described[model] = _describe(database, oid)
            raise _Rollback
    except _Rollback:
        pass
    return described


def _compare_sets(label, table, expected, live):
    for item in sorted(expected - live):
        yield f"{table}: {label} {item} is in the models but missing from the database"
    for item in sorted(live - expected):
        yield f"{table}: {label} {item} is in the database but not in the models"


def compare(database, models=ALL_MODELS) -> list[str]:
    """Every difference between ``models`` and the live database, one sentence each."""
    live_tables = _live_tables(database)
    expected = _expected(database, models)
    differences = []
    declared = set()
    for model in models:
        schema, table = model._meta.schema or "public", model._meta.table_name
        declared.add((schema, table))
        name = f"{schema}.{table}"
        oid = live_tables.get((schema, table))
        if oid is None:
            differences.append(f"{name}: table is in the models but missing from the database")
            continue
        want, have = expected[model], _describe(database, oid)
        for column in want["columns"].keys() - have["columns"].keys():
            differences.append(f"{name}: column {column} is in the models but missing from "
                               "the database")
        for column in have["columns"].keys() - want["columns"].keys():
            differences.append(f"{name}: column {column} is in the database but not in the "
                               "models")
        for column in sorted(want["columns"].keys() & have["columns"].keys()):
            for aspect, w, h in zip(("type", "nullability", "default"),
                                    want["columns"][column], have["columns"][column],
                                    strict=True):
                if w != h:
                    differences.append(f"{name}: column {column} {aspect} is {w} in the "
                                       f"models, {h} in the database")
        differences += _compare_sets("index", name, want["indexes"], have["indexes"])
        differences += _compare_sets("foreign key", name, want["foreign_keys"],
                                     have["foreign_keys"])
        differences += _compare_sets("check", name, want["checks"], have["checks"])
        if want["partitioning"] != have["partitioning"]:
            differences.append(f"{name}: partitioning is {want['partitioning'] or 'none'} in the "
                               f"models, {have['partitioning'] or 'none'} in the database")
    for (schema, table) in sorted(live_tables):
        if (schema in OWNED_SCHEMAS and (schema, table) not in declared
                and table not in IGNORED_TABLES):
            differences.append(f"{schema}.{table}: table is in the database but not in the "
                               "models")
    return differences
