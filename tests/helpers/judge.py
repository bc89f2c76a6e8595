"""A local OpenAI-compatible chat-completions endpoint for judge tests (no network beyond 127.0.0.1).

    class Judge(ChatJudge):
        def reply(self, body: dict) -> str:
            return "90"

    with serve(Judge) as url:   # "http://127.0.0.1:<port>/v1"
        ...
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any


class ChatJudge(BaseHTTPRequestHandler):
    """Answers every POST with one chat completion whose content is ``reply(body)``."""

    def reply(self, body: dict[str, Any]) -> str:
        raise NotImplementedError

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        out = json.dumps({"choices": [{"message": {"content": self.reply(body)}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def serve(handler: type[ChatJudge]) -> Iterator[str]:
    """Serve ``handler`` on a free local port in a daemon thread; yields the base URL, shuts down on exit."""
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
