"""The review page and its JSON API, as a router that the dashboard app mounts.

Routes::

    GET  /review                              the page (static/review.html, .js, .css)
    GET  /review/static/<name>                its script and style, from this package
    GET  /api/review/items?status=&model_version=&limit=
    GET  /api/review/progress                 counts, classes, the default reviewer
    GET  /api/review/items/<key>              one item with its label history
    GET  /api/review/items/<key>/image.png    its image, re-encoded as PNG
    POST /api/review/items/<key>/label        {"label", "by"?, "note"?, "relabel"?}
    POST /api/review/items/<key>/undo         {"by"?}

Every field is checked: an unknown key, class or field is a 4xx ``{"error", "message"}``.
A key from a request is only ever looked up in the database; the store and object key of an
image come from the item's row, never from the request.
"""

from __future__ import annotations

import getpass
import json
import threading
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response

from scones.errors import SconesError
from scones.review.images import ItemImageError, ItemImages
from scones.review.queue import (
    AlreadyLabelledError,
    InvalidReviewInputError,
    ReviewItemNotFoundError,
    ReviewQueue,
    check_item_id,
)

STATIC_FILES = {
    "review.js": "text/javascript; charset=utf-8",
    "review.css": "text/css; charset=utf-8",
}
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self'; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
MAX_BODY_BYTES = 4096  # a label, a name and a note
MAX_LIST = 500
LABEL_FIELDS = {"label", "by", "note", "relabel"}
UNDO_FIELDS = {"by"}


def default_reviewer() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name for this uid (containers)
        return "reviewer"


def _static(name: str) -> bytes:
    return resources.files("scones.review").joinpath("static", name).read_bytes()


class ReviewService:
    """One queue and image reader for the routes; opened on first use, shared by threads."""

    def __init__(
        self,
        db_path: str | Path,
        *,
        classes: list[str] | tuple[str, ...],
        s3_endpoint_url: str | None = None,
        reviewer: str | None = None,
    ) -> None:
        self.db_path = Path(db_path)
        self.classes = tuple(classes)
        self.images = ItemImages(s3_endpoint_url=s3_endpoint_url)
        self.reviewer = reviewer or default_reviewer()
        self._queue: ReviewQueue | None = None
        self._lock = threading.Lock()

    @property
    def queue(self) -> ReviewQueue:
        with self._lock:
            if self._queue is None:
                self._queue = ReviewQueue(self.db_path, classes=self.classes)
            return self._queue

    def close(self) -> None:
        with self._lock:
            if self._queue is not None:
                self._queue.close()
                self._queue = None


def _fields(body: bytes, allowed: set[str], required: set[str]) -> dict[str, Any]:
    """A JSON object with only ``allowed`` fields and all ``required`` ones, else 400."""
    if len(body) > MAX_BODY_BYTES:
        raise InvalidReviewInputError(f"request body is over {MAX_BODY_BYTES} bytes")
    try:
        value = json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise InvalidReviewInputError("request body is not JSON") from None
    if not isinstance(value, dict):
        raise InvalidReviewInputError("request body must be a JSON object")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise InvalidReviewInputError(f"unknown field(s) {unknown}; allowed: {sorted(allowed)}")
    missing = sorted(required - set(value))
    if missing:
        raise InvalidReviewInputError(f"missing field(s) {missing}")
    return value


