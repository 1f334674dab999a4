"""Generic create/read/update/delete for any model, and the bulk paths that bypass save().

    from monps_store.repositories import crud
    team = crud.get_by_id(TeamQuantumDNA, 7)                 # raises errors.NotFound
    crud.get_all(Odds, skip=0, limit=50, order_by="-collected_at")
    crud.update(team, league="Ligue 1")

Every field or ordering name given as a string is checked against the model; an unknown one
raises :class:`~monps_store.errors.InvalidInput` naming it and listing the valid names, so no
SQL is ever built from an unchecked string. Every value written or compared is checked
against its column first (:mod:`monps_store.models.checks`): a wrong type, NaN, a naive
datetime, a number too big for its column raise InvalidInput naming the field. Writes that
bypass ``save()`` (``insert_many``, ``upsert_many``, ``update_where``, ``bulk_update``) fill
the timestamp and audit columns themselves, from :mod:`monps_store.audit`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar, overload

import peewee
from peewee import EXCLUDED, Case, Cast, Expression, Tuple
from playhouse.postgres_ext import ServerSideQuery

from monps_store import audit, database
from monps_store.errors import InvalidInput, NotFound
from monps_store.models import changes, checks
from monps_store.models.base import BaseModel

BATCH_SIZE = 1000
_M = TypeVar("_M", bound=BaseModel)


def field(model: type[BaseModel], name: str) -> peewee.Field:
    """The model's field called ``name``, or InvalidInput naming it and the valid ones."""
    found = model._meta.fields.get(name) if isinstance(name, str) else None
    if found is None:
        valid = ", ".join(model._meta.sorted_field_names)
        raise InvalidInput(f"{model.__name__} has no field {name!r}; valid fields: {valid}")
    return found


def ordering(model: type[BaseModel], order_by: str | Sequence[str] | None) -> list[peewee.Ordering]:
    """``"name"``/``"-name"`` (or a list of them) as peewee orderings; the pk when None."""
    if order_by is None:
        return [model._meta.primary_key]
    if isinstance(order_by, str):
        names = [order_by]
    elif isinstance(order_by, (list, tuple)):
        names = list(order_by)
    else:
        raise InvalidInput(f"order_by must be a field name or a list of them, got {order_by!r}")
    result = []
    for name in names:
        descending = isinstance(name, str) and name.startswith("-")
        column = field(model, name[1:] if descending else name)
        result.append(column.desc() if descending else column.asc())
    return result


def check_window(skip: int | None, limit: int | None) -> None:
    for name, value in (("skip", skip), ("limit", limit)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                  or value < 0):
            raise InvalidInput(f"{name} must be a non-negative integer, got {value!r}")
        if value is not None and value > checks.INT8[1]:  # PostgreSQL's OFFSET/LIMIT: bigint
            raise InvalidInput(f"{name} must be at most {checks.INT8[1]}, got {value!r}")


def _where(model: type[BaseModel], filters: dict) -> list[peewee.Expression]:
    return [field(model, name) == checks.compare(model, name, value)
            for name, value in filters.items()]


def _pk(model: type[BaseModel], pk: object) -> Any:
    return checks.compare(model, model._meta.primary_key.name, pk, allow_none=False)


def get_by_id(model: type[_M], pk: object) -> _M:
    """The row with primary key ``pk``; NotFound names the model and the key."""
    row = model.get_or_none(model._meta.primary_key == _pk(model, pk))
    if row is None:
        raise NotFound(f"{model.__name__} with {model._meta.primary_key.name}={pk!r} not found")
    return row


def get_all(model: type[BaseModel], skip: int = 0, limit: int | None = None,
            order_by: str | Sequence[str] | None = None) -> list:
    """Rows ordered by ``order_by`` (default: primary key), ``skip`` then at most ``limit``."""
    check_window(skip, limit)
    query = model.select().order_by(*ordering(model, order_by)).offset(skip or None)
    return list(query.limit(limit) if limit is not None else query)


def get_by_field(model: type[BaseModel], name: str, value: object, *,
                 limit: int | None = None, order_by: str | Sequence[str] | None = None) -> list:
    """Rows whose field ``name`` equals ``value``."""
    check_window(0, limit)
    column = field(model, name)
    query = (model.select().where(column == checks.compare(model, column.name, value))
             .order_by(*ordering(model, order_by)))
    return list(query.limit(limit) if limit is not None else query)


def count(model: type[BaseModel], **filters: object) -> int:
    """How many rows match the equality ``filters`` (all rows without any)."""
    query = model.select()
    if filters:
        query = query.where(*_where(model, filters))
    return query.count()


def _check_names(model: type[BaseModel], data: dict) -> None:
    for name in data:
        field(model, name)


def create(model: type[_M], **data: object) -> _M:
    """Insert one row through ``save()`` (which fills the audit columns) and return it."""
    _check_names(model, data)
    return model.create(**data)


