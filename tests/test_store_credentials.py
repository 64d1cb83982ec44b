from cryptography.fernet import Fernet
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import tables
from gateway.crypto import Cipher
from gateway.store import credentials
from tests.support.factories import create_active_integration


async def test_secret_is_encrypted_in_the_row_and_versions_increase(engine: AsyncEngine) -> None:
    cipher = Cipher([Fernet.generate_key().decode()])
    async with engine.begin() as conn:
        integration = await create_active_integration(conn)
        await credentials.save_credential(
            conn, integration_id=integration.id, kind=credentials.SHOP_TOKEN, secret="shop-token-plain", cipher=cipher
        )
        await credentials.save_credential(
            conn, integration_id=integration.id, kind=credentials.SHOP_TOKEN, secret="shop-token-new", cipher=cipher
        )
        raw = (await conn.execute(select(tables.credential.c.secret))).scalar_one()
        found = await credentials.get_credential(
            conn, integration_id=integration.id, kind=credentials.SHOP_TOKEN, cipher=cipher
        )
    assert "shop-token" not in raw
    assert found is not None
    assert found.secret == "shop-token-new"
    assert found.version == 2
    assert "shop-token" not in repr(found)


async def test_reencrypt_all_lets_the_old_key_go(engine: AsyncEngine) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    async with engine.begin() as conn:
        integration = await create_active_integration(conn)
        await credentials.save_credential(
            conn,
            integration_id=integration.id,
            kind=credentials.EXACT_OAUTH,
            secret='{"refresh_token": "r"}',
            cipher=Cipher([old]),
        )
        assert await credentials.reencrypt_all(conn, cipher=Cipher([new, old])) == 1
        found = await credentials.get_credential(
            conn, integration_id=integration.id, kind=credentials.EXACT_OAUTH, cipher=Cipher([new])
        )
    assert found is not None
    assert found.secret == '{"refresh_token": "r"}'


async def test_other_integration_cannot_read_the_credential(engine: AsyncEngine) -> None:
    cipher = Cipher([Fernet.generate_key().decode()])
    async with engine.begin() as conn:
        a = await create_active_integration(conn)
        b = await create_active_integration(conn)
        await credentials.save_credential(
            conn, integration_id=a.id, kind=credentials.SHOP_TOKEN, secret="t", cipher=cipher
        )
        assert (
            await credentials.get_credential(conn, integration_id=b.id, kind=credentials.SHOP_TOKEN, cipher=cipher)
            is None
        )
        assert not await credentials.delete_credential(conn, integration_id=b.id, kind=credentials.SHOP_TOKEN)
