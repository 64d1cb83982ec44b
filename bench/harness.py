"""The proof's test bed: real processes on loopback, started and stopped by one object.

`Stack` owns a private redis-server (AOF on, so a restart keeps the queue as in docker-compose), a fresh database
(a new PostgreSQL database created and dropped on the local server, or a SQLite file), both sandboxes
(`python -m bench.sandboxes`), `gateway serve` and `gateway worker` as subprocesses whose environment points them at
each other. It starts, stops, kills and restarts them for the fault scenarios and reads their memory from /proc.
Every wait is bounded; nothing listens beyond 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from starlette.datastructures import Secret

from bench.sandboxes import PROOF_CLIENT_ID, PROOF_CLIENT_SECRET
from gateway.local_redis import free_port, reachable
from gateway.sandbox.mijnwebwinkel import SANDBOX_PARTNER_TOKEN
from gateway.settings import EXACT_COUNTRIES, Settings

DEFAULT_ADMIN_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
LOOPBACK = "127.0.0.1"
PROJECT_DIR = Path(__file__).resolve().parent.parent
START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0


class StackError(RuntimeError):
    """A process did not start or stop in time; the message names it and the tail of its log."""


@dataclass
class StackOptions:
    database: str = "postgres"  # "postgres" | "sqlite"
    admin_url: str = DEFAULT_ADMIN_URL
    exact_minutely: int = 600
    exact_daily: int = 1_000_000
    log_level: str = "INFO"
    workdir: Path | None = None
    keep_logs: bool = False


@dataclass
class Proc:
    name: str
    args: list[str]
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        handle = self.log.open("ab")
        self.process = subprocess.Popen(
            self.args, env=self.env, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        handle.close()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    async def stop(self, sig: int = signal.SIGTERM, grace: float = STOP_TIMEOUT) -> int | None:
        """Send `sig` and wait (bounded) for the exit; SIGKILL after `grace` seconds. Returns the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return await asyncio.to_thread(self.process.wait, grace)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return await asyncio.to_thread(self.process.wait, 10)

    def memory_kb(self) -> dict[str, int]:
        """VmRSS (now) and VmHWM (peak) of the process, in kB, from /proc/<pid>/status."""
        if not self.alive():
            return {}
        found: dict[str, int] = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(value.split()[0])
        return found


