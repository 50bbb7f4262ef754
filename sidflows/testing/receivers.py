"""Local receivers on loopback: an HTTP endpoint for Apprise ``json://`` URLs and an
SMTP server (aiosmtpd) for ``mailto://`` URLs.

They stand in for a unit's chat webhook and mail server in the tests, the
benchmark and ``sidflows demo --local-receivers``; they can refuse, fail or hang
on demand so the dispatcher's retries are exercised against real sockets.

    python -m sidflows.testing.receivers http   # prints the port; GET /count answers
"""

from __future__ import annotations

import json
import re
import socket
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

Mode = Literal["ok", "error", "hang"]
KEY = re.compile(r"\[sidflows ([^\]]+)\]")


@dataclass
class Received:
    """What a receiver has accepted: (route path or recipient, subject, body)."""

    messages: list[tuple[str, str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, where: str, subject: str, body: str) -> None:
        with self.lock:
            self.messages.append((where, subject, body))

    def keys(self) -> Counter[str]:
        """How many copies of each outbox key arrived."""
        with self.lock:
            return Counter(m.group(1) for _, _, b in self.messages if (m := KEY.search(b)))

    def __len__(self) -> int:
        with self.lock:
            return len(self.messages)


class HttpReceiver:
    """A JSON webhook on 127.0.0.1: ``json://127.0.0.1:<port>/<route>``."""

    def __init__(self, port: int = 0, *, hang_seconds: float = 30.0) -> None:
        self.received = Received()
        self.mode: Mode = "ok"
        self.hang_seconds = hang_seconds
        self.requests = 0
        self._port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._port

    def url(self, path: str = "hook") -> str:
        return f"json://127.0.0.1:{self.port}/{path}"

    def start(self) -> HttpReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                receiver.requests += 1
                length = int(self.headers.get("Content-Length", 0))
                payload = self.rfile.read(length)
                if receiver.mode == "hang":
                    time.sleep(receiver.hang_seconds)
                    self.close_connection = True
                    return
                if receiver.mode == "error":
                    self._answer(500, b"receiver told to fail")
                    return
                try:
                    data = json.loads(payload)
                except ValueError:
                    self._answer(400, b"not JSON")
                    return
                receiver.received.add(
                    self.path, str(data.get("title", "")), str(data.get("message", ""))
                )
                self._answer(200, b"ok")

            def do_GET(self) -> None:
                self._answer(200, json.dumps({"count": len(receiver.received)}).encode())

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = _QuietServer(("127.0.0.1", self._port), Handler)
        self._server.daemon_threads = True
        self._port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the socket: connections are refused until ``start`` again (same port)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (timed out, was killed) is part of the tests, not news."""


class SmtpReceiver:
    """A mail server on 127.0.0.1: ``mailto://127.0.0.1:<port>?from=...&to=...``."""

    def __init__(self, port: int = 0) -> None:
        self.received = Received()
        self.port = port or _free_port()
        self._controller: Any = None

    def url(self, to: str = "staff@unit.test") -> str:
        return f"mailto://127.0.0.1:{self.port}?from=sidflows@unit.test&to={to}"

    def start(self) -> SmtpReceiver:
        # aiosmtpd comes with the test extra: imported only when a mail receiver starts.
        from aiosmtpd.controller import Controller  # noqa: PLC0415

        received = self.received

        class Handler:
            async def handle_DATA(  # noqa: N802 (the name aiosmtpd calls)
                self, server: Any, session: Any, envelope: Any
            ) -> str:
                message = message_from_bytes(envelope.content, policy=policy.default)
                part = message.get_body(preferencelist=("plain", "html"))
                body = part.get_content() if part is not None else ""
                received.add(",".join(envelope.rcpt_tos), str(message["subject"]), body)
                return "250 OK"

        self._controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main(argv: list[str]) -> int:
    """Run an HTTP receiver in the foreground (the benchmark's receiver process)."""
    if argv[:1] != ["http"]:
        sys.stderr.write("usage: python -m sidflows.testing.receivers http [PORT]\n")
        return 2
    receiver = HttpReceiver(int(argv[1]) if len(argv) > 1 else 0).start()
    sys.stdout.write(f"{receiver.port}\n")
    sys.stdout.flush()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        receiver.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
