"""The package's save() behaviour (audit columns, value checks) reaches its own models only,
and survives whatever the application does with ``playhouse.signals``."""

import datetime

import peewee
import pytest
from playhouse import signals

import monps_store
from monps_store import config, errors
from monps_store.models import TeamQuantumDNA

APP_DB = peewee.PostgresqlDatabase(None)
WHEN = datetime.datetime(2020, 1, 2, 3, 4, 5)  # naive on purpose: the package would refuse it


class Note(signals.Model):
    """An application's own model, on its own database object, outside the package."""

    votes = peewee.IntegerField()
    updated_at = peewee.DateTimeField(null=True)
    updated_by = peewee.TextField(null=True)

    class Meta:
        database = APP_DB
        table_name = "app_note"  # a scratch table, not one of the package's
        schema = "public"


@pytest.fixture
def app_db(pg):
    """The application's database bound to the test database, with its table (dropped after)."""
    params = config.from_url(pg.url).connect_params()
    APP_DB.init(params.pop("dbname"), **params)
    Note.create_table()
    yield APP_DB
    Note.drop_table()
    APP_DB.close()


@pytest.fixture
def receivers():
    """pre_save's receivers restored after the test, whatever it did to them."""
    saved = set(signals.pre_save._receivers), list(signals.pre_save._receiver_list)
    yield signals.pre_save
    signals.pre_save._receivers, signals.pre_save._receiver_list = saved


def stored_notes(pg):
    return pg.sql("SELECT votes, updated_at, updated_by FROM public.app_note ORDER BY id")


def test_an_application_model_stores_what_plain_peewee_stores(pg, app_db):
    note = Note.create(votes="3")  # the package refuses a string for an integer column
    assert stored_notes(pg) == [(3, None, None)]
    note.votes = 4.0
    note.save()
    assert stored_notes(pg) == [(4, None, None)]


def test_an_application_model_keeps_the_updated_at_and_updated_by_it_was_given(pg, app_db):
    note = Note.create(votes=1, updated_at=WHEN, updated_by="app-user")
    assert stored_notes(pg) == [(1, WHEN, "app-user")]
    note.votes, note.updated_by = 2, "other-user"
    note.save()
    assert stored_notes(pg) == [(2, WHEN, "other-user")]


def test_a_receiver_the_application_attaches_to_its_own_model_fires(app_db, receivers):
    seen = []

    @signals.pre_save(sender=Note)
    def count_note_saves(sender, instance, created):
        seen.append((sender, instance.votes, created))

    note = Note.create(votes=1)
    note.save()
    assert seen == [(Note, 1, True), (Note, 1, False)]


def test_a_receiver_the_application_attaches_to_a_package_model_fires(db, receivers):
    seen = []

    @signals.pre_save(sender=TeamQuantumDNA)
    def count_team_saves(sender, instance, created):
        seen.append((instance.team_name, created, instance.updated_by))

    with monps_store.unit_of_work(actor="app"):
        team = TeamQuantumDNA.create(team_name="Lyon", league="Ligue 1")
        team.save()
    # The receiver runs after the package has filled the audit columns.
    assert seen == [("Lyon", True, "app"), ("Lyon", False, "app")]


def disconnect_each(pre_save):
    for name, _, sender in list(pre_save._receiver_list):
        pre_save.disconnect(name=name, sender=sender)


def clear_the_lists(pre_save):
    pre_save._receivers.clear()
    pre_save._receiver_list.clear()


@pytest.mark.parametrize("reset", [disconnect_each, clear_the_lists])
def test_package_models_keep_their_audit_columns_and_checks_after_receivers_are_reset(
        pg, db, receivers, reset):
    reset(receivers)
    assert receivers._receiver_list == []
    with monps_store.unit_of_work(actor="after-reset", reason="signals reset"):
        team = TeamQuantumDNA.create(team_name="Lyon", league="Ligue 1")
    with monps_store.unit_of_work(actor="second"):
        team.league = "Ligue 2"
        team.save()
    assert pg.sql("SELECT league, created_by, updated_by, change_reason, updated_at > created_at"
                  " FROM quantum.team_quantum_dna") == [
        ("Ligue 2", "after-reset", "second", None, True)]
    with pytest.raises(errors.InvalidInput, match=r"TeamQuantumDNA\.matches_played must be an "
                                                  r"integer .*'3'"):
        TeamQuantumDNA.create(team_name="Nice", league="Ligue 1", matches_played="3")
    assert pg.sql("SELECT count(*) FROM quantum.team_quantum_dna") == [(1,)]
