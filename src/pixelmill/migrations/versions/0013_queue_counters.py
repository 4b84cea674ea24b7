"""Counters for what every submit checks, kept by triggers in the transaction that changes a task:
a lane's waiting tasks and the last place given in its fair order (``lane_state``), and a key's
queued and running tasks per lane (``key_active``). Before, each submit counted those rows, and
the planner walked the lane's whole history to do it.

The status sets are written out here, as they were when this ran: a later change to
``tasks/status.py``'s QUEUED or ACTIVE needs a migration that replaces the triggers
(``tests/queue/test_counters.py`` compares the two).

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

QUEUED = "('NOT_START', 'SUBMITTED')"
ACTIVE = "('IN_PROGRESS', 'NOT_START', 'SUBMITTED')"
#: PostgreSQL spreads a lane's counter over this many rows, so that concurrent submits and
#: claims in one lane rarely wait on the same row lock. A transaction always takes the same row
#: (its id modulo this). Across the tables, every path locks ``key_active`` before ``lane_state``
#: (row triggers fire in name order; migration 0014 puts the insert trigger in that order too).
#: SQLite writes one transaction at a time: one row.
PG_SHARDS = 8

#: A task's part of a counter changes only when one of these does; other updates (progress,
#: results, leases) leave the counters alone.
_LANE_MOVES = f"(OLD.status IN {QUEUED}) != (NEW.status IN {QUEUED}) OR OLD.lane != NEW.lane OR NEW.fair_seq > OLD.fair_seq"
_KEY_MOVES = f"(OLD.status IN {ACTIVE}) != (NEW.status IN {ACTIVE}) OR OLD.lane != NEW.lane OR OLD.api_key_id IS NOT NEW.api_key_id"

_SQLITE_LANE_ADD = f"""
        INSERT INTO lane_state (lane, shard, waiting, last_seq) VALUES (NEW.lane, 0, NEW.status IN {QUEUED}, NEW.fair_seq)
        ON CONFLICT (lane, shard) DO UPDATE SET waiting = waiting + excluded.waiting, last_seq = max(last_seq, excluded.last_seq);"""
_SQLITE_LANE_REMOVE = f"""
        UPDATE lane_state SET waiting = waiting - 1 WHERE lane = OLD.lane AND shard = 0 AND OLD.status IN {QUEUED};"""
_SQLITE_KEY_ADD = f"""
        INSERT INTO key_active (api_key_id, lane, active) SELECT NEW.api_key_id, NEW.lane, 1
        WHERE NEW.api_key_id IS NOT NULL AND NEW.status IN {ACTIVE}
        ON CONFLICT (api_key_id, lane) DO UPDATE SET active = active + 1;"""
_SQLITE_KEY_REMOVE = f"""
        UPDATE key_active SET active = active - 1 WHERE api_key_id = OLD.api_key_id AND lane = OLD.lane AND OLD.status IN {ACTIVE};"""

_SQLITE = [
    f"CREATE TRIGGER tasks_lane_insert AFTER INSERT ON tasks BEGIN {_SQLITE_LANE_ADD} END",
    (f"CREATE TRIGGER tasks_lane_update AFTER UPDATE OF status, lane, fair_seq ON tasks WHEN {_LANE_MOVES} "
    f"BEGIN {_SQLITE_LANE_REMOVE} {_SQLITE_LANE_ADD} END"),
    f"CREATE TRIGGER tasks_lane_delete AFTER DELETE ON tasks WHEN OLD.status IN {QUEUED} BEGIN {_SQLITE_LANE_REMOVE} END",
    (f"CREATE TRIGGER tasks_key_insert AFTER INSERT ON tasks WHEN NEW.api_key_id IS NOT NULL AND NEW.status IN {ACTIVE} "
    f"BEGIN {_SQLITE_KEY_ADD} END"),
    (f"CREATE TRIGGER tasks_key_update AFTER UPDATE OF status, lane, api_key_id ON tasks WHEN {_KEY_MOVES} "
    f"BEGIN {_SQLITE_KEY_REMOVE} {_SQLITE_KEY_ADD} END"),
    (f"CREATE TRIGGER tasks_key_delete AFTER DELETE ON tasks WHEN OLD.api_key_id IS NOT NULL AND OLD.status IN {ACTIVE} "
    f"BEGIN {_SQLITE_KEY_REMOVE} END"),
]

#: Row triggers for updates and deletes (mostly one row each), a statement trigger for inserts.
_POSTGRESQL = [
    f"""
    CREATE FUNCTION pixelmill_lane_state() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        -- Not "shard": a variable of a column's name would make ON CONFLICT (lane, shard) ambiguous.
        pick integer := txid_current() % {PG_SHARDS};
    BEGIN
        IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.status IN {QUEUED} THEN
            INSERT INTO lane_state (lane, shard, waiting, last_seq) VALUES (OLD.lane, pick, -1, 0)
            ON CONFLICT (lane, shard) DO UPDATE SET waiting = lane_state.waiting - 1;
        END IF;
        IF TG_OP = 'UPDATE' THEN
            INSERT INTO lane_state (lane, shard, waiting, last_seq)
            VALUES (NEW.lane, pick, CASE WHEN NEW.status IN {QUEUED} THEN 1 ELSE 0 END, NEW.fair_seq)
            ON CONFLICT (lane, shard) DO UPDATE
            SET waiting = lane_state.waiting + EXCLUDED.waiting, last_seq = greatest(lane_state.last_seq, EXCLUDED.last_seq);
        END IF;
        RETURN NULL;
    END
    $$
    """,
    f"""
    CREATE FUNCTION pixelmill_key_active() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.api_key_id IS NOT NULL AND OLD.status IN {ACTIVE} THEN
            UPDATE key_active SET active = active - 1 WHERE api_key_id = OLD.api_key_id AND lane = OLD.lane;
        END IF;
        IF TG_OP = 'UPDATE' AND NEW.api_key_id IS NOT NULL AND NEW.status IN {ACTIVE} THEN
            INSERT INTO key_active (api_key_id, lane, active) VALUES (NEW.api_key_id, NEW.lane, 1)
            ON CONFLICT (api_key_id, lane) DO UPDATE SET active = key_active.active + 1;
        END IF;
        RETURN NULL;
    END
    $$
    """,
    # TRUNCATE fires no row triggers: the counters go with the rows they count.
    """
    CREATE FUNCTION pixelmill_tasks_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM lane_state;
        DELETE FROM key_active;
        RETURN NULL;
    END
    $$
    """,
    "CREATE TRIGGER tasks_truncate AFTER TRUNCATE ON tasks FOR EACH STATEMENT EXECUTE FUNCTION pixelmill_tasks_truncated()",
    # Inserts are counted once per statement: a batch's thousands of rows would otherwise leave
    # thousands of dead versions of one counter row behind in its transaction.
    f"""
    CREATE FUNCTION pixelmill_tasks_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO lane_state (lane, shard, waiting, last_seq)
        SELECT lane, txid_current() % {PG_SHARDS}, count(*) FILTER (WHERE status IN {QUEUED}), max(fair_seq)
        FROM inserted GROUP BY lane
        ON CONFLICT (lane, shard) DO UPDATE
        SET waiting = lane_state.waiting + EXCLUDED.waiting, last_seq = greatest(lane_state.last_seq, EXCLUDED.last_seq);
        INSERT INTO key_active (api_key_id, lane, active)
        SELECT api_key_id, lane, count(*) FROM inserted
        WHERE api_key_id IS NOT NULL AND status IN {ACTIVE} GROUP BY api_key_id, lane
        ON CONFLICT (api_key_id, lane) DO UPDATE SET active = key_active.active + EXCLUDED.active;
        RETURN NULL;
    END
    $$
    """,
    ("CREATE TRIGGER tasks_counters_insert AFTER INSERT ON tasks REFERENCING NEW TABLE AS inserted "
    "FOR EACH STATEMENT EXECUTE FUNCTION pixelmill_tasks_inserted()"),
    (f"CREATE TRIGGER tasks_lane_update AFTER UPDATE OF status, lane, fair_seq ON tasks FOR EACH ROW "
    f"WHEN ({_LANE_MOVES}) EXECUTE FUNCTION pixelmill_lane_state()"),
    (f"CREATE TRIGGER tasks_lane_delete AFTER DELETE ON tasks FOR EACH ROW WHEN (OLD.status IN {QUEUED}) "
    f"EXECUTE FUNCTION pixelmill_lane_state()"),
    (f"CREATE TRIGGER tasks_key_update AFTER UPDATE OF status, lane, api_key_id ON tasks FOR EACH ROW "
    f"WHEN ({_KEY_MOVES.replace('IS NOT NEW', 'IS DISTINCT FROM NEW')}) EXECUTE FUNCTION pixelmill_key_active()"),
    (f"CREATE TRIGGER tasks_key_delete AFTER DELETE ON tasks FOR EACH ROW "
    f"WHEN (OLD.api_key_id IS NOT NULL AND OLD.status IN {ACTIVE}) EXECUTE FUNCTION pixelmill_key_active()"),
]
_SQLITE_TRIGGERS = ("tasks_lane_insert", "tasks_lane_update", "tasks_lane_delete", "tasks_key_insert", "tasks_key_update", "tasks_key_delete")
_PG_FUNCTIONS = ("pixelmill_lane_state", "pixelmill_key_active", "pixelmill_tasks_truncated", "pixelmill_tasks_inserted")


def upgrade() -> None:
    op.create_table(
        "lane_state",
        sa.Column("lane", sa.String(16), nullable=False),
        sa.Column("shard", sa.Integer(), nullable=False),
        sa.Column("waiting", sa.BigInteger(), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("lane", "shard"),
    )
    op.create_table(
        "key_active",
        sa.Column("api_key_id", sa.String(32), nullable=False),
        sa.Column("lane", sa.String(16), nullable=False),
        sa.Column("active", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("api_key_id", "lane"),
    )
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        # Writers wait until this commits: a task inserted or moved between the backfill and the
        # triggers' creation would be counted by neither. Reads go on.
        op.execute("LOCK TABLE tasks IN SHARE ROW EXCLUSIVE MODE")
    # The counters start from the rows there are; the triggers keep them from then on.
    op.execute(
        f"INSERT INTO lane_state (lane, shard, waiting, last_seq) SELECT lane, 0, "
        f"sum(CASE WHEN status IN {QUEUED} THEN 1 ELSE 0 END), max(fair_seq) FROM tasks GROUP BY lane"
    )
    op.execute(
        f"INSERT INTO key_active (api_key_id, lane, active) SELECT api_key_id, lane, count(*) FROM tasks "
        f"WHERE api_key_id IS NOT NULL AND status IN {ACTIVE} GROUP BY api_key_id, lane"
    )
    for statement in _POSTGRESQL if postgres else _SQLITE:
        op.execute(statement)
    # The lane's last place now comes from lane_state. Left in place, this index tempted the
    # planner to walk a lane's whole history for "the first waiting task", not the partial
    # index over waiting tasks only.
    op.drop_index("ix_tasks_lane_fair", table_name="tasks")


def downgrade() -> None:
    op.create_index("ix_tasks_lane_fair", "tasks", ["lane", "fair_seq"])
    if op.get_bind().dialect.name == "postgresql":
        for function in _PG_FUNCTIONS:
            op.execute(f"DROP FUNCTION {function}() CASCADE")  # and the triggers that call it
    else:
        for trigger in _SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER {trigger}")
    op.drop_table("key_active")
    op.drop_table("lane_state")
