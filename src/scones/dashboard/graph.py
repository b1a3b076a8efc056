"""A state machine drawn as the Step Functions console draws it, laid out by Graphviz ``dot``.

:func:`definition_dot` writes the graph (states, Next/Default/Choice edges, Catch edges
dashed, Retry as a dotted loop, Map and Parallel branches as clusters) in the DOT language;
with an :class:`~scones.dashboard.trace.ExecutionTrace` it colours the path taken. Graphviz
lays it out and writes SVG (or PNG): no layout code of ours.

Every node gets ``id="state-N"`` and ``class="state <status>"`` in the SVG, so the page finds
the states; :func:`node_ids` maps those ids back to state paths. Strings come from the
definition only (never from execution data) and are escaped for DOT; Graphviz escapes them
again for XML.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Any

from scones.dashboard.trace import (
    CAUGHT,
    FAILED,
    NOT_REACHED,
    RUNNING,
    SUCCEEDED,
    ExecutionTrace,
    state_path,
    sub_machines,
)
from scones.errors import SconesError

# (fill, border, text) per status: the Step Functions console's colours.
COLOURS = {
    SUCCEEDED: ("#dff3e3", "#2e7d32", "#1b4d20"),
    FAILED: ("#fbe1df", "#c62828", "#7f1d1d"),
    CAUGHT: ("#ffe9cc", "#e07800", "#7a3e00"),
    RUNNING: ("#dcebfb", "#1565c0", "#0d3c73"),
    NOT_REACHED: ("#f2f2f2", "#9e9e9e", "#555555"),
}
TERMINAL_COLOUR = "#5f6b7a"
DOT_TIMEOUT_SECONDS = 30
FORMATS = ("svg", "png")


class GraphvizError(SconesError):
    """Graphviz is missing or could not draw the graph."""


@dataclass
class _Builder:
    trace: ExecutionTrace | None
    lines: list[str] = field(default_factory=list)
    # Edges go after every node: an edge inside a cluster would pull its ends into it.
    edges: list[str] = field(default_factory=list)
    ids: dict[str, str] = field(default_factory=dict)  # state path -> node id
    counter: int = 0

    def node_id(self, path: str) -> str:
        if path not in self.ids:
            self.ids[path] = f"state-{len(self.ids)}"
        return self.ids[path]

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}-{self.counter}"

    def status(self, path: str) -> str:
        return self.trace.status_of(path) if self.trace is not None else NOT_REACHED

    def taken(self, source: str, target: str, kind: str) -> bool:
        return self.trace is not None and (source, target, kind) in self.trace.transitions


def quote(text: str) -> str:
    """A DOT double-quoted string: backslashes first, so Graphviz's escapes stay literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _attrs(**values: str) -> str:
    return "[" + ", ".join(f"{key}={quote(value)}" for key, value in values.items()) + "]"


def _label(name: str, state: dict[str, Any], trace: ExecutionTrace | None, path: str) -> str:
    lines = [name, str(state.get("Type", "?"))]
    if trace is not None and path in trace.states:
        found = trace.states[path]
        counts = []
        if found.entered > 1:
            counts.append(f"{found.entered} runs")
        if found.retries:
            counts.append(f"{found.retries} retr{'y' if found.retries == 1 else 'ies'}")
        if counts:
            lines.append(" · ".join(counts))
    return "\n".join(lines)


def _state_node(b: _Builder, name: str, state: dict[str, Any], path: str) -> str:
    node = b.node_id(path)
    status = b.status(path)
    fill, border, text = COLOURS[status]
    shape = "box"
    state_type = state.get("Type")
    if state_type == "Choice":
        shape = "diamond"
    b.lines.append(
        f"{quote(node)} "
        + _attrs(
            id=node,
            label=_label(name, state, b.trace, path),
            shape=shape,
            style="rounded,filled" if shape == "box" else "filled",
            fillcolor=fill,
            color=border,
            fontcolor=text,
            penwidth="2" if status != NOT_REACHED else "1",
            tooltip=path,
            **{"class": f"state {status.replace('_', '-')}"},
        )
    )
    return node


def _edge(b: _Builder, source: str, target: str, kind: str, label: str, taken: bool) -> None:
    attrs: dict[str, str] = {"class": f"edge {kind}{' taken' if taken else ''}"}
    if label:
        attrs["label"] = label
    if kind == "catch":
        attrs.update(style="dashed", color=COLOURS[CAUGHT][1], fontcolor=COLOURS[CAUGHT][2])
    elif kind == "retry":
        attrs.update(style="dotted", color="#6a5acd", fontcolor="#483d8b", arrowhead="vee")
    else:
        attrs["color"] = "#2e7d32" if taken else "#8a8a8a"
    if taken:
        attrs["penwidth"] = "2.2"
    b.edges.append(f"{quote(source)} -> {quote(target)} " + _attrs(**attrs))


