"""The base model, the timestamp and audit mixins, and the ``save()`` that fills them.

    team = TeamQuantumDNA.create(team_name="Lyon", league="Ligue 1")  # audit columns filled
    team.roi = "4.25"
    team.save()                        # checked first: stored as Decimal('4.25')

Every model binds to :data:`monps_store.database.db`. ``BaseModel.save()`` (and so
``create()`` and ``get_or_create()``) fills the timestamp and audit columns and checks every
value against its column (:mod:`.checks`) before peewee writes the row. This is a method of the
package's models, not a ``pre_save`` receiver: a receiver without a sender would reach every
``playhouse.signals.Model`` in the process, and application code that resets the receivers
would switch the package's rules off. ``BaseModel`` stays a ``playhouse.signals.Model``, so an
application can attach receivers of its own to the package's models; they run after the audit
columns are filled.

The paths that bypass ``save()`` (``insert_many``, upserts, ``update()`` queries, bulk
updates) are wrapped in :mod:`monps_store.repositories.crud`, which fills the same columns from
:mod:`monps_store.audit`. The columns also have database defaults, so raw SQL from legacy
scripts never leaves them NULL; so does every other column with a Python default.
"""

from __future__ import annotations

from typing import Any

from peewee import SQL, Metadata, TextField
from playhouse.postgres_ext import DateTimeTZField
from playhouse.shortcuts import model_to_dict
from playhouse.signals import Model

from monps_store import audit, routing
from monps_store.database import db
from monps_store.models import changes, checks


class RoutedMetadata(Metadata):
    """The models' metadata, whose ``database`` is the async database while code runs in
    ``aio.run()`` (a ContextVar: per task and per thread) and the bound one otherwise, so one
    set of model classes serves sync threads and async tasks at the same moment, without
    ``Model.bind()`` per call (which races)."""

    def __init__(self, *args, **kwargs):
        self._database: Any = None
        super().__init__(*args, **kwargs)

    @property
    def database(self):
        return routing.routed(self._database)

    @database.setter
    def database(self, value):
        self._database = value


class BaseModel(Model):
    """Bound to the package database, snake_case table names, a readable repr, ``to_dict()``.

    ``natural_key`` names the fields that identify a row to a person (shown by ``repr``/``str``);
    ``publish_changes`` makes every write path publish a change event (see :mod:`.changes`).
    """

    natural_key: tuple[str, ...] = ()
    # Writes publish "<table>_changed" events (models.changes) carrying the primary keys
    # (True) or the values of the field named here; False: no events.
    publish_changes: bool | str = False

    class Meta:
        database = db
        legacy_table_names = False
        model_metadata_class = RoutedMetadata

    def __str__(self):
        # peewee gives every model class a __repr__ of '<Name: str(self)>', so the readable
        # form goes here: repr(team) == "<TeamQuantumDNA: id=1 team_name='Lyon'>".
        keys = [f"{self._meta.primary_key.name}={self._pk!r}"] if self._meta.primary_key else []
        keys += [f"{name}={self.__data__.get(name)!r}" for name in self.natural_key]
        return " ".join(keys)

    def to_dict(self, **options) -> dict:
        """The row as a dict (foreign keys as ids); options go to ``model_to_dict``."""
        options.setdefault("recurse", False)
        return model_to_dict(self, **options)

    def save(self, force_insert=False, only=None):
        """Fill the audit columns, check every value, then save (``pre_save`` receivers run
        after this, inside ``super().save()``)."""
        # ``created`` as playhouse.signals.Model.save computes it for its receivers.
        pk_value = self._pk if self._meta.primary_key else True
        created = force_insert or not bool(pk_value)
        self._fill_audit_fields(created)
        self._check_values(created)
        key = getattr(self, "partitioned_by", None)
        partitioned = key is not None and (only is None
                                           or key in [getattr(f, "name", f) for f in only])
        if not partitioned and not self.publish_changes:
            return super().save(force_insert, only)
        from monps_store import partitions

        with self._meta.database.atomic():
            if partitioned:  # the month this row goes to must exist
                partitions.ensure_for([getattr(self, str(key))], self._meta.database)
            saved = super().save(force_insert, only)
            if saved and self.publish_changes:
                changes.publish_row(self)
            return saved

    def delete_instance(self, recursive=False, delete_nullable=False):
        if not self.publish_changes:
            return super().delete_instance(recursive, delete_nullable)
        with self._meta.database.atomic():
            deleted = super().delete_instance(recursive, delete_nullable)
            if deleted:
                changes.publish_row(self)
            return deleted

    def _fill_audit_fields(self, created: bool) -> None:
        fields = self._meta.fields
        if "updated_at" not in fields and "updated_by" not in fields:
            return
        values = audit.insert_values() if created else audit.update_values()
        if created and getattr(self, "created_at", None) is not None:
            del values["created_at"]  # set on purpose by the caller (e.g. loading history)
        for name, value in values.items():
            if name in fields:
                setattr(self, name, value)

    def _check_values(self, created: bool) -> None:
        # After the audit columns are filled: every value save() will write, checked (and a
        # string or float converted to the Decimal that is stored); a new row must have every
        # column the INSERT needs.
        fields = self._meta.fields
        data = {name: value for name, value in self.__data__.items() if name in fields}
        self.__data__.update(checks.row(type(self), data, complete=created))


class TimestampMixin(BaseModel):
    # No Python default: save() or the bulk paths set them, the database default covers
    # any other insert.
    created_at = DateTimeTZField(null=False, constraints=[SQL("DEFAULT now()")])
    updated_at = DateTimeTZField(null=False, constraints=[SQL("DEFAULT now()")])


class AuditMixin(BaseModel):
    created_by = TextField(null=False, constraints=[SQL("DEFAULT current_user")])
    updated_by = TextField(null=False, constraints=[SQL("DEFAULT current_user")])
    change_reason = TextField(null=True)


class AuditedModel(TimestampMixin, AuditMixin):
    """Base of every domain model: timestamps and audit columns on every row."""
