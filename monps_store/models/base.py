"""The base model, the timestamp and audit mixins, and the hook that fills them on save.

Every model binds to :data:`monps_store.database.db`. ``save()``/``create()`` fill the
timestamp and audit columns through a ``pre_save`` receiver; the paths that bypass signals
(``insert_many``, upserts, ``update()`` queries, bulk updates) are wrapped in
:mod:`monps_store.repositories.crud`, which fills the same columns from :mod:`monps_store.audit`.
The columns also have database defaults, so raw SQL from legacy scripts never leaves them NULL.
A second ``pre_save`` receiver checks every value against its column (:mod:`.checks`).
"""

from __future__ import annotations

from peewee import SQL, TextField
from playhouse.postgres_ext import DateTimeTZField
from playhouse.shortcuts import model_to_dict
from playhouse.signals import Model, pre_save

from monps_store import audit
from monps_store.database import db
from monps_store.models import checks


class BaseModel(Model):
    """Bound to the package database, snake_case table names, a readable repr, ``to_dict()``.

    ``natural_key`` names the fields that identify a row to a person (shown by ``repr``/``str``).
    """

    natural_key: tuple[str, ...] = ()

    class Meta:
        database = db
        legacy_table_names = False

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


class TimestampMixin(BaseModel):
    # No Python default: the pre_save hook or the bulk paths set them, the database default
    # covers any other insert.
    created_at = DateTimeTZField(null=False, constraints=[SQL("DEFAULT now()")])
    updated_at = DateTimeTZField(null=False, constraints=[SQL("DEFAULT now()")])


class AuditMixin(BaseModel):
    created_by = TextField(null=False, constraints=[SQL("DEFAULT current_user")])
    updated_by = TextField(null=False, constraints=[SQL("DEFAULT current_user")])
    change_reason = TextField(null=True)


class AuditedModel(TimestampMixin, AuditMixin):
    """Base of every domain model: timestamps and audit columns on every row."""


@pre_save()
def _fill_audit_fields(sender, instance, created):
    fields = sender._meta.fields
    if "updated_at" not in fields and "updated_by" not in fields:
        return
    values = audit.insert_values() if created else audit.update_values()
    if created and getattr(instance, "created_at", None) is not None:
        del values["created_at"]  # set on purpose by the caller (e.g. loading history)
    for name, value in values.items():
        if name in fields:
            setattr(instance, name, value)


@pre_save()
def _check_values(sender, instance, created):
    # After the audit columns are filled: every value save() will write, checked (and a
    # string or float converted to the Decimal that is stored); a new row must have every
    # column the INSERT needs.
    data = {name: value for name, value in instance.__data__.items() if name in sender._meta.fields}
    instance.__data__.update(checks.row(sender, data, complete=created))
