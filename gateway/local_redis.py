"""A private `redis-server` on a free loopback port, for the demo and the tests on a machine with none running."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass

INSTALL_HINT = "redis-server not found: install it with `apt-get install redis-server` (or `brew install redis`)"


class RedisUnavailable(RuntimeError):
    pass


@dataclass
class PrivateRedis:
    url: str
    port: int
    process: subprocess.Popen[bytes]
    directory: str

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
        shutil.rmtree(self.directory, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def reachable(host: str, port: int, timeout: float = 0.5) -> bool:
    """A Redis answers PING on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def start_private_redis(port: int | None = None, *, appendonly: bool = False) -> PrivateRedis:
    """Start redis-server on 127.0.0.1:`port` (a free one by default) and wait until it answers."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RedisUnavailable(INSTALL_HINT)
    port = port or free_port()
    directory = tempfile.mkdtemp(prefix="gateway-redis-")
    args = [
        binary,
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--dir",
        directory,
        "--save",
        "",
        "--appendonly",
        "yes" if appendonly else "no",
        "--daemonize",
        "no",
        "--loglevel",
        "warning",
    ]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if reachable("127.0.0.1", port):
            return PrivateRedis(url=f"redis://127.0.0.1:{port}/0", port=port, process=process, directory=directory)
        if process.poll() is not None:
            break
        time.sleep(0.05)
    process.kill()
    shutil.rmtree(directory, ignore_errors=True)
    raise RedisUnavailable(f"redis-server did not start on port {port}")
