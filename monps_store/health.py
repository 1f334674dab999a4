"""What ``monps-store check`` reports: is the database reachable, and does it match the models.

    from monps_store import health
    report = health.check(settings)    # connection, server, settings, drift, pool, replicas
    report["ok"]

The database must be initialised with ``settings``. Nothing here migrates (so the report does
not import peewee-migrate: ``check`` stays a cheap command).
"""

from __future__ import annotations

import time
from typing import Any

import peewee

from monps_store import config, database, drift, errors, replicas


def check(settings: config.Settings,
          migrate_command: str = "monps-store migrate") -> dict[str, Any]:
    """What ``monps-store check`` reports, JSON-ready: the connection (latency or error), server
    version, settings, schema drift, pooler warnings, pool figures, replicas; ``ok`` is false on
    any problem. The database must be initialised with ``settings``."""
    report: dict[str, Any] = {"ok": True, "connection": {"url": settings.display_url}}
    start = time.perf_counter()
    try:
        version = database.server_version()
        report["connection"]["latency_ms"] = round((time.perf_counter() - start) * 1000, 1)
        report["server_version"] = version
    except errors.MonpsStoreError as exc:
        report["ok"] = False
        report["connection"]["error"] = str(exc)
    report["settings"] = settings.describe()
    if "error" not in report["connection"]:
        with database.connection() as db:
            report["drift"] = drift.compare(db)
            report["warnings"] = pooler_warnings(db, settings)
        if any("missing from the database" in d for d in report["drift"]):
            report["hint"] = f"run `{migrate_command}` to create the missing tables"
        report["ok"] = not report["drift"]
    report["pool"] = database.pool_status()
    if settings.replicas:
        report["replicas"] = replicas.check()
        # A replica that cannot serve is a problem to see; reads still go to the primary.
        if any(not r["reachable"] or not r["in_recovery"] for r in report["replicas"]):
            report["ok"] = False
    return report


def pooler_warnings(db: peewee.Database, settings: config.Settings) -> list[str]:
    """A pooler in front shows when, connected over TCP, the server's side of the session is
    a unix socket or another port (a connection over a unix socket tells nothing)."""
    if settings.pooler != "none" or not settings.host or settings.host.startswith("/"):
        return []
    port = db.execute_sql("SELECT inet_server_port()").fetchone()[0]
    if port == settings.port:
        return []
    where = "a unix socket" if port is None else f"port {port}"
    return [f"connected to port {settings.port} over TCP but the server sees the session on "
            f"{where}: a pooler (PgBouncer?) or a port forward sits in front. Behind PgBouncer "
            "in transaction mode set DB_POOLER=pgbouncer, or session settings, startup options "
            "and prepared statements will leak or fail"]
