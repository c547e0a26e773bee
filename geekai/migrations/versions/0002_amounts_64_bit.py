"""Amounts in 64 bits on PostgreSQL.

Releases before the amounts became BIGINT created `amount_cents` as INTEGER, which is 32 bits on
PostgreSQL (at most 21,474,836.47 yuan). SQLite's INTEGER is already 64 bits: nothing to do there.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""
from alembic import op
import sqlalchemy as sa

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

AMOUNT_COLUMNS = (("payment", False), ("payment_order", False), ("payment_notice", True))


def upgrade():
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    inspector = sa.inspect(bind)
    for table, nullable in AMOUNT_COLUMNS:
        column = next(c for c in inspector.get_columns(table) if c["name"] == "amount_cents")
        if not isinstance(column["type"], sa.BigInteger):
            op.alter_column(table, "amount_cents", type_=sa.BigInteger(), existing_type=sa.Integer(),
                            existing_nullable=nullable)


def downgrade():
    pass  # 64-bit columns hold everything 32-bit ones did; narrowing them could lose amounts
