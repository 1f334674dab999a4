"""The Mon_PS models, in two schemas.

    from monps_store.models import Odds, TeamQuantumDNA

``ALL_MODELS`` lists them in dependency order (a model after the ones it references).
"""

from monps_store.models.base import AuditedModel, AuditMixin, BaseModel, TimestampMixin
from monps_store.models.public import Odds, TrackingCLVPick
from monps_store.models.quantum import (
    ChessClassification,
    GoalscorerProfile,
    QuantumFrictionMatrix,
    QuantumStrategy,
    TeamQuantumDNA,
)

SCHEMAS = ("public", "quantum")
ALL_MODELS = (Odds, TrackingCLVPick, ChessClassification, TeamQuantumDNA,
              QuantumFrictionMatrix, QuantumStrategy, GoalscorerProfile)

__all__ = [
    "ALL_MODELS", "SCHEMAS", "AuditMixin", "AuditedModel", "BaseModel", "ChessClassification",
    "GoalscorerProfile", "Odds", "QuantumFrictionMatrix", "QuantumStrategy", "TeamQuantumDNA",
    "TimestampMixin", "TrackingCLVPick",
]
