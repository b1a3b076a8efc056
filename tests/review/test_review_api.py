"""The review JSON API on a real uvicorn server: listing, labelling, undo, every bad input."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image
from review_helpers import http, queue_with_photos

from browser_helpers import serving
from scones.review.api import ReviewService, create_review_app
from scones.review.queue import ReviewQueue

CLASSES = ("bicycle", "motorcycle")


@pytest.fixture
def api(tmp_path):
    queue_with_photos(tmp_path / "scones.db", tmp_path / "store", 5).close()
    service = ReviewService(tmp_path / "scones.db", classes=CLASSES, reviewer="dana")
    with serving(create_review_app(service)) as url:
        yield url, tmp_path / "scones.db"
    service.close()


def get_json(url: str):
    status, _, body = http(url)
    return status, json.loads(body)


def post_json(url: str, payload) -> tuple[int, dict]:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    status, _, body = http(url, raw)
    return status, json.loads(body)


def test_items_progress_image_label_and_undo(api):
    url, db = api
    status, listing = get_json(url + "/api/review/items?status=pending")
    assert status == 200 and len(listing["items"]) == 5
    first = listing["items"][0]
    assert first["confidence"] == pytest.approx(0.55)  # closest to the boundary first
    assert "store" not in json.dumps(first)  # where the image lives stays on the server
    status, headers, png = http(url + first["image_url"])
    assert status == 200 and headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(png)).size == (32, 32)

    status, body = post_json(url + f"/api/review/items/{first['key']}/label", {"label": "bicycle"})
    assert status == 200, body
    assert body["item"]["label"] == "bicycle" and body["item"]["labelled_by"] == "dana"
    assert body["progress"] == {"total": 5, "pending": 4, "labelled": 1, "by_label": {"bicycle": 1}}
    status, body = post_json(
        url + f"/api/review/items/{first['key']}/label",
        {"label": "neither", "by": "eve", "note": "a poster", "relabel": True},
    )
    assert status == 200 and body["item"]["label"] == "neither"
    status, detail = get_json(url + f"/api/review/items/{first['key']}")
    assert [(h["label"], h["by"]) for h in detail["history"]] == [
        ("bicycle", "dana"),
        ("neither", "eve"),
    ]
    status, body = post_json(url + f"/api/review/items/{first['key']}/undo", {})
    assert status == 200 and body["item"]["label"] == "bicycle"
    with ReviewQueue(db, classes=CLASSES) as queue:  # saved at once, in the database
        assert queue.get(first["key"]).label == "bicycle"
    status, progress = get_json(url + "/api/review/progress")
    assert progress["labelled"] == 1 and progress["labels"] == [*CLASSES, "neither"]


@pytest.mark.parametrize(
    ("path", "payload", "status", "message"),
    [
        ("/api/review/items/0123456789ab/label", {"label": "bicycle"}, 404, "no review item"),
        ("/api/review/items/..%2F..%2Fetc/label", {"label": "bicycle"}, 404, ""),
        ("/api/review/items/not-a-key/label", {"label": "bicycle"}, 400, "invalid review item"),
        ("/api/review/items/{key}/label", {"label": "truck"}, 400, "invalid label 'truck'"),
        ("/api/review/items/{key}/label", {"label": "bicycle", "who": "x"}, 400, "['who']"),
        ("/api/review/items/{key}/label", {}, 400, "missing field(s) ['label']"),
        ("/api/review/items/{key}/label", b"{not json", 400, "not JSON"),
        ("/api/review/items/{key}/label", ["bicycle"], 400, "JSON object"),
        ("/api/review/items/{key}/label", {"label": "bicycle", "relabel": "yes"}, 400, "relabel"),
        ("/api/review/items/{key}/label", {"label": "bicycle", "by": ""}, 400, "reviewer"),
        ("/api/review/items/{key}/label", {"label": "x" * 5000}, 400, "over 4096 bytes"),
        ("/api/review/items/{key}/undo", {}, 400, "no label to undo"),
        ("/api/review/items/{key}/undo", {"label": "x"}, 400, "unknown field"),
    ],
)
def test_every_bad_request_is_a_4xx_with_a_message_and_changes_nothing(
    api, path, payload, status, message
):
    url, db = api
    _, listing = get_json(url + "/api/review/items")
    key = listing["items"][0]["key"]
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    got, _, body = http(url + path.format(key=key), raw)
    assert got == status, body
    if message:
        answer = json.loads(body)
        assert message in answer["message"], answer
    with ReviewQueue(db, classes=CLASSES) as queue:
        assert queue.counts()["labelled"] == 0
        assert all(queue.history(item.item_id) == [] for item in queue.items())


def test_a_second_label_without_relabel_is_a_conflict(api):
    url, db = api
    _, listing = get_json(url + "/api/review/items")
    key = listing["items"][0]["key"]
    assert post_json(url + f"/api/review/items/{key}/label", {"label": "bicycle"})[0] == 200
    status, body = post_json(url + f"/api/review/items/{key}/label", {"label": "motorcycle"})
    assert status == 409 and "already labelled 'bicycle'" in body["message"]
    with ReviewQueue(db, classes=CLASSES) as queue:
        assert queue.get(key).label == "bicycle"


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("status=done", "status 'done'"),
        ("limit=0", "invalid limit"),
        ("limit=abc", "invalid limit"),
        ("order=random", "unknown query parameter(s) ['order']"),
    ],
)
def test_bad_listing_queries_are_400(api, query, message):
    url, _ = api
    status, body = get_json(url + f"/api/review/items?{query}")
    assert status == 400 and message in body["message"]


def test_the_page_and_its_assets_come_from_this_server_only(api):
    url, _ = api
    status, headers, page = http(url + "/review")
    assert status == 200 and "default-src 'self'" in headers["content-security-policy"]
    text = page.decode()
    assert "/review/static/review.js" in text and "http" not in text.replace("http-equiv", "")
    status, _, css = http(url + "/review/static/review.css")
    assert status == 200 and b"image-rendering: pixelated" in css
    assert http(url + "/review/static/..%2Fapi.py")[0] == 404
    assert http(url + "/review/static/secret.txt")[0] == 404
