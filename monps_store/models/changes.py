"""Which models publish what: ``<table>_changed`` events for models with ``publish_changes``.

    class Odds(BaseModel):
        publish_changes = "match_id"    # odds_changed {"table": "public.odds", "match_ids": [..]}

    changes.publish_changes(Odds, match_ids)   # what crud's bulk paths do with RETURNING
    changes.publish_row(odds)                  # what save() and delete_instance() do

``publish_changes = True`` publishes the primary keys (payload ``ids``); a field's name
publishes that field's values (payload ``<field>s``). The events go out through
:mod:`monps_store.events` in the transaction of the database the model writes through
(``bind_ctx()`` included), so listeners (and this process's cache) hear of them at commit.
"""

from __future__ import annotations

from collections.abc import Iterable

import peewee

from monps_store import events


def changes_channel(model: type[peewee.Model]) -> str | None:
    """``<table>_changed`` for a model whose writes publish (``publish_changes`` set), else
    None."""
    return f"{model._meta.table_name}_changed" if getattr(model, "publish_changes", False) \
        else None


def changes_field(model: type[peewee.Model]) -> peewee.Field:
    """The field a publishing model's events carry: its primary key (``publish_changes =
    True``, payload ``ids``) or the named field (``"match_id"``: payload ``match_ids``)."""
    setting = getattr(model, "publish_changes", False)  # a BaseModel's (no import: no cycle)
    if setting is not True:
        return model._meta.fields[setting]
    key = model._meta.primary_key
    if not key:
        raise TypeError(f"{model.__name__}: publish_changes = True needs a primary key")
    return key


def publish_changes(model: type[peewee.Model], values: Iterable) -> int:
    """Publish ``<table>_changed`` for the written rows of ``model`` whose ``changes_field``
    values are ``values`` (each once, split to fit): ``{"table": "schema.table", "ids": [...]}``
    (or ``"match_ids"``, ...), in the transaction of the database the model writes through.
    Returns how many events were queued."""
    channel = changes_channel(model)
    if channel is None:
        return 0
    field = changes_field(model)
    key = "ids" if field is model._meta.primary_key else f"{field.name}s"
    unique = list(dict.fromkeys(v._pk if hasattr(v, "_pk") else v for v in values))
    table = f"{model._meta.schema}.{model._meta.table_name}"
    return events.publish_batched_on(model._meta.database, channel, key, unique,
                                     {"table": table})


def publish_row(instance: peewee.Model) -> int:
    """:func:`publish_changes` for one row just saved or deleted."""
    model = type(instance)
    return publish_changes(model, [getattr(instance, changes_field(model).name)])
