"""``public.odds`` partitioned by month on ``collected_at``, converted in place.

In one transaction: the table is locked and renamed aside, a partitioned ``public.odds`` with
the same columns, defaults, checks and indexes takes its name (its primary key becomes
``(id, collected_at)``: a partitioned table's unique indexes must hold the partition column),
a partition is made for every month that has rows, every row is copied (ids kept, the id
sequence moved over), the row counts are compared, and only then the old table is dropped.
Any difference raises, and the whole conversion is undone. The rollback does the same in
reverse and leaves the unpartitioned table with the same rows.

``public.monps_odds_partition(timestamptz)`` creates the month partition holding a moment, if
it is missing, and returns its name. It runs with its owner's rights (SECURITY DEFINER), so
the application role can create partitions for the rows it loads without owning the table;
it creates a table and attaches it, which locks ``public.odds`` in SHARE UPDATE EXCLUSIVE mode
(reads and writes go on) instead of the ACCESS EXCLUSIVE of ``CREATE TABLE ... PARTITION OF``.
Months are UTC months. Plain SQL only: the frozen models of 001_initial stay the history the
autogenerator replays.
"""

import peewee as pw
from peewee_migrate import Migrator

COLUMNS = """
    id bigint NOT NULL DEFAULT nextval('public.odds_id_seq'::regclass),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    created_by text NOT NULL DEFAULT CURRENT_USER,
    updated_by text NOT NULL DEFAULT CURRENT_USER,
    change_reason text,
    match_id text NOT NULL,
    league text NOT NULL,
    home_team text NOT NULL,
    away_team text NOT NULL,
    bookmaker text NOT NULL,
    market text NOT NULL,
    selection text NOT NULL,
    price numeric(10, 3) NOT NULL CONSTRAINT odds_price_check CHECK (price > 1),
    commence_time timestamptz NOT NULL,
    collected_at timestamptz NOT NULL"""

INDEXES = """
CREATE UNIQUE INDEX odds_match_id_bookmaker_market_selection_collected_at
    ON public.odds (match_id, bookmaker, market, selection, collected_at);
CREATE INDEX odds_league_commence_time ON public.odds (league, commence_time);
"""

# The old table's own index names, renamed out of the way while both tables exist.
RENAMED_INDEXES = ("odds_pkey", "odds_league_commence_time",
                   "odds_match_id_bookmaker_market_selection_collected_at")

PARTITION_FUNCTION = """
CREATE FUNCTION public.monps_odds_partition(moment timestamptz) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    first timestamptz := date_trunc('month', moment AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    name text := 'odds_y' || to_char(first AT TIME ZONE 'UTC', 'YYYY"m"MM');
BEGIN
    IF moment IS NULL OR NOT isfinite(moment) THEN
        RAISE EXCEPTION 'no odds partition for %%', moment USING ERRCODE = '22008';
    END IF;
    -- One creator at a time; the lock is held until the caller's transaction ends.
    PERFORM pg_advisory_xact_lock(hashtext('monps_store.partitions:public.odds'));
    IF to_regclass('public.' || name) IS NULL THEN
        EXECUTE format('CREATE TABLE public.%%I (LIKE public.odds INCLUDING DEFAULTS '
                       'INCLUDING CONSTRAINTS)', name);
        EXECUTE format('ALTER TABLE public.odds ATTACH PARTITION public.%%I '
                       'FOR VALUES FROM (%%L) TO (%%L)', name, first, first + interval '1 month');
    END IF;
    RETURN name;
END
$$
"""

VERIFY = """
DO $$
DECLARE
    before bigint;
    after bigint;
BEGIN
    SELECT count(*) INTO before FROM public.{old};
    SELECT count(*) INTO after FROM public.odds;
    IF before <> after THEN
        RAISE EXCEPTION 'odds conversion: %% rows before, %% after; nothing was changed',
            before, after;
    END IF;
END
$$
"""


def _move_aside(migrator: Migrator, old: str) -> None:
    migrator.sql("LOCK TABLE public.odds IN ACCESS EXCLUSIVE MODE")
    migrator.sql(f"ALTER TABLE public.odds RENAME TO {old}")
    for index in RENAMED_INDEXES:
        migrator.sql(f"ALTER INDEX IF EXISTS public.{index} RENAME TO {old}_{index[5:]}")


def _copy_grants(migrator: Migrator, old: str) -> None:
    # What the application role was granted on the old table, granted on the new one.
    migrator.sql(f"""
DO $$
DECLARE
    grant_ record;
BEGIN
    FOR grant_ IN
        SELECT a.privilege_type,
               CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END AS grantee
        FROM pg_class c, aclexplode(c.relacl) a
        WHERE c.oid = 'public.{old}'::regclass AND a.grantee <> c.relowner
    LOOP
        EXECUTE format('GRANT %s ON public.odds TO %s', grant_.privilege_type, grant_.grantee);
    END LOOP;
END
$$""".replace("%s", "%%s"))  # noqa: S608 - `old` is one of this module's names


def _rebuild(migrator: Migrator, old: str, primary_key: str, partitioning: str = "",
             before_copy: tuple[str, ...] = ()) -> None:
    """Move public.odds aside as ``old``, create it anew, copy every row, compare the counts,
    drop ``old``: one transaction, so any failure leaves the table as it was."""
    _move_aside(migrator, old)
    migrator.sql(f"CREATE TABLE public.odds ({COLUMNS},\n    CONSTRAINT odds_pkey PRIMARY KEY "
                 f"({primary_key})\n){partitioning}")
    for statement in INDEXES.strip().split(";\n"):
        migrator.sql(statement.rstrip(";"))
    migrator.sql("ALTER SEQUENCE public.odds_id_seq OWNED BY public.odds.id")
    _copy_grants(migrator, old)
    for statement in before_copy:
        migrator.sql(statement)
    migrator.sql(f"INSERT INTO public.odds SELECT * FROM public.{old}")  # noqa: S608
    migrator.sql(VERIFY.format(old=old))
    migrator.sql(f"DROP TABLE public.{old}")  # a partitioned one with its partitions


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    _rebuild(migrator, "odds_unpartitioned", "id, collected_at",
             " PARTITION BY RANGE (collected_at)", before_copy=(
                 PARTITION_FUNCTION,
                 # A partition for every month that has rows.
                 "SELECT public.monps_odds_partition(m) FROM (SELECT DISTINCT date_trunc("
                 "'month', collected_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS m "
                 "FROM public.odds_unpartitioned) months"))


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    _rebuild(migrator, "odds_partitioned", "id")
    migrator.sql("DROP FUNCTION public.monps_odds_partition(timestamptz)")
