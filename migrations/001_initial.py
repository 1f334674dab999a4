"""The initial schema: the quantum schema, then every table, constraint and index of both schemas.

Frozen model classes, declared here and never imported from the application: migrations are
history. peewee-migrate replays these declarations to know the schema when it generates the
next migration (`monps-store create NAME --auto`).
"""

import peewee as pw
import playhouse.postgres_ext as pw_pext
from peewee_migrate import Migrator

NOW = pw.SQL("DEFAULT now()")
CURRENT_USER = pw.SQL("DEFAULT current_user")
TABLES = ("chess_classifications", "team_quantum_dna", "goalscorer_profiles", "odds",
          "quantum_friction_matrix", "quantum_strategies", "tracking_clv_picks")


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    migrator.sql('CREATE SCHEMA IF NOT EXISTS "quantum"')

    @migrator.create_model
    class ChessClassification(pw.Model):
        id = pw.AutoField()
        created_at = pw_pext.DateTimeTZField(constraints=[NOW])
        updated_at = pw_pext.DateTimeTZField(constraints=[NOW])
        created_by = pw.TextField(constraints=[CURRENT_USER])
        updated_by = pw.TextField(constraints=[CURRENT_USER])
        change_reason = pw.TextField(null=True)
        code = pw.TextField(unique=True)
        name = pw.TextField(unique=True)
        description = pw.TextField(default='')
        traits = pw.JSONField(constraints=[pw.SQL("DEFAULT '{}'::jsonb")])

        class Meta:
            legacy_table_names = False
            table_name = "chess_classifications"
            schema = "quantum"

    @migrator.create_model
    class TeamQuantumDNA(pw.Model):
        id = pw.AutoField()
        created_at = pw_pext.DateTimeTZField(constraints=[NOW])
        updated_at = pw_pext.DateTimeTZField(constraints=[NOW])
        created_by = pw.TextField(constraints=[CURRENT_USER])
        updated_by = pw.TextField(constraints=[CURRENT_USER])
        change_reason = pw.TextField(null=True)
        team_name = pw.TextField(unique=True)
        league = pw.TextField(index=True)
        chess_classification = pw.ForeignKeyField(column_name='chess_classification_id', field='id', model=migrator.orm['chess_classifications'], null=True, on_delete='SET NULL')
        market_dna = pw.JSONField(constraints=[pw.SQL("DEFAULT '{}'::jsonb")])
        context_dna = pw.JSONField(constraints=[pw.SQL("DEFAULT '{}'::jsonb")])
        temporal_dna = pw.JSONField(constraints=[pw.SQL("DEFAULT '{}'::jsonb")])
        nemesis_dna = pw.JSONField(constraints=[pw.SQL("DEFAULT '{}'::jsonb")])
        psyche_dna = pw.JSONField(constraints=[pw.SQL("DEFAULT '{}'::jsonb")])
        roster_dna = pw.JSONField(constraints=[pw.SQL("DEFAULT '{}'::jsonb")])
        physical_dna = pw.JSONField(constraints=[pw.SQL("DEFAULT '{}'::jsonb")])
        luck_dna = pw.JSONField(constraints=[pw.SQL("DEFAULT '{}'::jsonb")])
        matches_played = pw.IntegerField(default=0, constraints=[pw.Check("matches_played >= 0")])
        total_bets = pw.IntegerField(default=0, constraints=[pw.Check("total_bets >= 0")])
        win_rate = pw.DecimalField(auto_round=False, decimal_places=2, default=0, max_digits=5, constraints=[pw.Check("win_rate BETWEEN 0 AND 100")])
        roi = pw.DecimalField(auto_round=False, decimal_places=3, default=0, max_digits=10)
        total_pnl = pw.DecimalField(auto_round=False, decimal_places=2, default=0, max_digits=12)
        avg_clv = pw.DecimalField(auto_round=False, decimal_places=3, max_digits=10, null=True)

        class Meta:
            legacy_table_names = False
            table_name = "team_quantum_dna"
            schema = "quantum"

    @migrator.create_model
    class GoalscorerProfile(pw.Model):
        id = pw.AutoField()
        created_at = pw_pext.DateTimeTZField(constraints=[NOW])
        updated_at = pw_pext.DateTimeTZField(constraints=[NOW])
        created_by = pw.TextField(constraints=[CURRENT_USER])
        updated_by = pw.TextField(constraints=[CURRENT_USER])
        change_reason = pw.TextField(null=True)
        team = pw.ForeignKeyField(column_name='team_id', field='id', model=migrator.orm['team_quantum_dna'], on_delete='CASCADE', index=False)
        player_name = pw.TextField()
        position = pw.TextField(null=True)
        goals = pw.IntegerField(default=0, constraints=[pw.Check("goals >= 0")])
        assists = pw.IntegerField(default=0, constraints=[pw.Check("assists >= 0")])
        expected_goals = pw.DecimalField(auto_round=False, decimal_places=2, default=0, max_digits=6, constraints=[pw.Check("expected_goals >= 0")])
        minutes_played = pw.IntegerField(default=0, constraints=[pw.Check("minutes_played >= 0")])
        shots = pw.IntegerField(default=0, constraints=[pw.Check("shots >= 0")])
        penalty_goals = pw.IntegerField(default=0, constraints=[pw.Check("penalty_goals >= 0")])

        class Meta:
            legacy_table_names = False
            table_name = "goalscorer_profiles"
            schema = "quantum"
            indexes = [(('team', 'player_name'), True), (('goals',), False)]

    @migrator.create_model
    class Odds(pw.Model):
        id = pw.BigAutoField()
        created_at = pw_pext.DateTimeTZField(constraints=[NOW])
        updated_at = pw_pext.DateTimeTZField(constraints=[NOW])
        created_by = pw.TextField(constraints=[CURRENT_USER])
        updated_by = pw.TextField(constraints=[CURRENT_USER])
        change_reason = pw.TextField(null=True)
        match_id = pw.TextField()
        league = pw.TextField()
        home_team = pw.TextField()
        away_team = pw.TextField()
        bookmaker = pw.TextField()
        market = pw.TextField()
        selection = pw.TextField()
        price = pw.DecimalField(auto_round=False, decimal_places=3, max_digits=10, constraints=[pw.Check("price > 1")])
        commence_time = pw_pext.DateTimeTZField()
        collected_at = pw_pext.DateTimeTZField()

        class Meta:
            legacy_table_names = False
            table_name = "odds"
            schema = "public"
            indexes = [(('match_id', 'bookmaker', 'market', 'selection', 'collected_at'), True), (('league', 'commence_time'), False)]

    @migrator.create_model
    class QuantumFrictionMatrix(pw.Model):
        id = pw.AutoField()
        created_at = pw_pext.DateTimeTZField(constraints=[NOW])
        updated_at = pw_pext.DateTimeTZField(constraints=[NOW])
        created_by = pw.TextField(constraints=[CURRENT_USER])
        updated_by = pw.TextField(constraints=[CURRENT_USER])
        change_reason = pw.TextField(null=True)
        home_team = pw.ForeignKeyField(column_name='home_team_id', field='id', model=migrator.orm['team_quantum_dna'], on_delete='CASCADE', index=False)
        away_team = pw.ForeignKeyField(column_name='away_team_id', field='id', model=migrator.orm['team_quantum_dna'], on_delete='CASCADE')
        friction_score = pw.DecimalField(auto_round=False, decimal_places=2, max_digits=6, constraints=[pw.Check("friction_score BETWEEN 0 AND 100")])
        style_clash = pw.DecimalField(auto_round=False, decimal_places=2, max_digits=6, null=True)
        tempo_friction = pw.DecimalField(auto_round=False, decimal_places=2, max_digits=6, null=True)
        chaos_potential = pw.DecimalField(auto_round=False, decimal_places=2, max_digits=6, null=True)
        predicted_goals = pw.DecimalField(auto_round=False, decimal_places=2, max_digits=5, null=True)
        matches_analyzed = pw.IntegerField(default=0, constraints=[pw.Check("matches_analyzed >= 0")])

        class Meta:
            legacy_table_names = False
            table_name = "quantum_friction_matrix"
            schema = "quantum"
            indexes = [(('home_team', 'away_team'), True)]
            constraints = [pw.Check("home_team_id <> away_team_id", name="friction_home_differs_from_away")]

    @migrator.create_model
    class QuantumStrategy(pw.Model):
        id = pw.AutoField()
        created_at = pw_pext.DateTimeTZField(constraints=[NOW])
        updated_at = pw_pext.DateTimeTZField(constraints=[NOW])
        created_by = pw.TextField(constraints=[CURRENT_USER])
        updated_by = pw.TextField(constraints=[CURRENT_USER])
        change_reason = pw.TextField(null=True)
        team = pw.ForeignKeyField(column_name='team_id', field='id', model=migrator.orm['team_quantum_dna'], on_delete='CASCADE', index=False)
        market = pw.TextField()
        strategy_name = pw.TextField()
        win_rate = pw.DecimalField(auto_round=False, decimal_places=2, max_digits=5, constraints=[pw.Check("win_rate BETWEEN 0 AND 100")])
        roi = pw.DecimalField(auto_round=False, decimal_places=3, max_digits=10)
        sample_size = pw.IntegerField(constraints=[pw.Check("sample_size >= 0")])
        is_active = pw.BooleanField(default=True, constraints=[pw.SQL("DEFAULT true")])

        class Meta:
            legacy_table_names = False
            table_name = "quantum_strategies"
            schema = "quantum"
            indexes = [(('team', 'market', 'strategy_name'), True)]

    @migrator.create_model
    class TrackingCLVPick(pw.Model):
        id = pw.BigAutoField()
        created_at = pw_pext.DateTimeTZField(constraints=[NOW])
        updated_at = pw_pext.DateTimeTZField(constraints=[NOW])
        created_by = pw.TextField(constraints=[CURRENT_USER])
        updated_by = pw.TextField(constraints=[CURRENT_USER])
        change_reason = pw.TextField(null=True)
        agent = pw.TextField()
        match_id = pw.TextField()
        market = pw.TextField()
        selection = pw.TextField()
        bookmaker = pw.TextField()
        odds_taken = pw.DecimalField(auto_round=False, decimal_places=3, max_digits=10, constraints=[pw.Check("odds_taken > 1")])
        stake = pw.DecimalField(auto_round=False, decimal_places=2, default=1, max_digits=12, constraints=[pw.Check("stake > 0")])
        picked_at = pw_pext.DateTimeTZField()
        closing_odds = pw.DecimalField(auto_round=False, decimal_places=3, max_digits=10, null=True, constraints=[pw.Check("closing_odds > 1")])
        clv_percent = pw.DecimalField(auto_round=False, decimal_places=3, max_digits=10, null=True)
        settled_at = pw_pext.DateTimeTZField(null=True)
        status = pw.TextField(default='open', constraints=[pw.SQL("DEFAULT 'open'"), pw.Check("status IN ('open', 'settled', 'void')")])
        result = pw.TextField(default='pending', constraints=[pw.SQL("DEFAULT 'pending'"), pw.Check("result IN ('pending', 'won', 'lost', 'push', 'void')")])

        class Meta:
            legacy_table_names = False
            table_name = "tracking_clv_picks"
            schema = "public"
            indexes = [(('agent', 'match_id', 'market', 'selection', 'bookmaker', 'picked_at'), True), (('agent', 'picked_at'), False), (('picked_at',), False), (('match_id', 'market', 'selection'), False)]


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    for table in reversed(TABLES):
        migrator.remove_model(table, cascade=True)
    migrator.sql('DROP SCHEMA IF EXISTS "quantum"')
