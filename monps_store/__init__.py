"""monps_store: the persistence layer of Mon_PS (Peewee on PostgreSQL, schemas public and quantum).

    import monps_store
    monps_store.init_db()                  # settings from the environment / .env
    with monps_store.connection():
        ...

Importing the package reads no environment and opens no connection.
"""

from monps_store import errors
from monps_store.audit import audit_context
from monps_store.database import (
    check_connection,
    close_db,
    connection,
    db,
    init_db,
    pool_status,
)
from monps_store.replicas import replica
from monps_store.uow import unit_of_work

__all__ = [
    "audit_context",
    "check_connection",
    "close_db",
    "connection",
    "db",
    "errors",
    "init_db",
    "pool_status",
    "replica",
    "unit_of_work",
]
__version__ = "0.1.0"
