"""The workflow console: executions as the Step Functions console shows them.

What the pages and ``scones executions show --graph`` need, computed from the executions
database: a page of executions with each one's image, class and confidence; one execution's
graph coloured by its path, each state's runs and the event history; a state machine's counts
and per-state figures. Everything read from executions is untrusted and leaves here either as
JSON or escaped into HTML by :mod:`scones.dashboard.pages`.
"""

from __future__ import annotations

import functools
import io
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from scones.dashboard.graph import GraphvizError, definition_dot, inline_svg, render
from scones.dashboard.trace import NOT_REACHED, ExecutionTrace, StateTrace, trace_execution
from scones.errors import SconesError, UsageError
from scones.functions.serialize_image_data import (
    SerializeError,
    bucket_store_uri,
    check_key,
    max_image_bytes,
    read_image,
)
from scones.images import DEFAULT_MAX_PIXELS, ImageDecodeError, decode_image
from scones.store import StoreError, open_store
from scones.workflow.definitions import STATE_MACHINE_NAMES, load_definition
from scones.workflow.executions import (
    ExecutionRecord,
    ExecutionStore,
    ExecutionSummary,
    PageQuery,
)
from scones.workflow.runs import lambda_message, outcome_of

THUMBNAIL_PIXELS = 96
IMAGE_PIXELS = 512
MAX_PAYLOAD_CHARS = 20_000  # of one state input or output sent to the page
STATS_EXECUTIONS = 100  # recent executions behind a state machine's per-state figures
OUTCOMES_CACHED = 4096  # failed executions whose class and confidence stay in memory
GRAPH_FORMATS = {".svg": "svg", ".png": "png"}


class ConsoleError(SconesError):
    """The console cannot show what was asked (no definition, no image, ...)."""


def definition_for(state_machine: str) -> dict[str, Any] | None:
    """The definition of one of our state machines, by the name its executions carry."""
    for definition_name, machine_name in STATE_MACHINE_NAMES.items():
        if machine_name == state_machine:
            return load_definition(definition_name)
    return None


def _clip(text: str | None, limit: int = MAX_PAYLOAD_CHARS) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return text[:limit] + f"… ({len(text) - limit} more characters)"


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat(timespec="milliseconds")


# --- the executions list -------------------------------------------------------------------


# (database, execution id) -> (class, confidence) of failed executions: finished ones never
# change, and their class is in the history, which costs a decompression to read.
_FAILED_OUTCOMES: dict[tuple[str, str], tuple[str | None, float | None]] = {}
_OUTCOMES_LOCK = threading.Lock()


def _failed_outcome(db: ExecutionStore, execution_id: str) -> tuple[str | None, float | None]:
    key = (str(db.db_path), execution_id)
    with _OUTCOMES_LOCK:
        cached = _FAILED_OUTCOMES.get(key)
    if cached is not None:
        return cached
    outcome = outcome_of(db.get(execution_id))
    with _OUTCOMES_LOCK:
        if len(_FAILED_OUTCOMES) >= OUTCOMES_CACHED:
            _FAILED_OUTCOMES.pop(next(iter(_FAILED_OUTCOMES)))  # the oldest entry
        _FAILED_OUTCOMES[key] = (outcome.top_class, outcome.confidence)
    return outcome.top_class, outcome.confidence


def row_of(db: ExecutionStore, summary: ExecutionSummary) -> dict[str, Any]:
    """One execution as a list row: status, image key, class and confidence, duration."""
    top_class = confidence = None
    if summary.status == "SUCCEEDED":
        outcome = outcome_of(_as_record(summary))
        top_class, confidence = outcome.top_class, outcome.confidence
    elif summary.status != "RUNNING":
        top_class, confidence = _failed_outcome(db, summary.execution_id)
    key = summary.input.get("s3_key") if isinstance(summary.input, dict) else None
    keys = summary.input.get("keys") if isinstance(summary.input, dict) else None
    return {
        "execution_id": summary.execution_id,
        "name": summary.name,
        "state_machine": summary.state_machine,
        "status": summary.status,
        "s3_key": key if isinstance(key, str) else None,
        "keys": len(keys) if isinstance(keys, list) else None,
        "top_class": top_class,
        "confidence": confidence,
        "error": summary.error,
        "started_at": _iso(summary.started_at),
        "stopped_at": _iso(summary.stopped_at),
        "seconds": summary.seconds,
    }


