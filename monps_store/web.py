"""A connection scope per web request, without importing any web framework.

FastAPI::

    from fastapi import Depends
    from monps_store.web import connection_dependency

    @app.get("/teams/{name}")
    def team(name: str, db=Depends(connection_dependency)):
        return teams.get_by_name(name).to_dict()

Flask::

    @app.before_request
    def open_scope():
        g.monps_scope = connection_dependency()
        next(g.monps_scope)

    @app.teardown_request
    def close_scope(exc):
        scope = g.pop("monps_scope", None)
        if scope is not None:
            scope.close()          # returns the connection to the pool
"""

from __future__ import annotations

from collections.abc import Iterator

from monps_store.database import MonpsDatabase, connection


def connection_dependency() -> Iterator[MonpsDatabase]:
    """Yield the database inside a connection scope; the connection goes back to the pool when
    the generator is closed or an exception is thrown into it."""
    with connection() as db:
        yield db
