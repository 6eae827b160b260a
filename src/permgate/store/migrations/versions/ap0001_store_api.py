"""The API a database belongs to: its name and (for an own API) its tables' fingerprint.

Why: an own API's generated permission names (`order_read`, `customer_read`, ...) can also
be Stripe's, so a command run on an own API's database without `--api`/`PERMGATE_API`
would decide the grants consented for that API as Stripe grants. The store now records the
API it was set up for (`Store.open` refuses another) and, for an own API, the sha256 of its
five tables (a re-generated DIR is accepted by `permgate db upgrade --api DIR` only).

Databases that already hold apps were made for Stripe's API (the only one before): they get
`stripe`. An empty one is the API's of the command that opens it.

Revision ID: ap0001_store_api
Revises: ev0004_delivery_leases
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "ap0001_store_api"
down_revision: str | None = "ev0004_delivery_leases"
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None


def upgrade() -> None:
    with op.batch_alter_table("permgate_state") as batch:
        batch.add_column(sa.Column("api", sa.String(40), nullable=True))
        batch.add_column(sa.Column("api_tables", sa.String(64), nullable=True))
    op.execute("UPDATE permgate_state SET api = 'stripe' "
               "WHERE EXISTS (SELECT 1 FROM apps)")


def downgrade() -> None:
    with op.batch_alter_table("permgate_state") as batch:
        batch.drop_column("api_tables")
        batch.drop_column("api")
