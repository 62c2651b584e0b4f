"""Which configuration a mail goes through: the org's active one, else the active global one."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tests.factories import make_org
from wiremesh.server.config import Settings
from wiremesh.server.crypto import SecretKeyMismatch, generate_key
from wiremesh.server.mail import service
from wiremesh.server.mail.models import SMTPSettings, TlsMode
from wiremesh.server.mail.service import SmtpNotConfigured, SMTPSettingsInput
from wiremesh.server.tenancy import SERVER_SCOPE, OrgScope


def config(
    host: str,
    *,
    active: bool = True,
    password: str | None = "pw",  # noqa: S107
) -> SMTPSettingsInput:
    return SMTPSettingsInput(
        smtp_server=host,
        smtp_port=587,
        from_email=f"noreply@{host}",
        smtp_username="user" if password else None,
        smtp_password=password,
        is_active=active,
    )


async def test_org_first_then_global_then_a_clear_error(
    session: AsyncSession, settings: Settings
) -> None:
    own = await make_org(session)
    other = await make_org(session)
    with pytest.raises(SmtpNotConfigured) as caught:
        await service.resolve(session, settings, own.id)
    assert caught.value.code == "smtp_not_configured"

    await service.put_settings(session, settings, SERVER_SCOPE, config("global.example.com"))
    await service.put_settings(session, settings, OrgScope(own.id), config("own.example.com"))

    mine = await service.resolve(session, settings, own.id)
    assert (mine.host, mine.scope, mine.password) == ("own.example.com", "org", "pw")
    fallback = await service.resolve(session, settings, other.id)
    assert (fallback.host, fallback.scope) == ("global.example.com", "global")
    server_wide = await service.resolve(session, settings, None)
    assert server_wide.host == "global.example.com"
    assert mine.tls is TlsMode.STARTTLS


async def test_an_inactive_org_config_falls_back_to_the_global_one(
    session: AsyncSession, settings: Settings
) -> None:
    org = await make_org(session)
    await service.put_settings(session, settings, SERVER_SCOPE, config("global.example.com"))
    await service.put_settings(
        session, settings, OrgScope(org.id), config("own.example.com", active=False)
    )
    assert (await service.resolve(session, settings, org.id)).host == "global.example.com"

    await service.put_settings(
        session, settings, SERVER_SCOPE, config("global.example.com", active=False)
    )
    with pytest.raises(SmtpNotConfigured):
        await service.resolve(session, settings, org.id)


async def test_a_change_applies_to_the_next_resolution(
    session: AsyncSession, settings: Settings
) -> None:
    org = await make_org(session)
    await service.put_settings(session, settings, OrgScope(org.id), config("first.example.com"))
    await session.commit()
    assert (await service.resolve(session, settings, org.id)).host == "first.example.com"
    await service.put_settings(session, settings, OrgScope(org.id), config("second.example.com"))
    await session.commit()
    resolved = await service.resolve(session, settings, org.id)
    assert resolved.host == "second.example.com"
    assert resolved.password == "pw"


async def test_a_stored_password_under_a_lost_key_is_a_clear_error(
    session: AsyncSession, settings: Settings
) -> None:
    org = await make_org(session)
    await service.put_settings(session, settings, OrgScope(org.id), config("own.example.com"))
    other_keys = settings.model_copy(update={"secret_keys": [generate_key()]})
    with pytest.raises(SecretKeyMismatch) as caught:
        await service.resolve(session, other_keys, org.id)
    assert caught.value.code == "secret_key_mismatch"


async def test_at_most_one_global_row_on_either_database(
    session: AsyncSession, settings: Settings
) -> None:
    await service.put_settings(session, settings, SERVER_SCOPE, config("global.example.com"))
    await session.commit()
    session.add(SMTPSettings(org_id=None, smtp_server="x", smtp_port=25, from_email="a@b.c"))
    with pytest.raises(IntegrityError):
        await session.flush()


async def test_the_seed_query_agrees(session: AsyncSession, settings: Settings) -> None:
    """The seed's SQL, run as written, picks the same row as ``resolve``."""
    org = await make_org(session)
    other = await make_org(session)
    await service.put_settings(session, settings, SERVER_SCOPE, config("global.example.com"))
    await service.put_settings(session, settings, OrgScope(org.id), config("own.example.com"))
    seed = text(
        "SELECT smtp_server FROM smtp_settings WHERE (org_id = :org OR org_id IS NULL) "
        "AND is_active = true ORDER BY org_id DESC NULLS LAST LIMIT 1"
    )
    for org_id in (org.id, other.id):
        expected = (await session.execute(seed, {"org": org_id})).scalar_one()
        assert (await service.resolve(session, settings, org_id)).host == expected
