"""peewee-migrate migrations of monps_store (files NNN_name.py), shipped inside the package as
``monps_store.migrations``. Apply them with ``monps-store migrate``."""
