"""`scones dashboard`: a live page over the data capture and the executions database.

A FastAPI app served by uvicorn. The page (static/index.html + dashboard.js) polls
``GET /api/state`` and draws its charts as inline SVG with its own small script: no CDN, no
network beyond this server. Traffic numbers come from the same streaming monitor as
``scones monitor`` (over a sliding window), recomputed when the capture changes; the gallery
serves images decoded from the capture, re-encoded as PNG thumbnails.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from scones.dashboard import console, pages
from scones.errors import SconesError, UsageError
from scones.images import DEFAULT_MAX_PIXELS, ImageDecodeError, decode_image
from scones.monitor.capture_reader import (
    decode_input_bytes,
    list_capture_files,
    read_record_at,
)
from scones.monitor.runner import BaselineSource, MonitorOptions, resolve_baseline, run_monitor
from scones.store import StoreError, open_store
from scones.times import parse_optional_moment
from scones.workflow.executions import (
    ExecutionNotFoundError,
    ExecutionStore,
    InvalidExecutionInputError,
    PageQuery,
)

STATIC_FILES = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
}
# No external anything: scripts, styles and images come from this server only.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
MAX_POINTS = 2000  # confidence points sent to the page per refresh
THUMBNAIL_PIXELS = 256
BASELINE_REFRESH_SECONDS = 300.0  # pick up a newly promoted production model


@dataclass
class DashboardConfig:
    monitor: MonitorOptions  # capture, endpoint, threshold, model and drift thresholds
    db_path: Path
    window: timedelta | None = timedelta(hours=24)
    refresh_seconds: float = 5.0
    executions_limit: int = 50


@dataclass
class _Snapshot:
    signature: tuple[tuple[str, int], ...]
    computed_at: float
    state: dict[str, Any]
    gallery: dict[str, tuple[str, int]] = field(default_factory=dict)


class DashboardState:
    """Computes what the page shows; caches it until the capture or the window changes."""

    def __init__(self, config: DashboardConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._snapshot: _Snapshot | None = None
        self._baseline: BaselineSource | None = None
        self._baseline_at = 0.0
        self._store = open_store(
            config.monitor.capture_uri, s3_endpoint_url=config.monitor.s3_endpoint_url
        )
        self._baseline_source()  # a bad --model fails now, before the server starts

    def _baseline_source(self) -> BaselineSource:
        now = time.monotonic()
        if self._baseline is None or now - self._baseline_at > BASELINE_REFRESH_SECONDS:
            self._baseline = resolve_baseline(self.config.monitor)
            self._baseline_at = now
        return self._baseline

    def traffic(self) -> _Snapshot:
        with self._lock:
            since = (
                datetime.now(UTC) - self.config.window if self.config.window is not None else None
            )
            files = list_capture_files(self._store, self.config.monitor.endpoint_name, since=since)
            signature = tuple((f.key, f.size) for f in files)
            snapshot = self._snapshot
            fresh = snapshot is not None and time.monotonic() - snapshot.computed_at < 60.0
            if snapshot is not None and snapshot.signature == signature and fresh:
                return snapshot
            options = replace(self.config.monitor, since=since)
            result = run_monitor(options, baseline=self._baseline_source())
            summary = result.summary
            passed, under = result.aggregator.confidence_points()
            gallery = {
                item["event_id"]: (item["file_key"], item["line_number"])
                for item in summary["gallery"]
            }
            state = {
                "records": summary["records"],
                "threshold": summary["threshold"],
                "class_names": summary["class_names"],
                "class_mix": summary["class_mix"],
                "time_range": summary["time_range"],
                "series": summary["series"],
                "confidence_histogram": summary["confidence_histogram"],
                "drift": summary["drift"],
                "model": summary["model"],
                "reader": {
                    key: summary["reader"][key]
                    for key in ("files_read", "malformed_lines", "files_failed")
                },
                "points": {
                    "passed": _thin(passed, MAX_POINTS),
                    "under": _thin(under, MAX_POINTS),
                },
                "gallery": [
                    {
                        "event_id": item["event_id"],
                        "inference_id": item["inference_id"],
                        "time": item["time"],
                        "confidence": item["confidence"],
                        "predicted_class": item["predicted_class"],
                        "image_url": f"/api/images/{item['event_id']}.png"
                        if item["decodable"]
                        else None,
                    }
                    for item in summary["gallery"]
                ],
                "message": summary.get("message"),
            }
            self._snapshot = _Snapshot(signature, time.monotonic(), state, gallery)
            return self._snapshot

    def executions(self) -> dict[str, Any]:
        """Recent executions from the workflow's database (through its public API)."""
        db_path = self.config.db_path
        if not Path(db_path).is_file():
            return {
                "available": False,
                "message": f"no executions database at {db_path} yet (run the workflow first)",
                "items": [],
            }
        with ExecutionStore(db_path) as executions:
            records = executions.list(limit=self.config.executions_limit)
        items = [
            {
                "execution_id": r.execution_id,
                "name": r.name,
                "state_machine": r.state_machine,
                "status": r.status,
                "error": r.error,
                "cause": (r.cause or "")[:500] or None,
                "started_at": _iso(r.started_at),
                "stopped_at": _iso(r.stopped_at),
            }
            for r in records
        ]
        counts: dict[str, int] = {}
        for record in records:
            counts[record.status] = counts.get(record.status, 0) + 1
        return {"available": True, "message": None, "items": items, "counts": counts}

    def state(self) -> dict[str, Any]:
        snapshot = self.traffic()
        return {
            "generated_at": _iso(datetime.now(UTC)),
            "refresh_seconds": self.config.refresh_seconds,
            "endpoint_name": self.config.monitor.endpoint_name,
            "capture_uri": self._store.uri,
            "window_hours": (
                self.config.window.total_seconds() / 3600 if self.config.window else None
            ),
            "traffic": snapshot.state,
            "executions": self.executions(),
        }

    def image_png(self, event_id: str) -> bytes | None:
        """A failed request's image as a PNG thumbnail; None when it is not in the gallery."""
        snapshot = self._snapshot or self.traffic()
        # Only records listed in the gallery can be fetched: the id never becomes a key.
        location = snapshot.gallery.get(event_id)
        if location is None:
            return None
        try:
            record = read_record_at(self._store, *location)
            image = decode_image(decode_input_bytes(record), max_pixels=DEFAULT_MAX_PIXELS)
        except (ValueError, ImageDecodeError, StoreError):
            return None
        image.thumbnail((THUMBNAIL_PIXELS, THUMBNAIL_PIXELS))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return buffer.getvalue()


