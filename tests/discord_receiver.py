"""Local stand-ins for webhooks (Discord, PagerDuty, ...): record what each POST carried.

Served from a thread on 127.0.0.1. A Discord receiver's path stands for the webhook's token,
which must never appear in any output. ``status`` is what it answers (Discord answers 204;
set 404 or 429 to see how a refused post is reported).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Post:
    """One request the receiver took."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class WebhookReceiver:
    """Records every POST (path, headers, JSON body); answers ``status`` (STATUS at first)."""

    PATH = "/hook"
    STATUS = 200

    def __init__(self) -> None:
        self.posts: list[Post] = []
        self.status = self.STATUS
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.lock:
                    receiver.posts.append(Post(self.path, dict(self.headers), json.loads(raw)))
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}{self.PATH}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def received(self) -> list[Post]:
        with self.lock:
            return list(self.posts)

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The JSON bodies received so far, in order."""
        return [post.body for post in self.received()]

    @property
    def paths(self) -> list[str]:
        return [post.path for post in self.received()]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class DiscordReceiver(WebhookReceiver):
    """A Discord webhook: answers 204, as Discord does."""

    PATH = TOKEN_PATH = "/api/webhooks/1234/unit-" + "webhook-token-5e2a"
    STATUS = 204
