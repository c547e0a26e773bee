"""Admin session version (a logout or a new password ends every admin cookie issued before).

Revision ID: 0005
Revises: 0006
Create Date: 2026-12-09
"""
from alembic import op
import sqlalchemy as sa

revision = "0005"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade():
    # A database that db.create_all() made from the current models already has it.
    if "admin_session" in sa.inspect(op.get_bind()).get_table_names():
        return
    op.create_table(
        "admin_session",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("credential", sa.String(length=64), nullable=False),
        sa.Column("changed_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade():
    op.drop_table("admin_session")
