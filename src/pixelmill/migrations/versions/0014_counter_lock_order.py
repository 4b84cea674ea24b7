"""PostgreSQL: the insert trigger of migration 0013 takes its counter rows in the order every
other path takes them: ``key_active``, then ``lane_state`` (then a charge or refund locks
``api_keys``).

Row triggers fire in name order, so an update or delete of a task changes ``key_active``
(``tasks_key_*``) before ``lane_state`` (``tasks_lane_*``), and a submit under a concurrency cap
locks its ``key_active`` row first. The insert trigger did the opposite, and two transactions
taking the same two rows in opposite orders can deadlock. The counts are unchanged. SQLite
writes one transaction at a time and has nothing to change.

Revision ID: 0014
Revises: 0013
"""

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

QUEUED = "('NOT_START', 'SUBMITTED')"
ACTIVE = "('IN_PROGRESS', 'NOT_START', 'SUBMITTED')"
PG_SHARDS = 8  # as in 0013


def _inserted(first: str, second: str) -> str:
    return f"""
    CREATE OR REPLACE FUNCTION pixelmill_tasks_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        {first}
        {second}
        RETURN NULL;
    END
    $$
    """


_LANE_STATE = f"""
        INSERT INTO lane_state (lane, shard, waiting, last_seq)
        SELECT lane, txid_current() % {PG_SHARDS}, count(*) FILTER (WHERE status IN {QUEUED}), max(fair_seq)
        FROM inserted GROUP BY lane
        ON CONFLICT (lane, shard) DO UPDATE
        SET waiting = lane_state.waiting + EXCLUDED.waiting, last_seq = greatest(lane_state.last_seq, EXCLUDED.last_seq);"""
_KEY_ACTIVE = f"""
        INSERT INTO key_active (api_key_id, lane, active)
        SELECT api_key_id, lane, count(*) FROM inserted
        WHERE api_key_id IS NOT NULL AND status IN {ACTIVE} GROUP BY api_key_id, lane
        ON CONFLICT (api_key_id, lane) DO UPDATE SET active = key_active.active + EXCLUDED.active;"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_inserted(_KEY_ACTIVE, _LANE_STATE))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_inserted(_LANE_STATE, _KEY_ACTIVE))