def update(instance: _M, **changes: object) -> _M:
    """Change fields of ``instance`` and save them (audit columns refreshed); returns it.
    Only those columns are written: a concurrent change to another column is kept."""
    model = type(instance)
    _check_names(model, changes)
    for name, value in changes.items():
        setattr(instance, name, value)
    audited = [name for name in audit.UPDATE_COLUMNS if name in model._meta.fields]
    instance.save(only=[*changes, *audited])
    return instance


@overload
def delete(instance_or_model: BaseModel) -> int: ...
@overload
def delete(instance_or_model: type[BaseModel], pk: object) -> int: ...


def delete(instance_or_model: Any, pk: object = None) -> int:
    """Delete an instance, or the row of ``model`` with primary key ``pk``; NotFound if absent."""
    if pk is None:
        return instance_or_model.delete_instance()
    model = instance_or_model
    query = model.delete().where(model._meta.primary_key == _pk(model, pk))
    published = _published_field(model)
    if published is None:
        deleted = query.execute()
    else:
        with model._meta.database.atomic():
            gone = _returned(query, published)
            _publish(model, gone)
        deleted = len(gone)
    if not deleted:
        raise NotFound(f"{model.__name__} with {model._meta.primary_key.name}={pk!r} not found")
    return deleted


def iterate(query: peewee.ModelSelect[Any], batch_size: int = BATCH_SIZE) -> Iterator[Any]:
    """The rows of ``query`` (models, or dicts/tuples as the query asks) read ``batch_size`` at
    a time through a server-side cursor: memory stays bounded however many rows there are.

    The read runs in a transaction of its own (a savepoint inside the caller's), held until
    the iteration ends or the generator is closed. Works on the sync pool and inside
    ``aio.run()``; there, the task's connection runs nothing else until the iteration ends.
    ``with_related()`` queries cannot be streamed (use ``prefetch`` on a bounded query)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidInput(f"batch_size must be a whole number >= 1, got {batch_size!r}")
    db = query.model._meta.database
    with db.connection_context(), db.atomic():
        rows = ServerSideQuery(query, array_size=batch_size)
        try:
            yield from rows
        finally:
            rows.close()


# -- paths that bypass save(): audit columns filled here -----------------------------------


def _with_insert_audit(model: type[BaseModel], rows: Iterable[dict]) -> Iterator[dict]:
    values = {k: v for k, v in audit.insert_values().items() if k in model._meta.fields}
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise InvalidInput(f"row {number}: expected a dict of field values, got "
                               f"{type(row).__name__}")
        _check_names(model, row)
        yield checks.row(model, values | row, complete=True, where=f"row {number}: ")


def insert_many(model: type[BaseModel], rows: Iterable[dict], batch_size: int = BATCH_SIZE) -> int:
    """Insert ``rows`` in batches inside one transaction; returns how many were inserted."""
    total = 0
    rows = list(_with_insert_audit(model, rows))
    published = _published_field(model)
    with model._meta.database.atomic():
        _ensure_partitions(model, rows)
        changed = []
        for start in range(0, len(rows), batch_size):
            batch = rows[start:start + batch_size]
            if published is None:
                model.insert_many(batch).execute()
            else:
                changed += _returned(model.insert_many(batch), published)
            total += len(batch)
        _publish(model, changed)
    return total


def upsert_many(model: type[BaseModel], rows: Iterable[dict], conflict: Sequence[str],
                update: Sequence[str] | None = None, batch_size: int = BATCH_SIZE) -> int:
    """Insert ``rows``; where the unique ``conflict`` columns already exist, update the
    ``update`` columns (default: every non-key column) and the audit columns instead.
    Rows whose values are unchanged are left alone (their audit columns too).
    Returns how many rows were inserted or changed."""
    conflict = [conflict] if isinstance(conflict, str) else list(conflict)
    target = [field(model, name) for name in conflict]
    if frozenset(f.name for f in target) not in unique_keys(model):
        keys = "; ".join(", ".join(sorted(k)) for k in sorted(unique_keys(model), key=sorted))
        raise InvalidInput(f"{model.__name__}: ({', '.join(conflict)}) is not a unique key, so "
                           f"it cannot be an upsert's conflict target; unique keys: {keys}")
    audit_names = set(audit.insert_values())
    if update is None:
        update = [name for name in model._meta.sorted_field_names
                  if name not in conflict and name not in audit_names
                  and name != model._meta.primary_key.name]
    update = [update] if isinstance(update, str) else list(update)
    changed = [field(model, name) for name in update]
    if any(f is model._meta.primary_key for f in changed):  # not `in`: == builds SQL
        raise InvalidInput(f"{model.__name__}: an upsert cannot update the primary key "
                           f"{model._meta.primary_key.name!r}")
    refresh = {field(model, name): value for name, value in audit.update_values().items()
               if name in model._meta.fields}
    assignments = {column: getattr(EXCLUDED, column.column_name) for column in changed}
    assignments.update(refresh)
    # Only a row that really changes is rewritten: re-upserting the same data is a no-op.
    differs = Expression(Tuple(*changed), "IS DISTINCT FROM",
                         Tuple(*[getattr(EXCLUDED, c.column_name) for c in changed]))
    total = 0
    # A key repeated within the rows: the last occurrence wins (as in the odds ingest); one
    # statement may not update the same row twice.
    rows = list({tuple(_key_value(row.get(name)) for name in conflict): row
                 for row in _with_insert_audit(model, rows)}.values())
    published = _published_field(model)
    with model._meta.database.atomic():
        _ensure_partitions(model, rows)
        written = []
        for start in range(0, len(rows), batch_size):
            query = model.insert_many(rows[start:start + batch_size])
            if changed:
                query = query.on_conflict(conflict_target=target, update=assignments,
                                          where=differs)
            else:  # nothing to update: a conflicting row is left as it is
                query = query.on_conflict(conflict_target=target, action="IGNORE")
            if published is None:
                total += query.as_rowcount().execute()
            else:  # RETURNING gives the rows inserted or changed, not the ones left alone
                returned = _returned(query, published)
                total += len(returned)
                written += returned
        _publish(model, written)
    return total


def _published_field(model: type[BaseModel]) -> peewee.Field | None:
    """The field whose values a write's change event carries; None if the model publishes none
    (``publish_changes``)."""
    return changes.changes_field(model) if changes.changes_channel(model) else None


def _returned(query: peewee.ModelInsert | peewee.ModelUpdate | peewee.ModelDelete,
              field: peewee.Field) -> list:
    return [row[0] for row in query.returning(field).tuples().execute()]


def _publish(model: type[BaseModel], values: list) -> None:
    if values:
        changes.publish_changes(model, values)


def _ensure_partitions(model: type[BaseModel], rows: list[dict]) -> None:
    key = getattr(model, "partitioned_by", None)
    if key is not None and rows:
        from monps_store import partitions

        partitions.ensure_for((row.get(key) for row in rows), model._meta.database)


def _key_value(value: object) -> object:
    return value._pk if hasattr(value, "_pk") else value


def unique_keys(model: type[BaseModel]) -> set[frozenset]:
    """The model's unique keys, each as a set of field names (primary key included)."""
    keys = {frozenset([model._meta.primary_key.name])}
    keys |= {frozenset([f.name]) for f in model._meta.sorted_fields if f.unique}
    for index in model._meta.indexes:
        if isinstance(index, tuple) and index[1]:
            keys.add(frozenset(index[0]))
    return keys


