"""A local SMTP sink: just enough SMTP to accept messages, keeping each one's raw text for the test to read."""

from __future__ import annotations

import contextlib
import socketserver
import threading
from collections.abc import Iterator

from gateway.local_redis import free_port


class _SmtpSink(socketserver.StreamRequestHandler):
    """Greeting, EHLO, MAIL, RCPT, DATA, QUIT."""

    def handle(self) -> None:
        self.wfile.write(b"220 sink ESMTP\r\n")
        while line := self.rfile.readline():
            command = line.decode().strip().upper()
            if command.startswith("EHLO"):
                self.wfile.write(b"250-sink\r\n250 8BITMIME\r\n")
            elif command == "DATA":
                self.wfile.write(b"354 go ahead\r\n")
                body = b""
                while not body.endswith(b"\r\n.\r\n"):
                    body += self.rfile.readline()
                self.server.received.append(body.decode())  # type: ignore[attr-defined]
                self.wfile.write(b"250 queued\r\n")
            elif command == "QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                self.wfile.write(b"250 ok\r\n")


@contextlib.contextmanager
def smtp_sink() -> Iterator[tuple[int, list[str]]]:
    """(port, received messages) of a sink on 127.0.0.1 for the duration of the block."""
    port = free_port()
    server = socketserver.ThreadingTCPServer(("127.0.0.1", port), _SmtpSink)
    server.received = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield port, server.received  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()
