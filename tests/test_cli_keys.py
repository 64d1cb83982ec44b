"""`gateway keys rotate`: every stored secret re-encrypted under the newest key, after which the old key can go."""

from __future__ import annotations

import functools
import json

import anyio
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import tables
from gateway.cli import EXIT_FAILURE, EXIT_OK
from gateway.crypto import Cipher
from gateway.settings import Settings
from gateway.store import credentials
from tests.support.factories import create_active_integration, run_cli

pytestmark = pytest.mark.anyio
SECRETS = {
    credentials.SHOP_TOKEN: "shop-token-0001",
    credentials.EXACT_OAUTH: '{"access_token": "at-1", "refresh_token": "rt-1"}',
    credentials.WEBHOOK_SIGNING_SECRET: "whsec-0001",
}


async def gateway(settings: Settings, *argv: str, keys: list[str]) -> int:
    run = functools.partial(run_cli, settings, list(argv), ENCRYPTION_KEYS=",".join(keys))
    return await anyio.to_thread.run_sync(run)


async def store_secrets(engine: AsyncEngine, key: str, integrations: int = 2) -> list[int]:
    ids = []
    async with engine.begin() as conn:
        for _ in range(integrations):
            integration = await create_active_integration(conn)
            ids.append(integration.id)
            for kind, secret in SECRETS.items():
                await credentials.save_credential(
                    conn, integration_id=integration.id, kind=kind, secret=secret, cipher=Cipher([key])
                )
    return ids


async def test_rotate_rewrites_every_secret_so_the_new_key_alone_reads_them(
    engine: AsyncEngine, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    ids = await store_secrets(engine, old)
    async with engine.connect() as conn:
        before = set((await conn.execute(select(tables.credential.c.secret))).scalars())

    assert await gateway(settings, "keys", "rotate", "--json", keys=[new, old]) == EXIT_OK

    out = capsys.readouterr()
    assert {r["kind"]: r["secrets"] for r in json.loads(out.out)} == dict.fromkeys(SECRETS, 2)
    assert "older key(s) can now be removed" in out.err
    async with engine.connect() as conn:
        after = set((await conn.execute(select(tables.credential.c.secret))).scalars())
        assert not before & after
        for integration_id in ids:
            for kind, secret in SECRETS.items():
                found = await credentials.get_credential(
                    conn, integration_id=integration_id, kind=kind, cipher=Cipher([new])
                )
                assert found is not None
                assert found.secret == secret
    # With the old key dropped, a later rotation still reads everything.
    assert await gateway(settings, "keys", "rotate", keys=[new]) == EXIT_OK


async def test_rotate_without_the_old_key_changes_nothing_and_fails(
    engine: AsyncEngine, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    await store_secrets(engine, old, integrations=1)
    async with engine.connect() as conn:
        before = sorted((await conn.execute(select(tables.credential.c.secret))).scalars())

    assert await gateway(settings, "keys", "rotate", keys=[new]) == EXIT_FAILURE

    err = capsys.readouterr().err
    assert "nothing rotated" in err
    assert not any(secret in err for secret in SECRETS.values())
    async with engine.connect() as conn:
        assert sorted((await conn.execute(select(tables.credential.c.secret))).scalars()) == before
