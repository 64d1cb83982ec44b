"""`gateway demo` on a fresh directory: healthz and readyz answer 200 within 30 s, the worker's health key is fresh,
and SIGINT stops everything cleanly."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import redis as redis_sync

from gateway.local_redis import free_port
from gateway.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def test_demo_serves_health_and_readiness_within_30_seconds(tmp_path: Path, clean_state: Settings) -> None:
    port, mww_port, exact_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "DATABASE_", "SECRET_", "ENCRYPTION_"))}
    env["REDIS_URL"] = clean_state.redis_url
    env["PYTHONPATH"] = str(ROOT)
    started = time.monotonic()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway",
            "demo",
            "--port",
            str(port),
            "--mww-port",
            str(mww_port),
            "--exact-port",
            str(exact_port),
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        ready = None
        while time.monotonic() - started < 30:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                if health.status_code == 200 and ready.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        assert ready is not None, "demo never answered"
        assert ready.status_code == 200, ready.text
        client = redis_sync.Redis.from_url(clean_state.redis_url)
        deadline = time.monotonic() + 10
        health_key = None
        while time.monotonic() < deadline and health_key is None:
            health_key = client.get("arq:queue:health-check")
            time.sleep(0.2)
        assert health_key is not None, "worker health-check key missing"
        assert b"j_complete=" in health_key
        assert (tmp_path / "var" / "gateway.db").exists()
        assert json.loads((tmp_path / "var" / "dev-secrets.json").read_text())["secret_key"]
    finally:
        process.send_signal(signal.SIGINT)
        try:
            output, _ = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
    assert process.returncode == 0, output.decode()[-2000:]
    assert b"gateway demo stopped" in output
    assert b"DEV MODE" in output
    assert b"Demo login: demo@example.com" in output
