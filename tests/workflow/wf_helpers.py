"""The real endpoint as a subprocess, and a flaky HTTP proxy in front of it, on loopback."""

from __future__ import annotations

import http.client
import os
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from conftest import REPO_ROOT, free_port

# A one-Task machine whose Lambda echoes its payload.
ECHO = {
    "StartAt": "Echo",
    "States": {
        "Echo": {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": "echo", "Payload.$": "$"},
            "OutputPath": "$.Payload",
            "End": True,
        }
    },
}


@contextmanager
def running_endpoint(model_dir: Path, home: Path) -> Iterator[str]:
    """`scones serve --model <model_dir>` on a free port; yields its URL once /ping is 200."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCONES_")}
    env["SCONES_HOME"] = str(home)
    log = (home / "serve.log").open("wb")
    process = subprocess.Popen(
        [
            str(REPO_ROOT / ".venv/bin/scones"),
            "serve",
            "--model",
            str(model_dir),
            "--port",
            str(port),
            "--no-capture",
            "--log-level",
            "warning",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"scones serve exited: {(home / 'serve.log').read_text()}")
            try:
                with urllib.request.urlopen(url + "/ping", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"scones serve not ready: {(home / 'serve.log').read_text()}")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


class FlakyProxy:
    """Answers the first ``failures`` POST /invocations with 503, then forwards to ``target``."""

    def __init__(self, target: str, failures: int) -> None:
        self.target = target
        self.failures = failures
        self.posts = 0
        self.forwarded = 0
        self._lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FlakyProxy:
        proxy = self
        host, port = self.target.removeprefix("http://").split(":")

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _reply(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _forward(self, method: str, body: bytes | None) -> None:
                connection = http.client.HTTPConnection(host, int(port), timeout=10)
                try:
                    headers = {"Content-Type": self.headers.get("Content-Type", "")}
                    connection.request(method, self.path, body=body, headers=headers)
                    response = connection.getresponse()
                    data = response.read()
                    content_type = response.getheader("Content-Type", "application/json")
                    self._reply(response.status, data, content_type)
                finally:
                    connection.close()

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with proxy._lock:
                    proxy.posts += 1
                    fail = proxy.posts <= proxy.failures
                if fail:
                    self._reply(
                        503,
                        b'{"error": "unavailable", "message": "warming up"}',
                        "application/json",
                    )
                    return
                proxy.forwarded += 1
                self._forward("POST", body)

            def do_GET(self) -> None:
                self._forward("GET", None)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        ).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()