def review_router(service: ReviewService) -> APIRouter:
    """The page and API routes over ``service``, for ``app.include_router``."""
    router = APIRouter()
    no_store = {"Cache-Control": "no-store"}

    def error(status: int, code: str, message: str) -> JSONResponse:
        return JSONResponse({"error": code, "message": message}, status_code=status)

    def answer(call: Callable[[], Any]) -> Any:
        """Run one queue operation; its errors become 4xx JSON naming what was wrong."""
        try:
            return JSONResponse(call(), headers=no_store)
        except ReviewItemNotFoundError as exc:
            return error(404, "not_found", str(exc))
        except AlreadyLabelledError as exc:
            return error(409, "already_labelled", str(exc))
        except InvalidReviewInputError as exc:
            return error(400, "invalid", str(exc))
        except SconesError as exc:  # the database is locked or unreadable
            return error(503, "unavailable", str(exc))

    @router.get("/review")
    def page() -> Response:
        return Response(
            _static("review.html"),
            media_type="text/html; charset=utf-8",
            headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY},
        )

    @router.get("/review/static/{name}")
    def static(name: str) -> Response:
        if name not in STATIC_FILES:
            return error(404, "not_found", f"no static file {name!r}")
        return Response(_static(name), media_type=STATIC_FILES[name])

    @router.get("/api/review/progress")
    def progress() -> Any:
        def body() -> dict[str, Any]:
            return {
                **service.queue.counts(),
                "classes": list(service.classes),
                "labels": list(service.queue.labels),
                "reviewer": service.reviewer,
            }

        return answer(body)

    @router.get("/api/review/items")
    def items(request: Request) -> Any:
        def body() -> dict[str, Any]:
            query = dict(request.query_params)
            unknown = sorted(set(query) - {"status", "model_version", "limit"})
            if unknown:
                raise InvalidReviewInputError(
                    f"unknown query parameter(s) {unknown}; allowed: limit, model_version, status"
                )
            limit_text = query.get("limit", "100")
            if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_LIST:
                raise InvalidReviewInputError(
                    f"invalid limit {limit_text!r}: a whole number from 1 to {MAX_LIST}"
                )
            found = service.queue.items(
                status=query.get("status"),
                model_version=query.get("model_version"),
                limit=int(limit_text),
            )
            return {"items": [_public(item.as_dict()) for item in found]}

        return answer(body)

    @router.get("/api/review/items/{key}")
    def item(key: str) -> Any:
        def body() -> dict[str, Any]:
            found = service.queue.get(check_item_id(key))
            history = [event.as_dict() for event in service.queue.history(found.item_id)]
            return {**_public(found.as_dict()), "history": history}

        return answer(body)

    @router.get("/api/review/items/{key}/image.png")
    def image(key: str) -> Response:
        try:
            found = service.queue.get(check_item_id(key))
            data = service.images.png(found)
        except ReviewItemNotFoundError as exc:
            return error(404, "not_found", str(exc))
        except InvalidReviewInputError as exc:
            return error(400, "invalid", str(exc))
        except ItemImageError as exc:
            return error(410, "image_gone", str(exc))
        # The key is the image's checksum: the bytes behind it never change.
        return Response(data, media_type="image/png", headers={"Cache-Control": "max-age=86400"})

    @router.post("/api/review/items/{key}/label")
    async def label(key: str, request: Request) -> Any:
        raw = await request.body()

        def body() -> dict[str, Any]:
            check_item_id(key)
            fields = _fields(raw, LABEL_FIELDS, {"label"})
            relabel = fields.get("relabel", False)
            if not isinstance(relabel, bool):
                raise InvalidReviewInputError(f"invalid relabel {relabel!r}: true or false")
            labelled = service.queue.label(
                key,
                fields["label"],
                by=fields.get("by", service.reviewer),
                note=fields.get("note"),
                relabel=relabel,
            )
            return {"item": _public(labelled.as_dict()), "progress": service.queue.counts()}

        return answer(body)

    @router.post("/api/review/items/{key}/undo")
    async def undo(key: str, request: Request) -> Any:
        raw = await request.body()

        def body() -> dict[str, Any]:
            check_item_id(key)
            fields = _fields(raw, UNDO_FIELDS, set())
            undone = service.queue.undo(key, by=fields.get("by", service.reviewer))
            return {"item": _public(undone.as_dict()), "progress": service.queue.counts()}

        return answer(body)

    return router


def _public(item: dict[str, Any]) -> dict[str, Any]:
    """An item for the page: where its image lives stays on the server."""
    image = item.pop("image")
    item["image_url"] = f"/api/review/items/{item['key']}/image.png"
    item["sha256"] = image["sha256"]
    return item


def create_review_app(service: ReviewService) -> FastAPI:
    """A FastAPI app with only the review routes (the dashboard mounts the same router)."""
    app = FastAPI(title="scones review", docs_url=None, redoc_url=None, openapi_url=None)
    app.include_router(review_router(service))
    return app
