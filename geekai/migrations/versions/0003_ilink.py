"""iLink: the getupdates cursor, the messages handed over, each person's context token.

Also the bot state's `verify_code`: iLink's login may ask for the number the phone shows. Like the
baseline, it adds only what is missing (a database made from the models already has all of it).

Revision ID: 0003
Revises: 0005
Create Date: 2026-12-03
"""
from alembic import op
import sqlalchemy as sa

revision = "0003"
down_revision = "0005"
branch_labels = None
depends_on = None


def _create_missing_table(name, *elements):
    if sa.inspect(op.get_bind()).has_table(name):
        return False
    op.create_table(name, *elements)
    return True


def upgrade():
    if "verify_code" not in {column["name"] for column in sa.inspect(op.get_bind()).get_columns("bot_state")}:
        with op.batch_alter_table("bot_state") as batch:
            batch.add_column(sa.Column("verify_code", sa.String(length=16), nullable=True))
    _create_missing_table(
        "ilink_sync",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("bot_id", sa.String(length=200), nullable=False),
        sa.Column("cursor", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    if _create_missing_table(
        "ilink_seen_message",
        sa.Column("message_id", sa.String(length=80), nullable=False),
        sa.Column("seen_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("message_id"),
    ):
        op.create_index("ix_ilink_seen_message_seen_at", "ilink_seen_message", ["seen_at"], unique=False)
    _create_missing_table(
        "ilink_contact",
        sa.Column("user_id", sa.String(length=200), nullable=False),
        sa.Column("context_token", sa.Text(), nullable=False),
        sa.Column("last_message_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("user_id"),
    )


def downgrade():
    op.drop_table("ilink_contact")
    op.drop_index("ix_ilink_seen_message_seen_at", table_name="ilink_seen_message")
    op.drop_table("ilink_seen_message")
    op.drop_table("ilink_sync")
    with op.batch_alter_table("bot_state") as batch:
        batch.drop_column("verify_code")
