"""Repository functions: module-level functions that take natural keys and return model
instances or plain values. The caller owns the transaction (``unit_of_work``); a function opens
``atomic()`` itself only when it runs several statements, and then nests as a savepoint.

    from monps_store.repositories import odds, clv, teams, friction, strategies, goalscorers, crud
"""

from monps_store.repositories import clv, crud, friction, goalscorers, odds, strategies, teams

__all__ = ["clv", "crud", "friction", "goalscorers", "odds", "strategies", "teams"]