def _machine(b: _Builder, machine: dict[str, Any], scope: tuple[str, ...], start: str, end: str):
    """Draws one machine or branch: its states, and edges from ``start`` and to ``end``."""
    states = machine.get("States") if isinstance(machine.get("States"), dict) else {}
    assert isinstance(states, dict)
    entries: dict[str, str] = {}  # state name -> the node edges into it reach
    exits: dict[str, str] = {}  # state name -> the node edges out of it leave from
    for name, state in states.items():
        if not isinstance(state, dict):
            continue
        path = state_path(scope, name)
        branches = sub_machines(state)
        if branches:
            cluster = b.fresh("cluster")
            status = b.status(path)
            b.lines.append(f"subgraph {quote(cluster)} {{")
            b.lines.append(
                f'style="rounded,dashed"; color={quote(COLOURS[status][1])}; '
                f"label={quote(name + ' (' + str(state.get('Type')) + ')')}; "
                "fontsize=11; labeljust=l;"
            )
            head = _state_node(b, name, state, path)
            join = b.fresh("join")
            b.lines.append(f'{quote(join)} [shape=point, width=0.08, color="#777777"]')
            for index, branch in enumerate(branches):
                boxed = len(branches) > 1  # Parallel: one dotted box per branch
                if boxed:
                    b.lines.append(f"subgraph {quote(b.fresh('cluster'))} {{")
                    b.lines.append('style="dotted"; color="#b0b0b0"; label="";')
                _machine(b, branch, (*scope, name, str(index)), head, join)
                if boxed:
                    b.lines.append("}")
            b.lines.append("}")
            entries[name], exits[name] = head, join
        else:
            entries[name] = exits[name] = _state_node(b, name, state, path)
    start_at = machine.get("StartAt")
    if isinstance(start_at, str) and start_at in entries:
        first = state_path(scope, start_at)
        _edge(b, start, entries[start_at], "next", "", b.status(first) != NOT_REACHED)
    for name, state in states.items():
        if name not in exits or not isinstance(state, dict):
            continue
        path = state_path(scope, name)
        source = exits[name]

        for target_name, kind, label in _transitions(state):
            if target_name in entries:
                target = state_path(scope, target_name)
                taken = b.taken(path, target, kind)
                _edge(b, source, entries[target_name], kind, label, taken)
        retriers = [r for r in state.get("Retry") or [] if isinstance(r, dict)]
        if retriers:
            retried_on = sorted({str(e) for r in retriers for e in r.get("ErrorEquals") or []})
            shown = retried_on[0] if retried_on else "?"
            if len(retried_on) > 1:
                shown += f" +{len(retried_on) - 1}"
            entry = entries[name]
            found = b.trace.states.get(path) if b.trace is not None else None
            retried = found is not None and found.retries > 0
            _edge(b, source, entry, "retry", f"Retry: {shown}", retried)
        if state.get("End") is True or state.get("Type") in ("Succeed", "Fail"):
            _edge(b, source, end, "next", "", b.status(path) == SUCCEEDED)


def _transitions(state: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(target state, edge kind, label) for each way out of a state but Retry and End."""
    found: list[tuple[Any, str, str]] = [(state.get("Next"), "next", "")]
    for number, rule in enumerate(state.get("Choices") or [], start=1):
        if isinstance(rule, dict):
            found.append((rule.get("Next"), "next", f"rule {number}"))
    if "Default" in state:
        found.append((state.get("Default"), "next", "Default"))
    for catcher in state.get("Catch") or []:
        if isinstance(catcher, dict):
            errors = ", ".join(str(e) for e in catcher.get("ErrorEquals") or [])
            found.append((catcher.get("Next"), "catch", f"Catch: {errors}"))
    return [(target, kind, label) for target, kind, label in found if isinstance(target, str)]


def definition_dot(
    definition: dict[str, Any], trace: ExecutionTrace | None = None
) -> tuple[str, dict[str, str]]:
    """The definition as a DOT digraph, coloured by ``trace``; and node id -> state path."""
    b = _Builder(trace)
    b.lines.append("digraph statemachine {")
    b.lines.append(
        'graph [rankdir=TB, nodesep=0.35, ranksep=0.45, fontname="Helvetica", '
        'bgcolor="transparent"];'
    )
    b.lines.append('node [fontname="Helvetica", fontsize=11, margin="0.18,0.06"];')
    b.lines.append('edge [fontname="Helvetica", fontsize=9, arrowsize=0.7];')
    for terminal in ("Start", "End"):
        b.lines.append(
            f"{quote(terminal.lower())} "
            + _attrs(
                label=terminal,
                shape="circle",
                style="filled",
                fillcolor=TERMINAL_COLOUR,
                fontcolor="#ffffff",
                color=TERMINAL_COLOUR,
                width="0.55",
                fixedsize="true",
                fontsize="9",
                **{"class": "terminal"},
            )
        )
    _machine(b, definition, (), "start", "end")
    b.lines.extend(b.edges)
    b.lines.append("}")
    return "\n".join(b.lines) + "\n", {node: path for path, node in b.ids.items()}


def node_ids(definition: dict[str, Any]) -> dict[str, str]:
    """Node id -> state path, as :func:`definition_dot` numbers them."""
    return definition_dot(definition)[1]


def dot_available() -> bool:
    return shutil.which("dot") is not None


def render(dot_text: str, fmt: str = "svg") -> bytes:
    """Lay the graph out with Graphviz ``dot``; SVG or PNG bytes."""
    if fmt not in FORMATS:
        raise GraphvizError(f"cannot draw a graph as {fmt!r}: one of {', '.join(FORMATS)}")
    dot = shutil.which("dot")
    if dot is None:
        raise GraphvizError(
            "Graphviz `dot` is not installed, so the state machine cannot be drawn: "
            "install it (apt-get install graphviz, brew install graphviz) or run "
            "scripts/ensure-graphviz.sh"
        )
    try:
        done = subprocess.run(
            [dot, f"-T{fmt}"],
            input=dot_text.encode("utf-8"),
            capture_output=True,
            timeout=DOT_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise GraphvizError(
            f"Graphviz took over {DOT_TIMEOUT_SECONDS} s to draw the graph"
        ) from None
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip()[:500]
        raise GraphvizError(f"Graphviz could not draw the graph: {message}")
    return done.stdout


def inline_svg(svg: bytes) -> str:
    """The SVG element alone (no XML declaration or doctype), to place in an HTML page."""
    text = svg.decode("utf-8")
    start = text.find("<svg")
    if start < 0:
        raise GraphvizError("Graphviz wrote no <svg> element")
    return text[start:]
