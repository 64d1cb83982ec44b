"""After the proof: look for every secret it knows in the whole Redis keyspace and in every gateway process's log.

The secrets: each shop token, webhook URL key and signing secret the proof made, every Exact access and refresh
token ever stored (read back from the database, renewals included), the partner token, the Exact client secret,
SECRET_KEY and the encryption key. Redis must carry only job names and ids (docs/reliability.md).
"""

from __future__ import annotations

import json
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import select

from bench.runs import ProofContext
from bench.sandboxes import PROOF_CLIENT_SECRET
from gateway import tables
from gateway.sandbox.mijnwebwinkel import SANDBOX_PARTNER_TOKEN
from gateway.store import credentials


async def known_secrets(ctx: ProofContext) -> dict[str, str]:
    """{secret: what it is}, including whatever the database holds now (renewed Exact tokens)."""
    found = dict.fromkeys(ctx.factory.secrets_made, "a shop token, webhook key, signing secret or Exact token")
    cipher = ctx.factory.cipher
    async with ctx.engine.connect() as conn:
        rows = (await conn.execute(select(tables.credential.c.kind, tables.credential.c.secret))).all()
    for kind, encrypted in rows:
        plain = cipher.decrypt(encrypted)
        if kind == credentials.EXACT_OAUTH:
            pair = json.loads(plain)
            found[pair["access_token"]] = "an Exact access token"
            found[pair["refresh_token"]] = "an Exact refresh token"
        else:
            found[plain] = kind.replace("_", " ")
    found[SANDBOX_PARTNER_TOKEN] = "the partner token"
    found[PROOF_CLIENT_SECRET] = "the Exact client secret"
    found[ctx.stack.secret_key] = "SECRET_KEY"
    found[ctx.stack.fernet_key] = "the encryption key"
    return {secret: what for secret, what in found.items() if len(secret) >= 8}


async def redis_dump(url: str) -> tuple[int, bytes]:
    """(number of keys, every key and value concatenated), whatever the value types."""
    client = Redis.from_url(url)
    chunks: list[bytes] = []
    keys = 0
    try:
        async for key in client.scan_iter(count=1000):
            keys += 1
            chunks.append(key)
            kind = (await client.type(key)).decode()
            if kind == "string":
                chunks.append(await client.get(key) or b"")
            elif kind == "list":
                chunks += await client.lrange(key, 0, -1)
            elif kind == "set":
                chunks += list(await client.smembers(key))
            elif kind == "zset":
                chunks += [member for member, _ in await client.zrange(key, 0, -1, withscores=True)]
            elif kind == "hash":
                for field, value in (await client.hgetall(key)).items():
                    chunks += [field, value]
            elif kind == "stream":
                for _, entry in await client.xrange(key):
                    for field, value in entry.items():
                        chunks += [field, value]
    finally:
        await client.aclose()
    return keys, b"\n".join(chunks)


async def scan_for_secrets(ctx: ProofContext) -> dict[str, Any]:
    secrets = await known_secrets(ctx)
    keys, dump = await redis_dump(ctx.stack.redis_url)
    logs = ctx.stack.logs()
    leaks = []
    for secret, what in secrets.items():
        if secret.encode() in dump:
            leaks.append(f"{what} in Redis")
        leaks += [f"{what} in the {name} log" for name, text in logs.items() if secret in text]
    return {
        "secrets_checked": len(secrets),
        "redis_keys": keys,
        "log_lines": sum(text.count("\n") for text in logs.values()),
        "leaks": sorted(set(leaks)),
    }
