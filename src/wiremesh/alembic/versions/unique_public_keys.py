"""One WireGuard public key per organization.

Two devices of an org could enroll with the same public key, and ``PUT /agent/public-key``
took another device's key; WireGuard knows a peer by its key, so one of the two was cut off.

Existing duplicates: within each (org, key) the device that keeps the key is the earliest
enrolled one that is not revoked (else the earliest); every other device of the group has
its key cleared (NULL), and each is logged by id. A device without a key gets no peers'
traffic until it sets one: ``wiremesh agent rotate-key`` on that machine makes a new pair.
Downgrading drops the index and leaves the keys as they are.

Revision ID: unique_public_keys
Revises: peer_paths
Create Date: 2026-12-10
"""

import logging
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "unique_public_keys"
down_revision: str | None = "peer_paths"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "uq_virtual_ip_mapping_org_id_public_key"
WHERE = sa.text("public_key IS NOT NULL")
logger = logging.getLogger("alembic.runtime.migration")

_devices = sa.table(
    "virtual_ip_mapping",
    sa.column("id", sa.Integer),
    sa.column("org_id", sa.Integer),
    sa.column("public_key", sa.String),
    sa.column("revoked_at", sa.DateTime),
)


def _clear_duplicate_keys() -> None:
    connection = op.get_bind()
    duplicated = (
        sa.select(_devices.c.org_id, _devices.c.public_key)
        .where(_devices.c.public_key.is_not(None))
        .group_by(_devices.c.org_id, _devices.c.public_key)
        .having(sa.func.count() > 1)
        .subquery()
    )
    rows = connection.execute(
        sa.select(_devices.c.id, _devices.c.org_id, _devices.c.public_key)
        .join(
            duplicated,
            sa.and_(
                duplicated.c.org_id == _devices.c.org_id,
                duplicated.c.public_key == _devices.c.public_key,
            ),
        )
        .order_by(
            _devices.c.org_id,
            _devices.c.public_key,
            _devices.c.revoked_at.is_not(None),
            _devices.c.id,
        )
    ).all()
    keeper: dict[tuple[int, str], int] = {}
    cleared: list[int] = []
    for device_id, org_id, public_key in rows:
        if keeper.setdefault((org_id, public_key), device_id) != device_id:
            cleared.append(device_id)
    if cleared:
        connection.execute(
            sa.update(_devices).where(_devices.c.id.in_(cleared)).values(public_key=None)
        )
        logger.warning(
            "cleared the WireGuard public key of %d device(s) that shared it with an earlier "
            "device of their organization (ids %s); run `wiremesh agent rotate-key` on them",
            len(cleared),
            ", ".join(str(device_id) for device_id in cleared),
        )


def upgrade() -> None:
    _clear_duplicate_keys()
    op.create_index(
        INDEX,
        "virtual_ip_mapping",
        ["org_id", "public_key"],
        unique=True,
        sqlite_where=WHERE,
        postgresql_where=WHERE,
    )


def downgrade() -> None:
    op.drop_index(INDEX, table_name="virtual_ip_mapping")
