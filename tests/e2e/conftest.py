"""Fixtures of the end-to-end tests: a webhook server on loopback for the agents' tools."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread

import pytest
from support import free_port


@dataclass
class Webhook:
    """A webhook server on loopback: records requests, answers after `delay_s`."""

    answer: dict = field(default_factory=lambda: {"status": "shipped", "eta": "Friday"})
    delay_s: float = 0.0
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            hook.received.append((dict(self.headers), body))
            time.sleep(hook.delay_s)
            answer = json.dumps(hook.answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: object) -> None:
            pass

    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    Thread(target=server.serve_forever, daemon=True).start()
    hook.url = f"http://127.0.0.1:{port}/orders"
    yield hook
    server.shutdown()
    server.server_close()
