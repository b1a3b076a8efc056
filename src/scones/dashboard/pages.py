"""The console's HTML pages, written on the server with every value escaped.

Execution data (names, keys, errors, causes, payloads) is untrusted: it reaches HTML only
through :func:`esc` (or as JSON that the page's script puts in ``textContent``). The pages
load only ``/static/`` assets of this package; the Content-Security-Policy forbids the rest.
"""

from __future__ import annotations

from html import escape
from typing import Any
from urllib.parse import quote, urlencode

from scones.dashboard.trace import CAUGHT, FAILED, NOT_REACHED, RUNNING, SUCCEEDED
from scones.workflow.executions import STATUSES

LEGEND = (
    (SUCCEEDED, "Succeeded"),
    (FAILED, "Failed"),
    (CAUGHT, "Caught error"),
    (RUNNING, "In progress"),
    (NOT_REACHED, "Not reached"),
)


def esc(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def execution_href(execution_id: str) -> str:
    return "/executions/" + quote(execution_id, safe="")


def _layout(title: str, body: str, *, page: str) -> str:
    return (
        "<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{esc(title)} · scones console</title><link rel='icon' href='data:,'>"
        "<link rel='stylesheet' href='/static/console.css'>"
        "<script src='/static/console.js' defer></script></head>"
        f"<body data-page='{esc(page)}'><nav><a href='/'>Dashboard</a> "
        "<a href='/executions'>Executions</a></nav>"
        f"{body}</body></html>"
    )


def _legend() -> str:
    items = "".join(
        f"<span><i class='swatch {status.replace('_', '-')}'></i>{esc(label)}</span>"
        for status, label in LEGEND
    )
    return f"<div class='legend'>{items}</div>"


def _fmt_seconds(seconds: Any) -> str:
    if not isinstance(seconds, int | float):
        return ""
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def executions_rows(items: list[dict[str, Any]]) -> str:
    """The table body of the executions list (also what live refresh swaps in)."""
    rows = []
    for item in items:
        href = execution_href(item["execution_id"])
        thumb = (
            f"<img class='thumb' alt='' loading='lazy' src='{esc(href)}/image.png?size=thumb'>"
            if item.get("s3_key")
            else ""
        )
        image = item.get("s3_key") or (f"{item['keys']} keys (Map)" if item.get("keys") else "")
        confidence = item.get("confidence")
        rows.append(
            f"<tr class='execution' data-status='{esc(item['status'])}'>"
            f"<td class='status {esc(item['status'])}'>{esc(item['status'])}</td>"
            f"<td><a class='name' href='{esc(href)}'>{esc(item['name'])}</a>"
            f"<div class='muted small'>{esc(item['state_machine'])}</div></td>"
            f"<td class='thumbcell'>{thumb}</td>"
            f"<td class='key'>{esc(image)}</td>"
            f"<td class='class'>{esc(item.get('top_class'))}</td>"
            f"<td>{'' if confidence is None else f'{confidence:.3f}'}</td>"
            f"<td>{esc(item.get('error'))}</td>"
            f"<td>{esc(item.get('started_at'))}</td>"
            f"<td>{esc(_fmt_seconds(item.get('seconds')))}</td></tr>"
        )
    if not rows:
        rows.append("<tr><td colspan='9' class='muted'>No executions match.</td></tr>")
    return "".join(rows)


def _select(name: str, options: list[str], chosen: str | None, blank: str) -> str:
    items = [f"<option value=''>{esc(blank)}</option>"]
    items += [
        f"<option value='{esc(o)}'{' selected' if o == chosen else ''}>{esc(o)}</option>"
        for o in options
    ]
    return f"<select name='{name}'>{''.join(items)}</select>"


def executions_html(data: dict[str, Any], filters: dict[str, str], refresh: float) -> str:
    """/executions: filters, the page of executions, newer/older links."""
    base = {k: v for k, v in filters.items() if v and k not in ("before", "after", "oldest")}
    links = []
    for label, extra, enabled in (
        ("« Newest", {}, data.get("newer") is not None),
        ("‹ Newer", {"after": data.get("newer") or ""}, data.get("newer") is not None),
        ("Older ›", {"before": data.get("older") or ""}, data.get("older") is not None),
        ("Oldest »", {"oldest": "1"}, data.get("older") is not None),
    ):
        if enabled:
            links.append(f"<a href='/executions?{esc(urlencode({**base, **extra}))}'>{label}</a>")
        else:
            links.append(f"<span class='muted'>{label}</span>")
    message = (
        ""
        if data.get("available")
        else ("<p class='muted'>No executions database yet: run the workflow first.</p>")
    )
    inputs = "".join(
        f"<input name='{name}' placeholder='{hint}' value='{esc(filters.get(name))}'>"
        for name, hint in (
            ("since", "since (30m, 2h, ISO time)"),
            ("until", "until (ISO time)"),
            ("q", "name or object key"),
        )
    )
    machines = data.get("machines", [])
    form = (
        "<form class='filters' method='get' action='/executions'>"
        f"{_select('status', list(STATUSES), filters.get('status'), 'any status')}"
        f"{_select('state_machine', machines, filters.get('state_machine'), 'any state machine')}"
        f"{inputs}<button type='submit'>Filter</button></form>"
    )
    live = "" if any(filters.get(k) for k in ("before", "after", "oldest")) else "true"
    body = (
        "<header><h1>Executions</h1>"
        f"<span id='updated' class='muted'></span></header>{form}{message}"
        f"<table id='executions' data-live='{live}' data-refresh='{refresh}' "
        f"data-query='{esc(urlencode(base))}'><thead><tr><th>Status</th><th>Name</th>"
        "<th>Image</th><th>Key</th><th>Class</th><th>Confidence</th><th>Error</th>"
        "<th>Started</th><th>Duration</th></tr></thead>"
        f"<tbody>{executions_rows(data['items'])}</tbody></table>"
        f"<p class='pager'>{' '.join(links)}</p>"
    )
    return _layout("Executions", body, page="executions")


def execution_html(
    detail: dict[str, Any], svg: str | None, graph_error: str | None, events: list[dict[str, Any]]
) -> str:
    """/executions/{id}: graph, state panel, the image, the event history."""
    href = execution_href(detail["execution_id"])
    graph = svg or f"<p class='graph-error'>{esc(graph_error)}</p>"
    event_rows = "".join(
        f"<tr data-state='{esc(e['state'])}'><td>{esc(e['id'])}</td><td>{esc(e['type'])}</td>"
        f"<td>{esc(e['state'])}</td><td>{esc(e['timestamp'])}</td><td class='detail'>"
        f"{esc(e['detail'])}</td></tr>"
        for e in events
    )
    machine = esc("/state-machines/" + quote(detail["state_machine"], safe=""))
    summary = (
        "<dl class='summary'>"
        f"<dt>Status</dt><dd class='status {esc(detail['status'])}' id='execution-status'>"
        f"{esc(detail['status'])}</dd>"
        f"<dt>State machine</dt><dd><a href='{machine}'>{esc(detail['state_machine'])}</a></dd>"
        f"<dt>Started</dt><dd>{esc(detail['started_at'])}</dd>"
        f"<dt>Stopped</dt><dd>{esc(detail['stopped_at'])}</dd>"
        f"<dt>Error</dt><dd id='execution-error'>{esc(detail['error'])}</dd>"
        f"<dt>Cause</dt><dd id='execution-cause'>{esc(detail['cause'])}</dd></dl>"
    )
    image = ""
    if detail.get("s3_key"):
        image = (
            f"<figure class='image'><img id='execution-image' alt='the execution image' "
            f"src='{esc(href)}/image.png'><figcaption class='muted small'>"
            f"{esc(detail['s3_key'])}</figcaption></figure>"
        )
    body = (
        f"<header><h1 id='execution-name'>{esc(detail['name'])}</h1></header>"
        f"<p class='muted small' id='execution-id'>{esc(detail['execution_id'])}</p>"
        f"<div class='execution-top'>{summary}"
        f"{image}</div>"
        f"<div class='graph-and-panel'><section class='graph' id='graph' "
        f"data-detail='{esc(href)}/detail.json'><h2>Graph</h2>{_legend()}{graph}</section>"
        "<aside id='state-panel'><h2 id='panel-title'>Select a state</h2>"
        "<p class='muted' id='panel-hint'>Click a state in the graph to see its input, output, "
        "error, cause and timing.</p><div id='panel-body'></div></aside></div>"
        "<section><h2>Event history</h2><table id='events'><thead><tr><th>ID</th><th>Type</th>"
        f"<th>State</th><th>Time</th><th>Error / cause</th></tr></thead><tbody>{event_rows}"
        "</tbody></table></section>"
    )
    return _layout(detail["name"], body, page="execution")


def state_machine_html(view: dict[str, Any]) -> str:
    """/state-machines/{name}: its graph, counts by status, per-state figures."""
    counts = "".join(
        f"<div class='card' data-status='{status}'>"
        f"<div class='value'>{view['counts'].get(status, 0)}</div>"
        f"<div class='label status {status}'>{status}</div></div>"
        for status in STATUSES
    )
    rows = "".join(
        f"<tr data-state='{esc(path)}'><td>{esc(path)}</td><td>{f['reached']}</td>"
        f"<td>{f['failed']}</td>"
        f"<td>{f['caught']}</td><td>{f['retries']}</td>"
        f"<td>{esc(_fmt_seconds(f['seconds'] / f['reached'] if f['reached'] else None))}</td>"
        f"<td>{esc(_fmt_seconds(f['seconds']))}</td></tr>"
        for path, f in sorted(view["per_state"].items())
    )
    name = view["name"]
    link = esc("/executions?" + urlencode({"state_machine": name}))
    body = (
        f"<header><h1>{esc(name)}</h1></header><section class='cards' id='counts'>{counts}"
        f"</section><p><a href='{link}'>Executions of this state machine</a></p>"
        f"<section class='graph'><h2>Definition</h2>"
        f"{view['svg'] or esc(view.get('graph_error'))}</section>"
        f"<section><h2>States over the last {view['recent']} executions</h2>"
        "<table id='per-state'><thead><tr><th>State</th><th>Reached</th><th>Failed</th>"
        "<th>Caught</th><th>Retries</th><th>Mean time</th><th>Total time</th></tr></thead>"
        f"<tbody>{rows}</tbody></table></section>"
    )
    return _layout(name, body, page="state-machine")