async def wait_for(check: Callable[[], Awaitable[bool]], *, within: float, what: str, proc: Proc | None = None) -> None:
    """Poll `check` until it says yes; raise StackError after `within` seconds or when `proc` dies."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc is not None and proc.process is not None and not proc.alive():
            raise StackError(f"{what}: process exited with {proc.process.returncode}\n{proc.tail()}")
        try:
            if await check():
                return
        except (httpx.HTTPError, OSError):
            pass
        await asyncio.sleep(0.1)
    raise StackError(f"{what}: not ready after {within:.0f} s\n{proc.tail() if proc else ''}")


@dataclass
class Stack:
    """One proof environment. `await stack.start()`; `await stack.stop()` (also on failure)."""

    options: StackOptions = field(default_factory=StackOptions)
    workdir: Path = field(init=False)
    ports: dict[str, int] = field(default_factory=dict)
    database_url: str = ""
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(48))
    fernet_key: str = field(default_factory=lambda: Fernet.generate_key().decode())
    procs: dict[str, Proc] = field(default_factory=dict)
    workers: list[Proc] = field(default_factory=list)
    worker_env: dict[str, str] = field(default_factory=dict)  # overrides every later `start_worker` uses
    _db_name: str = ""
    _worker_count: int = 0

    def __post_init__(self) -> None:
        self.workdir = self.options.workdir or Path(tempfile.mkdtemp(prefix="gateway-proof-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        for name in ("redis", "mww", "exact", "web"):
            self.ports[name] = free_port()

    # ------------------------------------------------------------------ addresses and settings
    @property
    def redis_url(self) -> str:
        return f"redis://{LOOPBACK}:{self.ports['redis']}/0"

    def url(self, name: str) -> str:
        return f"http://{LOOPBACK}:{self.ports[name]}"

    @property
    def settings(self) -> Settings:
        """The Settings the gateway processes run with (the proof uses them in-process for seeding and checks)."""
        return Settings(
            env="test",
            database_url=self.database_url,
            redis_url=self.redis_url,
            secret_key=Secret(self.secret_key),
            encryption_keys=(Secret(self.fernet_key),),
            public_url=self.url("web"),
            port=self.ports["web"],
            mww_base_url=f"{self.url('mww')}/v1",
            mww_partner_token=Secret(SANDBOX_PARTNER_TOKEN),
            exact_hosts=dict.fromkeys(EXACT_COUNTRIES, self.url("exact")),
            exact_client_id=PROOF_CLIENT_ID,
            exact_client_secret=Secret(PROOF_CLIENT_SECRET),
            exact_minutely_limit=self.options.exact_minutely,
            exact_daily_limit=self.options.exact_daily,
        )

    def gateway_env(self, **overrides: str) -> dict[str, str]:
        s = self.settings
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/tmp"),  # noqa: S108 - a fallback HOME for the child processes
            "PYTHONUNBUFFERED": "1",
            "GATEWAY_ENV": "test",
            "DATABASE_URL": s.database_url,
            "REDIS_URL": s.redis_url,
            "SECRET_KEY": self.secret_key,
            "ENCRYPTION_KEYS": self.fernet_key,
            "PUBLIC_URL": s.public_url,
            "HOST": LOOPBACK,
            "PORT": str(self.ports["web"]),
            "LOG_LEVEL": self.options.log_level,
            "LOG_FORMAT": "json",
            "MWW_BASE_URL": s.mww_base_url,
            "MWW_PARTNER_TOKEN": SANDBOX_PARTNER_TOKEN,
            "EXACT_CLIENT_ID": PROOF_CLIENT_ID,
            "EXACT_CLIENT_SECRET": PROOF_CLIENT_SECRET,
            "EXACT_MINUTELY_LIMIT": str(self.options.exact_minutely),
            "EXACT_DAILY_LIMIT": str(self.options.exact_daily),
            "SANDBOX": "false",
            **{f"EXACT_HOST_{cc.upper()}": self.url("exact") for cc in EXACT_COUNTRIES},
            # The machine's clock as this process has it: libfaketime's preload and offset when the suite runs with
            # its clock shifted (`make test-shifted`), so the gateway and this harness agree on the time. Redis gets
            # neither: it cannot run under libfaketime.
            **{name: os.environ[name] for name in ("LD_PRELOAD", "FAKETIME") if name in os.environ},
        }
        env.update(overrides)
        return env

    def _proc(self, name: str, args: list[str], env: dict[str, str] | None = None) -> Proc:
        proc = Proc(name, args, env or self.gateway_env(), self.workdir / f"{name}.log")
        self.procs[name] = proc
        return proc

    # ------------------------------------------------------------------ start / stop
    async def start(self, *, workers: int = 1) -> None:
        try:
            await self.start_redis()
            await self._create_database()
            await self._migrate()
            await asyncio.gather(self._start_sandbox("mww"), self._start_sandbox("exact"), self.start_web())
            for _ in range(workers):
                await self.start_worker()
        except BaseException:
            await self.stop()
            raise

    async def stop(self, *, keep_logs: bool = False) -> None:
        """Stop every process, drop the database, and remove the work directory unless its logs are wanted."""
        for proc in [*self.workers, *self.procs.values()]:
            if proc.alive():
                await proc.stop(signal.SIGTERM, grace=10)
        await self._drop_database()
        if not (keep_logs or self.options.keep_logs):
            shutil.rmtree(self.workdir, ignore_errors=True)

    async def start_redis(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise StackError("redis-server not found: apt-get install redis-server")
        directory = self.workdir / "redis"
        directory.mkdir(exist_ok=True)
        args = [binary, "--bind", LOOPBACK, "--port", str(self.ports["redis"]), "--dir", str(directory)]
        args += ["--save", "", "--appendonly", "yes", "--appendfsync", "everysec", "--daemonize", "no"]
        proc = self._proc("redis", args, {"PATH": os.environ.get("PATH", "")})
        proc.start()

        async def answers() -> bool:
            return await asyncio.to_thread(reachable, LOOPBACK, self.ports["redis"])

        await wait_for(answers, within=START_TIMEOUT, what="redis-server", proc=proc)

    async def restart_redis(self, *, down_for: float = 0.0) -> float:
        """SIGTERM redis (it writes its AOF), wait `down_for` seconds, start it again on the same port; returns the
        seconds it was down."""
        started = time.monotonic()
        await self.procs["redis"].stop(signal.SIGTERM)
        await asyncio.sleep(down_for)
        await self.start_redis()
        return time.monotonic() - started

    async def redis_command(self, *args: str) -> Any:
        from redis.asyncio import Redis

        client = Redis.from_url(self.redis_url)
        try:
            return await client.execute_command(*args)
        finally:
            await client.aclose()

    async def _create_database(self) -> None:
        if self.options.database == "sqlite":
            self.database_url = f"sqlite+aiosqlite:///{self.workdir / 'gateway.db'}"
            return
        self._db_name = f"gw_proof_{secrets.token_hex(4)}"
        await self._admin(f'CREATE DATABASE "{self._db_name}"')
        url = make_url(self.options.admin_url).set(database=self._db_name)
        self.database_url = url.render_as_string(hide_password=False)

    async def _drop_database(self) -> None:
        if self._db_name:
            await self._admin(f'DROP DATABASE IF EXISTS "{self._db_name}" WITH (FORCE)')
            self._db_name = ""

    async def _admin(self, statement: str, **params: str) -> Any:
        engine = create_async_engine(self.options.admin_url, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as conn:
                result = await conn.execute(text(statement), params)
                return result.all() if result.returns_rows else None
        finally:
            await engine.dispose()

    async def terminate_db_backends(self) -> int:
        """The stand-in for a PostgreSQL restart: end every connection to the proof's own database (others are
        untouched). Returns how many backends were ended."""
        if not self._db_name:
            return 0
        rows = await self._admin(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :name AND pid <> pg_backend_pid()",
            name=self._db_name,
        )
        return sum(1 for (ok,) in rows if ok)

    async def database_outage(self, *, seconds: float) -> int:
        """Close the proof database for `seconds`: new connections are refused (ALLOW_CONNECTIONS false binds even
        superusers) and every open one is terminated; then it opens again. Returns how many were terminated."""
        if not self._db_name:
            return 0
        await self._admin(f'ALTER DATABASE "{self._db_name}" ALLOW_CONNECTIONS false')
        try:
            ended = await self.terminate_db_backends()
            await asyncio.sleep(seconds)
        finally:
            await self._admin(f'ALTER DATABASE "{self._db_name}" ALLOW_CONNECTIONS true')
        return ended

    async def _migrate(self) -> None:
        proc = self._proc("migrate", [sys.executable, "-m", "gateway", "migrate"])
        proc.start()
        assert proc.process is not None
        code = await asyncio.to_thread(proc.process.wait, 120)
        if code != 0:
            raise StackError(f"gateway migrate exited with {code}\n{proc.tail()}")

    async def _start_sandbox(self, which: str) -> None:
        args = [sys.executable, "-m", "bench.sandboxes", which, "--port", str(self.ports[which])]
        if which == "exact":
            args += ["--minutely", str(self.options.exact_minutely), "--daily", str(self.options.exact_daily)]
        env = {**self.gateway_env(), "PYTHONPATH": str(PROJECT_DIR)}
        proc = self._proc(which, args, env)
        proc.start()
        probe = "/_proof/stats" if which == "mww" else "/_proof/documents?divisions=0"

        async def answers() -> bool:
            async with httpx.AsyncClient(timeout=2) as client:
                return (await client.get(self.url(which) + probe)).status_code == 200

        await wait_for(answers, within=START_TIMEOUT, what=f"sandbox {which}", proc=proc)

    async def start_web(self) -> None:
        proc = self._proc("web", [sys.executable, "-m", "gateway", "serve", "--port", str(self.ports["web"])])
        proc.start()

        async def ready() -> bool:
            async with httpx.AsyncClient(timeout=2) as client:
                return (await client.get(self.url("web") + "/readyz")).status_code == 200

        await wait_for(ready, within=START_TIMEOUT, what="gateway serve", proc=proc)

    async def start_worker(self, **env: str) -> Proc:
        """Start one more `gateway worker`; ready once it has written arq's health-check key."""
        self._worker_count += 1
        name = f"worker{self._worker_count}"
        proc = Proc(
            name, [sys.executable, "-m", "gateway", "worker"], self.gateway_env(**env), self.workdir / f"{name}.log"
        )
        await self.redis_command("DEL", "arq:queue:health-check")
        proc.start()
        self.workers.append(proc)

        async def healthy() -> bool:
            return bool(await self.redis_command("EXISTS", "arq:queue:health-check"))

        await wait_for(healthy, within=START_TIMEOUT, what=name, proc=proc)
        return proc

    @property
    def live_workers(self) -> list[Proc]:
        return [w for w in self.workers if w.alive()]

    async def stop_workers(self, sig: int = signal.SIGTERM) -> list[int | None]:
        return [await w.stop(sig) for w in self.live_workers]

    def memory(self) -> dict[str, dict[str, int]]:
        """VmRSS/VmHWM (kB) of web and every live worker."""
        found = {"web": self.procs["web"].memory_kb()} if "web" in self.procs else {}
        found.update({w.name: w.memory_kb() for w in self.live_workers})
        return found

    def logs(self) -> dict[str, str]:
        """Every gateway process's log text (for the secret scan)."""
        procs = [self.procs[n] for n in ("web", "migrate") if n in self.procs] + self.workers
        return {p.name: p.log.read_text(errors="replace") for p in procs if p.log.exists()}

    async def engine(self) -> AsyncEngine:
        from gateway.db import create_engine

        return create_engine(self.database_url)