def _thin(points: list[tuple[float, float, int]], limit: int) -> list[list[float]]:
    """At most ``limit`` points, evenly spaced in time order (the page draws them all)."""
    if len(points) > limit:
        step = len(points) / limit
        points = [points[int(i * step)] for i in range(limit)]
    return [[round(t, 3), round(c, 5), k] for t, c, k in points]


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _static(name: str) -> bytes:
    return resources.files("scones.dashboard").joinpath("static", name).read_bytes()


def create_app(config: DashboardConfig) -> Any:
    """The dashboard's FastAPI app."""
    from fastapi import Depends, FastAPI, HTTPException
    from fastapi.responses import HTMLResponse, JSONResponse, Response

    state = DashboardState(config)
    app = FastAPI(title="scones dashboard", docs_url=None, redoc_url=None, openapi_url=None)

    @app.middleware("http")
    async def security_headers(request: Any, call_next: Any) -> Any:
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    @app.get("/")
    def index() -> Response:
        return Response(_static("index.html"), media_type="text/html; charset=utf-8")

    @app.get("/static/{name}")
    def static(name: str) -> Response:
        if name not in STATIC_FILES:
            raise HTTPException(404, detail=f"no static file {name!r}")
        return Response(_static(name), media_type=STATIC_FILES[name])

    @app.get("/api/state")
    def api_state() -> JSONResponse:
        try:
            body = state.state()
        except SconesError as exc:  # the store is unreachable, the database locked, ...
            return JSONResponse(
                {"error": "unavailable", "message": str(exc)},
                status_code=503,
                headers={"Cache-Control": "no-store"},
            )
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    @app.get("/api/images/{event_id}.png")
    def api_image(event_id: str) -> Response:
        data = state.image_png(event_id)
        if data is None:
            return JSONResponse(
                {"error": "not_found", "message": f"no failed image with event id {event_id!r}"},
                status_code=404,
            )
        return Response(data, media_type="image/png", headers={"Cache-Control": "max-age=3600"})

    def page_query(params: dict[str, str]) -> tuple[PageQuery, dict[str, str]]:
        filters = {
            name: str(params.get(name, "")).strip()
            for name in ("status", "state_machine", "since", "until", "q", "before", "after")
        }
        filters["oldest"] = "1" if params.get("oldest") == "1" else ""
        limit_text = str(params.get("limit", "50"))
        if not limit_text.isdigit():
            raise InvalidExecutionInputError(f"invalid limit {limit_text!r}: a whole number")
        query = PageQuery(
            status=filters["status"].upper() or None,
            state_machine=filters["state_machine"] or None,
            since=parse_optional_moment(filters["since"], parameter="since"),
            until=parse_optional_moment(filters["until"], parameter="until"),
            search=filters["q"] or None,
            before=filters["before"] or None,
            after=filters["after"] or None,
            oldest=filters["oldest"] == "1",
            limit=int(limit_text),
        )
        query.check()
        return query, filters

    def bad_request(exc: Exception) -> JSONResponse:
        return JSONResponse({"error": "bad_request", "message": str(exc)}, status_code=400)

    def not_found(exc: Exception) -> JSONResponse:
        return JSONResponse({"error": "not_found", "message": str(exc)}, status_code=404)

    # The list's query parameters, all text: page_query checks them and names a bad one.
    def filters_of(
        status: str = "",
        state_machine: str = "",
        since: str = "",
        until: str = "",
        q: str = "",
        before: str = "",
        after: str = "",
        oldest: str = "",
        limit: str = "50",
    ) -> dict[str, str]:
        return dict(locals())

    @app.get("/executions")
    def executions_list(params: dict[str, str] = Depends(filters_of)) -> Response:
        try:
            query, filters = page_query(params)
        except UsageError as exc:
            return bad_request(exc)
        data = console.executions_page(config.db_path, query)
        html = pages.executions_html(data, filters, config.refresh_seconds)
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    @app.get("/api/executions")
    def api_executions(params: dict[str, str] = Depends(filters_of)) -> JSONResponse:
        try:
            query, _ = page_query(params)
        except UsageError as exc:
            return bad_request(exc)
        data = console.executions_page(config.db_path, query)
        data["rows_html"] = pages.executions_rows(data["items"])
        data["generated_at"] = _iso(datetime.now(UTC))
        return JSONResponse(data, headers={"Cache-Control": "no-store"})

    @app.get("/executions/{ref}/detail.json")
    def execution_detail(ref: str) -> JSONResponse:
        try:
            record = console.find_execution(config.db_path, ref)
        except (ExecutionNotFoundError, console.ConsoleError) as exc:
            return not_found(exc)
        return JSONResponse(console.execution_detail(record), headers={"Cache-Control": "no-store"})

    @app.get("/executions/{ref}/image.png")
    def execution_image(ref: str, size: str = "full") -> Response:
        if size not in ("full", "thumb"):
            return bad_request(ValueError(f"invalid size {size!r}: full or thumb"))
        pixels = console.THUMBNAIL_PIXELS if size == "thumb" else console.IMAGE_PIXELS
        try:
            record = console.find_execution(config.db_path, ref)
            data = console.image_png(
                record,
                pixels,
                config.monitor.store_uri,
                s3_endpoint_url=config.monitor.s3_endpoint_url,
            )
        except (ExecutionNotFoundError, console.ConsoleError) as exc:
            return not_found(exc)
        return Response(data, media_type="image/png", headers={"Cache-Control": "max-age=300"})

    @app.get("/executions/{ref}")
    def execution_page(ref: str) -> Response:
        try:
            record = console.find_execution(config.db_path, ref)
        except (ExecutionNotFoundError, console.ConsoleError) as exc:
            return not_found(exc)
        view = console.execution_view(record)
        html = pages.execution_html(
            console.execution_detail(record, view),
            view.svg,
            view.graph_error,
            console.event_rows(record),
        )
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    @app.get("/state-machines/{name}")
    def state_machine_page(name: str) -> Response:
        try:
            view = console.state_machine_view(config.db_path, name)
        except console.ConsoleError as exc:
            return not_found(exc)
        return HTMLResponse(pages.state_machine_html(view))

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def serve_dashboard(
    config: DashboardConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 8090,
    announce: Callable[[str], None] | None = None,
) -> None:
    """Serve the dashboard until interrupted; ``announce`` gets its URL once it is set up."""
    import uvicorn

    app = create_app(config)  # resolves --model and opens the capture: errors surface here
    if announce is not None:
        announce(f"dashboard on http://{host}:{port}/ (Ctrl-C to stop)")
    uvicorn.run(app, host=host, port=port, log_level="warning")