def _as_record(summary: ExecutionSummary) -> ExecutionRecord:
    return ExecutionRecord(
        summary.execution_id,
        summary.name,
        summary.state_machine,
        summary.status,
        summary.input,
        summary.output,
        summary.error,
        summary.cause,
        summary.started_at,
        summary.stopped_at,
        [],
    )


def executions_page(db_path: Path, query: PageQuery) -> dict[str, Any]:
    """A page of executions as the list shows them, with its newer/older cursors."""
    if not Path(db_path).is_file():
        return {"available": False, "items": [], "newer": None, "older": None, "machines": []}
    with ExecutionStore(db_path) as db:
        page = db.page(query)
        return {
            "available": True,
            "items": [row_of(db, summary) for summary in page.items],
            "newer": page.newer,
            "older": page.older,
            "machines": list(db.state_machines()),
        }


# --- one execution -------------------------------------------------------------------------


@dataclass
class ExecutionView:
    record: ExecutionRecord
    definition: dict[str, Any] | None
    trace: ExecutionTrace
    svg: str | None  # the inline <svg> element, None without a known definition
    node_paths: dict[str, str]  # SVG node id -> state path
    graph_error: str | None = None  # why there is no graph (no definition, no Graphviz)


def find_execution(db_path: Path, ref: str) -> ExecutionRecord:
    if not Path(db_path).is_file():
        raise ConsoleError(f"no executions database at {db_path}")
    with ExecutionStore(db_path) as db:
        return db.find(ref)


def execution_view(record: ExecutionRecord, *, draw: bool = True) -> ExecutionView:
    definition = definition_for(record.state_machine)
    trace = trace_execution(record.history, record.status, definition)
    svg, node_paths, error = None, dict[str, str](), None
    if definition is None:
        error = f"No definition of state machine {record.state_machine!r} to draw."
    else:
        dot, node_paths = definition_dot(definition, trace)
        if draw:
            try:
                svg = inline_svg(render(dot, "svg"))
            except GraphvizError as exc:  # the page still shows the states and history
                error = str(exc)
    return ExecutionView(record, definition, trace, svg, node_paths, error)


def execution_graph(record: ExecutionRecord, fmt: str) -> bytes:
    """The execution's graph, coloured by its path, as SVG or PNG bytes."""
    definition = definition_for(record.state_machine)
    if definition is None:
        raise ConsoleError(
            f"no definition of state machine {record.state_machine!r} to draw "
            f"(known: {', '.join(sorted(STATE_MACHINE_NAMES.values()))})"
        )
    trace = trace_execution(record.history, record.status, definition)
    return render(definition_dot(definition, trace)[0], fmt)


def write_execution_graph(record: ExecutionRecord, out: Path) -> Path:
    """``scones executions show REF --graph OUT``: the graph to OUT (.svg or .png)."""
    fmt = GRAPH_FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise UsageError(f"--graph {str(out)!r} must end in .svg or .png")
    data = execution_graph(record, fmt)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    partial.write_bytes(data)
    partial.replace(out)  # never a half-written picture
    return out


def _run_json(run: Any) -> dict[str, Any]:
    return {
        "status": run.status,
        "entered_at": run.entered_at,
        "exited_at": run.exited_at,
        "seconds": run.seconds(),
        "retries": run.retries,
        "input": _clip(run.input),
        "output": _clip(run.output),
        "error": run.error,
        "cause": _clip(lambda_message(run.cause)),
    }


def _state_json(trace: StateTrace) -> dict[str, Any]:
    return {
        "path": trace.path,
        "status": trace.status,
        "entered": trace.entered,
        "failed": trace.failed,
        "caught": trace.caught,
        "retries": trace.retries,
        "seconds": round(trace.seconds, 6),
        "runs": [_run_json(run) for run in trace.runs],
    }


def execution_detail(record: ExecutionRecord, view: ExecutionView | None = None) -> dict[str, Any]:
    """The execution page's data: states with their runs, graph node ids, events."""
    view = view or execution_view(record, draw=False)
    states = {path: _state_json(trace) for path, trace in view.trace.states.items()}
    for node_path in view.node_paths.values():
        states.setdefault(node_path, {"path": node_path, "status": NOT_REACHED, "runs": []})
    return {
        "execution_id": record.execution_id,
        "name": record.name,
        "state_machine": record.state_machine,
        "status": record.status,
        "error": record.error,
        "cause": lambda_message(record.cause),
        "started_at": _iso(record.started_at),
        "stopped_at": _iso(record.stopped_at),
        "s3_key": _single_key(record),
        "nodes": view.node_paths,
        "states": states,
    }


