"""Alert deliveries named by their incident, and watchdog restarts by their actor.

`alert_delivery` says which incident (and notice, and channel) each alert message in the outbox
belongs to, so nothing takes idempotency keys apart any more; the rows of messages queued before
are filled in from those keys, once, here. History rows that older releases wrote for a watchdog
restart with the actor "bot" (their reason starts "watchdog:") get the actor "watchdog", so that
the actor alone finds them.

Revision ID: 0007
Revises: 0004
Create Date: 2026-12-11
"""
from alembic import op
import sqlalchemy as sa

revision = "0007"
down_revision = "0004"
branch_labels = None
depends_on = None

ONE_OFF_PREFIXES = {"test-": "test", "forged-payment-": "forged_payment"}


def upgrade():
    bind = op.get_bind()
    if not sa.inspect(bind).has_table("alert_delivery"):
        op.create_table(
            "alert_delivery",
            sa.Column("outbox_id", sa.Integer(), autoincrement=False, nullable=False),
            sa.Column("incident_id", sa.Integer(), nullable=True),
            sa.Column("notice", sa.String(length=32), nullable=False),
            sa.Column("channel", sa.String(length=32), nullable=False),
            sa.PrimaryKeyConstraint("outbox_id"),
        )
        op.create_index("ix_alert_delivery_incident", "alert_delivery", ["incident_id"], unique=False)
    outbox = sa.table("outbox", sa.column("id", sa.Integer), sa.column("topic", sa.String),
                      sa.column("idempotency_key", sa.String))
    delivery = sa.table("alert_delivery", sa.column("outbox_id", sa.Integer), sa.column("incident_id", sa.Integer),
                        sa.column("notice", sa.String), sa.column("channel", sa.String))
    known = {row.outbox_id for row in bind.execute(sa.select(delivery.c.outbox_id))}
    rows = []
    for message in bind.execute(sa.select(outbox).where(outbox.c.topic.like("alert.%"))):
        if message.id in known:
            continue
        key, channel = message.idempotency_key, message.topic.removeprefix("alert.")
        if key.startswith("incident-") and key.split("-")[1].isdigit():
            rows.append({"outbox_id": message.id, "incident_id": int(key.split("-")[1]),
                         "notice": key.split("-")[2][:32], "channel": channel[:32]})
        else:
            notice = next((kind for prefix, kind in ONE_OFF_PREFIXES.items() if key.startswith(prefix)), "other")
            rows.append({"outbox_id": message.id, "incident_id": None, "notice": notice, "channel": channel[:32]})
    if rows:
        op.bulk_insert(delivery, rows)
    event = sa.table("bot_event", sa.column("actor", sa.String), sa.column("reason", sa.Text))
    bind.execute(event.update().where(event.c.actor == "bot", event.c.reason.like("watchdog:%"))
                 .values(actor="watchdog"))


def downgrade():
    op.drop_table("alert_delivery")
