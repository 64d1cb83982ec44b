"""Upgrade an empty database to head, compare with tables.py, downgrade to base: on the run's backend."""

import asyncio
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import make_url

from gateway import migrations, tables
from gateway.db import create_engine
from tests.support.environment import database_backend, postgres_admin, postgres_admin_url


@pytest.fixture
def empty_database_url(tmp_path: Path, database_url: str) -> Iterator[str]:
    if database_backend() == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
        return
    admin = postgres_admin_url()
    name = f"gw_mig_{secrets.token_hex(4)}"
    asyncio.run(postgres_admin(admin, f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(postgres_admin(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _diff_and_tables(url: str) -> tuple[list[object], list[str]]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(lambda c: compare_metadata(MigrationContext.configure(c), tables.metadata))
            names = await conn.run_sync(lambda c: inspect(c).get_table_names())
    finally:
        await engine.dispose()
    return diff, names


def test_upgrade_to_head_matches_tables_and_downgrade_to_base_empties(empty_database_url: str) -> None:
    migrations.upgrade(empty_database_url)
    diff, names = asyncio.run(_diff_and_tables(empty_database_url))
    assert diff == []
    assert set(names) >= {t.name for t in tables.metadata.sorted_tables}
    migrations.downgrade(empty_database_url, "base")
    _, names = asyncio.run(_diff_and_tables(empty_database_url))
    assert set(names) <= {"alembic_version"}


def test_upgrade_twice_is_a_no_op(empty_database_url: str) -> None:
    migrations.upgrade(empty_database_url)
    migrations.upgrade(empty_database_url)
    diff, _ = asyncio.run(_diff_and_tables(empty_database_url))
    assert diff == []
