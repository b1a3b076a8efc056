"""Downloading the archive: a real HTTP server on 127.0.0.1 serves a small CIFAR archive."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cifar_builder import build_cifar_archive
from stage_helpers import CLASSES, make_store, snapshot

from conftest import free_port
from scones.data.download import fetch
from scones.data.errors import ChecksumError, DataError, DownloadError
from scones.data.layout import read_dataset_info
from scones.data.stage import stage

NAME = "cifar-100-python.tar.gz"


@dataclass
class ArchiveServer:
    """Serves ``payload`` at /<NAME> with Range support; can cut responses off mid-way."""

    payload: bytes
    cut_off_responses: int = 0  # how many responses stop half-way (then the connection closes)
    honour_range: bool = True
    requests: list[dict[str, str]] = field(default_factory=list)
    url: str = ""

    def handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # keep test output quiet
                pass

            def do_GET(self) -> None:
                server.requests.append(dict(self.headers))
                if self.path != f"/{NAME}":
                    self.send_error(404, "Not Found")
                    return
                start = 0
                range_header = self.headers.get("Range")
                if range_header and server.honour_range:
                    start = int(range_header.removeprefix("bytes=").rstrip("-"))
                    if start >= len(server.payload):
                        self.send_response(416)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header(
                        "Content-Range",
                        f"bytes {start}-{len(server.payload) - 1}/{len(server.payload)}",
                    )
                else:
                    self.send_response(200)
                body = server.payload[start:]
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Content-Type", "application/gzip")
                self.end_headers()
                if server.cut_off_responses > 0:
                    server.cut_off_responses -= 1
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        return Handler


@pytest.fixture
def archive_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("archive") / NAME
    build_cifar_archive(path, train_per_class={"bicycle": 60, "motorcycle": 60})
    return path.read_bytes()


@pytest.fixture
def server(archive_bytes: bytes) -> Iterator[ArchiveServer]:
    state = ArchiveServer(archive_bytes)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), state.handler())
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/{NAME}"
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


def md5_of(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_stage_downloads_verifies_and_skips_a_verified_copy(
    server: ArchiveServer, tmp_path: Path
) -> None:
    store = make_store("local", tmp_path)
    options = dict(classes=CLASSES, val_fraction=0.1, seed=0, cache_dir=tmp_path / "cache")
    report = stage(server.url, store, md5=md5_of(server.payload), **options)
    assert report.source_kind == "download" and report.total("test") == 10
    assert (tmp_path / "cache" / NAME).read_bytes() == server.payload
    assert not (tmp_path / "cache" / f"{NAME}.part").exists()
    info = read_dataset_info(store)
    assert info["source"] == {
        "kind": "download",
        "uri": server.url,
        "md5": md5_of(server.payload),
        "md5_verified": True,
    }
    assert len(server.requests) == 1
    stage(server.url, store, md5=md5_of(server.payload), **options)
    assert len(server.requests) == 1  # the verified cached copy was used


def test_cut_off_download_resumes_with_range(server: ArchiveServer, tmp_path: Path) -> None:
    server.cut_off_responses = 1
    path = fetch(server.url, tmp_path, md5=md5_of(server.payload))
    assert path.read_bytes() == server.payload
    assert len(server.requests) == 2
    assert "Range" not in server.requests[0]
    assert server.requests[1]["Range"] == f"bytes={len(server.payload) // 2}-"


def test_partial_file_from_an_earlier_run_is_resumed(server: ArchiveServer, tmp_path: Path) -> None:
    (tmp_path / f"{NAME}.part").write_bytes(server.payload[:1000])
    path = fetch(server.url, tmp_path, md5=md5_of(server.payload))
    assert path.read_bytes() == server.payload
    assert [r.get("Range") for r in server.requests] == ["bytes=1000-"]


def test_server_ignoring_range_restarts_from_zero(server: ArchiveServer, tmp_path: Path) -> None:
    server.honour_range = False
    (tmp_path / f"{NAME}.part").write_bytes(b"stale bytes that are not the archive")
    path = fetch(server.url, tmp_path, md5=md5_of(server.payload))
    assert path.read_bytes() == server.payload


def test_complete_partial_file_is_verified_not_downloaded_again(
    server: ArchiveServer, tmp_path: Path
) -> None:
    (tmp_path / f"{NAME}.part").write_bytes(server.payload)
    assert fetch(server.url, tmp_path, md5=md5_of(server.payload)).read_bytes() == server.payload
    assert len(server.requests) == 1  # answered 416: the .part already holds it all


def test_truncated_download_fails_and_keeps_the_part_for_resuming(
    server: ArchiveServer, tmp_path: Path
) -> None:
    server.cut_off_responses = 100
    store = make_store("local", tmp_path / "s")
    with pytest.raises(DownloadError, match="was cut off 3 times") as caught:
        stage(
            server.url,
            store,
            classes=CLASSES,
            val_fraction=0.1,
            seed=0,
            md5=md5_of(server.payload),
            cache_dir=tmp_path / "cache",
        )
    assert "\n" not in str(caught.value)
    part = tmp_path / "cache" / f"{NAME}.part"
    assert 0 < part.stat().st_size < len(server.payload)
    assert not (tmp_path / "cache" / NAME).exists()
    assert snapshot(store) == {}
    kept = part.stat().st_size
    server.cut_off_responses = 0  # the next run resumes and finishes
    assert fetch(server.url, tmp_path / "cache", md5=md5_of(server.payload)).is_file()
    assert server.requests[-1]["Range"] == f"bytes={kept}-"


def test_unreachable_url(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/{NAME}"  # nothing listens there
    store = make_store("local", tmp_path)
    with pytest.raises(DownloadError, match=rf"cannot reach {url}"):
        stage(
            url, store, classes=CLASSES, val_fraction=0.1, seed=0, md5="0" * 32, cache_dir=tmp_path
        )
    assert snapshot(store) == {}


def test_http_error_names_the_status(server: ArchiveServer, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch(server.url.replace(NAME, "missing.tar.gz"), tmp_path, md5="0" * 32)


def test_md5_mismatch_deletes_the_download(server: ArchiveServer, tmp_path: Path) -> None:
    with pytest.raises(ChecksumError, match=f"expected {'f' * 32}"):
        fetch(server.url, tmp_path, md5="f" * 32)
    assert list(tmp_path.iterdir()) == []


def test_cached_copy_that_no_longer_verifies_is_fetched_again(
    server: ArchiveServer, tmp_path: Path
) -> None:
    (tmp_path / NAME).write_bytes(b"corrupted")
    assert fetch(server.url, tmp_path, md5=md5_of(server.payload)).read_bytes() == server.payload
    assert len(server.requests) == 1


def test_other_urls_need_an_md5(server: ArchiveServer, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"^md5 is required"):
        stage(
            server.url,
            make_store("local", tmp_path),
            classes=CLASSES,
            val_fraction=0.1,
            seed=0,
            md5=None,
            cache_dir=tmp_path,
        )
    assert server.requests == []