def _single_key(record: ExecutionRecord) -> str | None:
    key = record.input.get("s3_key") if isinstance(record.input, dict) else None
    return key if isinstance(key, str) else None


def event_rows(record: ExecutionRecord) -> list[dict[str, Any]]:
    """The history as table rows: id, type, state, time, and error or cause when any."""
    rows = []
    for event in record.history:
        details = next(
            (v for k, v in event.items() if k.endswith("EventDetails") and isinstance(v, dict)),
            {},
        )
        detail = " ".join(
            f"{key}={lambda_message(details[key]) if key == 'cause' else details[key]}"
            for key in ("error", "cause")
            if details.get(key)
        )
        rows.append(
            {
                "id": event.get("id"),
                "type": str(event.get("type", "")),
                "state": str(details.get("name", "")),
                "timestamp": str(event.get("timestamp", "")),
                "detail": _clip(detail, 500) or "",
            }
        )
    return rows


def image_png(
    record: ExecutionRecord,
    pixels: int,
    store_uri: str | None = None,
    *,
    s3_endpoint_url: str | None = None,
) -> bytes:
    """The execution's image (its input's s3_bucket/s3_key) as a PNG of at most ``pixels``.

    A bucket mapped by ``SCONES_BUCKET_<NAME>`` reads from that store, as the workflow reads
    it; otherwise from ``store_uri`` (the dashboard's store), else as the serializer would.
    """
    data = record.input if isinstance(record.input, dict) else {}
    bucket, key = data.get("s3_bucket"), data.get("s3_key")
    if not isinstance(bucket, str) or not isinstance(key, str):
        raise ConsoleError(f"execution {record.name!r} names no single image")
    try:
        uri = bucket_store_uri(bucket) or store_uri
        if uri is None:
            raw = read_image(bucket, key)
        else:
            store = open_store(uri, s3_endpoint_url=s3_endpoint_url)
            limit = max_image_bytes()
            if store.head(check_key(key)).size > limit:
                raise ConsoleError(f"image {key!r} is over the {limit}-byte limit")
            raw = store.get(key)
        image = decode_image(raw, max_pixels=DEFAULT_MAX_PIXELS)
    except (SerializeError, ImageDecodeError, StoreError, ValueError) as exc:
        raise ConsoleError(f"cannot show image {key!r}: {exc}") from None
    image.thumbnail((pixels, pixels))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# --- one state machine ---------------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def _definition_svg(state_machine: str) -> str | None:
    """The uncoloured graph of one of our definitions (package files: drawn once)."""
    definition = definition_for(state_machine)
    if definition is None:
        return None
    return inline_svg(render(definition_dot(definition)[0], "svg"))


def _definition_svg_or_error(state_machine: str) -> tuple[str | None, str | None]:
    try:
        return _definition_svg(state_machine), None
    except GraphvizError as exc:
        return None, str(exc)


def state_machine_view(db_path: Path, name: str) -> dict[str, Any]:
    """Counts by status, and per state over the recent executions: reached, failed, retried."""
    definition = definition_for(name)
    counts: dict[str, int] = {}
    per_state: dict[str, dict[str, Any]] = {}
    recent = 0
    if Path(db_path).is_file():
        with ExecutionStore(db_path) as db:
            counts = db.count_by_status(name)
            records = db.list(state_machine=name, limit=STATS_EXECUTIONS)
        recent = len(records)
        for record in records:
            trace = trace_execution(record.history, record.status, definition)
            for path, state in trace.states.items():
                figures = per_state.setdefault(
                    path, {"reached": 0, "failed": 0, "caught": 0, "retries": 0, "seconds": 0.0}
                )
                figures["reached"] += 1
                figures["failed"] += state.failed > 0
                figures["caught"] += state.caught > 0
                figures["retries"] += state.retries
                figures["seconds"] += state.seconds
    if definition is None and not counts:
        raise ConsoleError(f"no state machine {name!r}")
    svg, error = _definition_svg_or_error(name) if definition is not None else (None, None)
    return {
        "name": name,
        "counts": counts,
        "recent": recent,
        "per_state": per_state,
        "svg": svg,
        "graph_error": error,
    }