def update_where(model: type[BaseModel], changes: dict, **filters: object) -> int:
    """``UPDATE model SET changes WHERE filters`` with the audit columns refreshed; returns the
    number of rows changed. At least one filter is required (use ``update_all`` on purpose)."""
    if not filters:
        raise InvalidInput("update_where needs at least one filter; nothing was updated")
    _check_names(model, changes)
    values = {k: v for k, v in audit.update_values().items() if k in model._meta.fields}
    changes = checks.row(model, values | changes, complete=False)
    query = model.update(**changes).where(*_where(model, filters))
    published = _published_field(model)
    if published is None:
        return query.execute()
    with model._meta.database.atomic():
        changed = _returned(query, published)
        _publish(model, changed)
    return len(changed)


def bulk_update(instances: Sequence, fields: Sequence[str], batch_size: int = BATCH_SIZE) -> int:
    """Write ``fields`` of already-loaded ``instances`` in batches, audit columns refreshed."""
    if not instances:
        return 0
    model = type(instances[0])
    names = list(fields)
    _check_names(model, dict.fromkeys(names))
    values = {k: v for k, v in audit.update_values().items() if k in model._meta.fields}
    for number, instance in enumerate(instances, start=1):
        for name, value in values.items():
            setattr(instance, name, value)
        instance.__data__.update(checks.row(
            model, {name: instance.__data__.get(name) for name in names},
            complete=False, where=f"instance {number}: "))
    columns = [model._meta.fields[name] for name in names + list(values)]
    pk = model._meta.primary_key
    changed = 0
    published = _published_field(model)
    with model._meta.database.atomic():
        if published is not None:
            _publish(model, [getattr(i, published.name) for i in instances])
        for start in range(0, len(instances), batch_size):
            batch = instances[start:start + batch_size]
            # peewee's Model.bulk_update, with every value cast to its column's type: a
            # server-side prepared statement (asyncpg) would read an untyped CASE as text.
            update = {column: Case(pk, [(pk.to_value(i._pk), _typed(column, i.__data__.get(
                column.name))) for i in batch]) for column in columns}
            changed += model.update(update).where(pk.in_([i._pk for i in batch])).execute()
    return changed


def _typed(field: peewee.Field, value: object) -> peewee.Cast:
    types = database.db.get_context_options()["field_types"]
    return Cast(field.case_value(value), types.get(field.field_type, field.field_type))
