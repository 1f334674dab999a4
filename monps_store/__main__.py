"""``python -m monps_store`` is the ``monps-store`` command."""

from monps_store.cli import run

run()
