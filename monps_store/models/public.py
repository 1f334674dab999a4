"""Models in the ``public`` schema: bookmaker odds and the CLV picks of the agents."""

from __future__ import annotations

from peewee import SQL, BigAutoField, Check, DecimalField, TextField
from playhouse.postgres_ext import DateTimeTZField

from monps_store.models.base import AuditedModel

PICK_STATUSES = ("open", "settled", "void")
PICK_RESULTS = ("pending", "won", "lost", "push", "void")


def _one_of(column, values):
    return Check(f"{column} IN ({', '.join(repr(v) for v in values)})")


class PartitionedIdField(BigAutoField):
    """A BIGSERIAL id that peewee treats as the primary key, while the table's primary key is
    ``(id, partition column)``: a partitioned table's unique indexes must hold the partition
    column. The sequence keeps ids unique."""

    def ddl(self, ctx):
        node = super().ddl(ctx)
        node.nodes = [n for n in node.nodes if not (isinstance(n, SQL) and n.sql == "PRIMARY KEY")]
        return node


class Odds(AuditedModel):
    """One bookmaker's price for one selection of one market of one match at one moment.

    Partitioned by month on ``collected_at`` (UTC months, migration 003_partition_odds): see
    ``monps_store.partitions``."""

    id = PartitionedIdField()
    match_id = TextField()
    league = TextField()
    home_team = TextField()
    away_team = TextField()
    bookmaker = TextField()
    market = TextField()
    selection = TextField()
    price = DecimalField(max_digits=10, decimal_places=3, auto_round=False,
                         constraints=[Check("price > 1")])
    commence_time = DateTimeTZField()
    collected_at = DateTimeTZField()

    natural_key = ("match_id", "bookmaker", "market", "selection", "collected_at")
    publish_changes = "match_id"  # odds_changed {"match_ids": [...]}, as the ingest sends
    partitioned_by = "collected_at"  # the write paths create the month partitions they need

    class Meta:
        table_name = "odds"
        schema = "public"
        indexes = (
            # The natural key: re-ingesting a snapshot is idempotent. Its match_id prefix
            # serves the by-match query; bookmaker/market/selection/collected_at the CLV lookup.
            (("match_id", "bookmaker", "market", "selection", "collected_at"), True),
            (("league", "commence_time"), False),
        )
        constraints = [SQL("PRIMARY KEY (id, collected_at)")]
        table_settings = ["PARTITION BY RANGE (collected_at)"]


class TrackingCLVPick(AuditedModel):
    """An agent's pick, and its closing line value once settled."""

    id = BigAutoField()
    agent = TextField()
    match_id = TextField()
    market = TextField()
    selection = TextField()
    bookmaker = TextField()
    odds_taken = DecimalField(max_digits=10, decimal_places=3, auto_round=False,
                              constraints=[Check("odds_taken > 1")])
    stake = DecimalField(max_digits=12, decimal_places=2, auto_round=False, default=1,
                         constraints=[SQL("DEFAULT 1"), Check("stake > 0")])
    picked_at = DateTimeTZField()
    closing_odds = DecimalField(max_digits=10, decimal_places=3, auto_round=False, null=True,
                                constraints=[Check("closing_odds > 1")])
    clv_percent = DecimalField(max_digits=10, decimal_places=3, auto_round=False, null=True)
    settled_at = DateTimeTZField(null=True)
    status = TextField(default="open", constraints=[SQL("DEFAULT 'open'"),
                                                    _one_of("status", PICK_STATUSES)])
    result = TextField(default="pending", constraints=[SQL("DEFAULT 'pending'"),
                                                       _one_of("result", PICK_RESULTS)])

    natural_key = ("agent", "match_id", "market", "selection", "bookmaker", "picked_at")

    class Meta:
        table_name = "tracking_clv_picks"
        schema = "public"
        indexes = (
            (("agent", "match_id", "market", "selection", "bookmaker", "picked_at"), True),
            (("agent", "picked_at"), False),
            (("picked_at",), False),
            (("match_id", "market", "selection"), False),
        )
