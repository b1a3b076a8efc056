"""A real HTTP server on loopback that answers from a script, for the classify tests."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Reply:
    status: int = 200
    body: bytes = b"[0.97, 0.03]"
    hold: bool = False  # answer only once the test is over: a client timeout must fire first
    content_type: str = "application/json"


@dataclass
class ScriptedEndpoint:
    """Answers POST /invocations with the scripted replies in turn (the last one repeats)."""

    replies: list[Reply]
    info: bytes | None = None
    requests: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None
    released: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> ScriptedEndpoint:
        script = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _answer(self, reply: Reply) -> None:
                if reply.hold:
                    script.released.wait(60)  # the bound only ends a forgotten hold
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                script.requests.append(("POST", self.path, dict(self.headers), body))
                index = min(len(script.requests_for("/invocations")) - 1, len(script.replies) - 1)
                self._answer(script.replies[index])

            def do_GET(self) -> None:
                script.requests.append(("GET", self.path, dict(self.headers), b""))
                if self.path == "/info" and script.info is not None:
                    self._answer(Reply(200, script.info))
                else:
                    self._answer(Reply(404, b'{"error": "not_found", "message": "no such path"}'))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        ).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self.server is not None
        self.released.set()
        self.server.shutdown()
        self.server.server_close()

    def requests_for(self, path: str) -> list[tuple[str, str, dict[str, str], bytes]]:
        return [request for request in self.requests if request[1] == path]
