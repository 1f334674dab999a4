"""The asyncpg side of the async database: connection arguments from the settings, JSON
codecs, a connection that runs statements through asyncpg's statement cache, and the
server-side cursor the greenlet bridge reads in batches.
"""

from __future__ import annotations

import json
from typing import Any

from playhouse.pwasyncio import AsyncPostgresqlConnection, CursorAdapter, await_

from monps_store import config, errors

# libpq connection parameters a URL may carry, as asyncpg names them.
_ASYNCPG_PARAMS = {"sslmode": "ssl", "target_session_attrs": "target_session_attrs"}


def _json_bytes(value) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if hasattr(value, "adapted"):  # psycopg2.extras.Json, as the models' JSON fields make
        return value.dumps(value.adapted).encode()
    return json.dumps(value).encode()


def _jsonb_bytes(value) -> bytes:
    return b"\x01" + _json_bytes(value)  # jsonb's binary format: a version byte, then text


def _json_loads(data: bytes):
    return json.loads(data.decode())  # str: json.loads(bytes) sniffs the encoding first


def _jsonb_loads(data: bytes):
    return json.loads(data[1:].decode())


async def json_codecs(conn: Any) -> None:
    """JSON in both directions as text. The models' JSON fields wrap values for psycopg2
    (bound to the sync database when the classes were made): accept those wrappers."""
    await conn.set_type_codec("json", schema="pg_catalog", format="binary",
                              encoder=_json_bytes, decoder=_json_loads)
    await conn.set_type_codec("jsonb", schema="pg_catalog", format="binary",
                              encoder=_jsonb_bytes, decoder=_jsonb_loads)


def connect_kwargs(settings: config.Settings) -> dict:
    """Keyword arguments for ``asyncpg.create_pool`` (reveals the password: driver use only)."""
    kwargs: dict[str, Any] = {"host": settings.host, "port": settings.port, "user": settings.user,
              "database": settings.database,
              "timeout": settings.connect_timeout or None}
    if settings.password:
        kwargs["password"] = settings.password.reveal()
    unsupported = []
    for key, value in settings.params:
        if key in _ASYNCPG_PARAMS:
            kwargs[_ASYNCPG_PARAMS[key]] = value
        else:
            unsupported.append(key)
    if unsupported:
        raise errors.ConfigError([f"connection parameter {key!r}: not supported by the async "
                                  "driver (asyncpg takes sslmode and target_session_attrs)"
                                  for key in unsupported])
    server_settings = {"application_name": settings.application_name}
    if settings.pooler != "none":
        # A transaction-mode pooler: no prepared statement outlives its transaction's server
        # connection (unnamed statements instead), no session settings at startup.
        kwargs["statement_cache_size"] = 0
    elif settings.statement_timeout:
        server_settings["statement_timeout"] = str(settings.statement_timeout)
    kwargs["server_settings"] = server_settings
    return {key: value for key, value in kwargs.items() if value is not None}


class PooledConnection(AsyncPostgresqlConnection):
    """One pooled asyncpg connection of a task; ``lost`` once it was found dead."""

    lost = False

    async def _execute(self, sql, params=None):
        if params:
            sql = self._translate_placeholders(sql)
        # asyncpg's statement cache: the Parse/Describe happens once per connection.
        records, status, _ = await self.conn._execute(
            sql, params or (), 0, None, return_status=True)
        description = [(key,) for key in records[0].keys()] if records else []
        parts = status.rsplit(b" ", 1)
        rowcount = int(parts[1]) if len(parts) == 2 and parts[1].isdigit() else len(records)
        return CursorAdapter(records, rowcount=rowcount, description=description)


class ServerSideCursor:
    """A server-side cursor in the greenlet bridge (what ``named_cursor=True`` gives): rows
    fetched ``array_size`` at a time through asyncpg's cursor, closed (its savepoint rolled
    back, the connection free again) when exhausted or closed."""

    def __init__(self, cursor: CursorAdapter, array_size: int | None):
        self.cursor = cursor
        if array_size:
            cursor._buffer_size = array_size
        self.closed = False

    @property
    def description(self):
        return self.cursor.description

    def fetchone(self):
        row = self.cursor.fetchone() if not self.closed else None
        if row is None:
            self.close()
        return row

    def fetchmany(self, size=None):
        rows: list = []
        while len(rows) < (size or self.cursor._buffer_size):
            row = self.fetchone()
            if row is None:
                break
            rows.append(row)
        return rows

    def fetchall(self):
        return list(iter(self.fetchone, None))

    def __iter__(self):
        return iter(self.fetchone, None)

    def close(self):
        if not self.closed:
            self.closed = True
            await_(self.cursor.aclose())
