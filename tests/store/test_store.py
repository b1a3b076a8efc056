"""The object store contract, run against both backends: a folder and S3 over HTTP (moto)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from scones.store import InvalidKeyError, ObjectNotFoundError, ObjectStore, StoreError, open_store
from scones.store.local import LocalStore


@pytest.fixture(params=["local", "file-uri", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        return open_store(str(tmp_path / "store"))
    if request.param == "file-uri":
        return open_store((tmp_path / "store").as_uri())
    bucket = request.getfixturevalue("s3_bucket")
    return open_store(f"s3://{bucket}/some/prefix")


def test_put_get_exists_delete(store: ObjectStore) -> None:
    assert not store.exists("train/a.png")
    store.put("train/a.png", b"hello", content_type="image/png")
    assert store.exists("train/a.png")
    assert store.get("train/a.png") == b"hello"
    assert store.head("train/a.png").size == 5
    store.delete("train/a.png")
    assert not store.exists("train/a.png")
    store.delete("train/a.png")  # deleting a missing key is not an error, as in S3


def test_get_missing_names_key(store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFoundError, match=r"nothing\.png"):
        store.get("nothing.png")


def test_list_by_prefix_is_sorted_and_string_prefix(store: ObjectStore) -> None:
    for key in ["train/b.png", "train/a.png", "train.lst", "test/c.png", "trainer/x"]:
        store.put(key, key.encode())
    assert list(store.keys("train/")) == ["train/a.png", "train/b.png"]
    assert list(store.keys("train")) == ["train.lst", "train/a.png", "train/b.png", "trainer/x"]
    assert sorted(store.keys()) == sorted(
        ["train/b.png", "train/a.png", "train.lst", "test/c.png", "trainer/x"]
    )
    assert list(store.keys("nothing/")) == []


def test_streaming_round_trip(store: ObjectStore) -> None:
    payload = bytes(range(256)) * 20_000  # 5 MB: more than one multipart chunk
    store.put_stream("big/blob.bin", io.BytesIO(payload))
    with store.open("big/blob.bin") as stream:
        assert stream.read() == payload


def test_open_gives_a_binary_file_for_every_reader(store: ObjectStore) -> None:
    """read(n), readinto and line iteration, as tarfile, shutil and csv readers use them."""
    payload = b"first line\n" + bytes(range(256)) * 1000 + b"\nlast line\n"
    store.put("blob.bin", payload)
    with store.open("blob.bin") as stream:
        assert stream.read(6) == b"first "
        buffer = bytearray(5)
        assert stream.readinto(buffer) == 5
        assert bytes(buffer) == b"line\n"
        rest = stream.read()
    assert rest == payload[11:]
    with store.open("blob.bin") as stream:
        lines = list(stream)
    assert lines[0] == b"first line\n" and lines[-1] == b"last line\n"
    assert b"".join(lines) == payload
    assert stream.closed


def test_copy_and_delete_prefix(store: ObjectStore) -> None:
    store.put("staging/x/a", b"1")
    store.put("staging/x/b", b"2")
    store.copy("staging/x/a", "final/a")
    assert store.get("final/a") == b"1"
    assert store.delete_prefix("staging/") == 2
    assert list(store.keys("staging/")) == []


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("/etc/passwd", "absolute"),
        ("../outside", "'..'"),
        ("train/../../x", "'..'"),
        ("a\x00b", "NUL"),
        ("a\\b", "backslash"),
        ("", "empty"),
        ("a//b", "empty segment"),
    ],
)
def test_bad_keys_are_rejected_with_the_key_named(
    store: ObjectStore, key: str, reason: str
) -> None:
    with pytest.raises(InvalidKeyError, match=reason) as info:
        store.put(key, b"x")
    assert repr(key) in str(info.value)
    with pytest.raises(InvalidKeyError):
        store.get(key)


def test_local_writes_are_atomic_and_leave_no_partial_files(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)

    class Exploding(io.RawIOBase):
        def readinto(self, buffer: bytearray) -> int:
            raise OSError("disk unplugged")

    store.put("obj", b"old")
    with pytest.raises(OSError, match="unplugged"):
        store.put_stream("obj", Exploding())  # type: ignore[arg-type]
    assert store.get("obj") == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["obj"]


def test_local_symlink_cannot_escape(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "store"
    root.mkdir()
    (root / "link").symlink_to(outside)
    store = LocalStore(root)
    with pytest.raises(InvalidKeyError, match="outside"):
        store.put("link/file", b"x")
    assert not (outside / "file").exists()


def test_unknown_scheme_is_refused() -> None:
    with pytest.raises(StoreError, match="gs"):
        open_store("gs://bucket/x")


def test_missing_bucket_is_a_clear_error(s3_bucket: str) -> None:
    store = open_store("s3://no-such-bucket-here/x")
    with pytest.raises(StoreError, match="no-such-bucket-here"):
        store.put("k", b"v")
