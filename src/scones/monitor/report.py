"""`scones monitor`, the rendering half: report.html, confidence.png, summary.json and
constraint_violations.json from a computed :class:`~scones.monitor.runner.MonitorResult`.

Charts are drawn with matplotlib's Agg backend (no display) and embedded in the HTML as
base64 PNGs, so the report is one file that reads offline. Every output is written to a
temporary file and renamed into place: a reader never sees a half-written report.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from scones.errors import SconesError
from scones.images import IMAGE_STAT_NAMES
from scones.monitor.drift import Baseline
from scones.monitor.runner import MonitorOptions, MonitorResult, run_monitor

if TYPE_CHECKING:
    from matplotlib.figure import Figure

REPORT_HTML = "report.html"
CONFIDENCE_PNG = "confidence.png"
SUMMARY_JSON = "summary.json"
VIOLATIONS_JSON = "constraint_violations.json"
PASSED_COLOUR = "#2b6cb0"
FAILED_COLOUR = "#d62728"
BASELINE_COLOUR = "#999999"


class ReportError(SconesError):
    """The report folder cannot be written."""


def monitor_report(options: MonitorOptions, out_dir: Path) -> MonitorResult:
    """Run the monitor and write its four outputs into ``out_dir``; the result lists them."""
    result = run_monitor(options)
    result.written = write_outputs(out_dir, result)
    return result


def write_outputs(out_dir: Path, result: MonitorResult) -> list[Path]:
    """Write the four outputs into ``out_dir`` (created); returns their paths."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(f"--out {str(out_dir)!r} cannot be used as a folder: {exc}") from None
    confidence_png = render_png(confidence_figure(result))
    charts = {
        "confidence": confidence_png,
        "volume": render_png(volume_figure(result.summary)),
        "class_mix": render_png(class_mix_figure(result.summary)),
        "histogram": render_png(histogram_figure(result.summary, result.baseline.baseline)),
    }
    image_chart = image_stats_figure(result)
    if image_chart is not None:
        charts["image_stats"] = render_png(image_chart)
    outputs = {
        SUMMARY_JSON: (json.dumps(result.summary, indent=2, allow_nan=False) + "\n").encode(),
        VIOLATIONS_JSON: (json.dumps(result.violations, indent=2) + "\n").encode(),
        CONFIDENCE_PNG: confidence_png,
        REPORT_HTML: render_html(result, charts).encode(),
    }
    written = []
    for name, data in outputs.items():
        path = out_dir / name
        try:
            _write_atomically(path, data)
        except OSError as exc:
            raise ReportError(f"--out {str(out_dir)!r}: cannot write {name}: {exc}") from None
        written.append(path)
    return written


def _write_atomically(path: Path, data: bytes) -> None:
    descriptor, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
        os.chmod(temp, 0o644)  # mkstemp makes 0600; a report is meant to be shared
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)


# --- charts ----------------------------------------------------------------------------------


def _figure(width: float = 9.0, height: float = 3.6) -> Figure:
    # The object API (not pyplot): no global state, no display, safe in threads.
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def render_png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _times(timestamps: list[float]) -> np.ndarray:
    """POSIX seconds as numpy UTC datetimes, which matplotlib plots on a date axis."""
    return (np.asarray(timestamps, dtype=np.float64) * 1000).astype("datetime64[ms]")


def _iso_times(starts: list[str]) -> np.ndarray:
    return _times([datetime.fromisoformat(start).timestamp() for start in starts])


def _date_axis(axes: Any, first: float | None, last: float | None) -> None:
    import matplotlib.dates as mdates

    if first is not None and last is not None:
        pad = max((last - first) * 0.03, 30.0)  # one point still gets a readable axis
        axes.set_xlim(_times([first - pad])[0], _times([last + pad])[0])
    locator = mdates.AutoDateLocator(tz=UTC)
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=UTC))
    axes.set_xlabel("time (UTC)")


def _no_data(axes: Any, text: str = "no traffic in the window") -> None:
    axes.text(0.5, 0.5, text, ha="center", va="center", transform=axes.transAxes, color="#666")
    axes.set_xticks([])
    axes.set_yticks([])


def confidence_figure(result: MonitorResult) -> Figure:
    """Top confidence of each request over time, the threshold, failures in red."""
    summary = result.summary
    threshold = summary["threshold"]
    passed, under = result.aggregator.confidence_points()
    figure = _figure(10.0, 4.2)
    axes = figure.add_subplot()
    records = summary["records"]
    if not passed and not under:
        _no_data(axes)
    else:
        if passed:
            axes.scatter(
                _times([p[0] for p in passed]),
                [p[1] for p in passed],
                s=9,
                color=PASSED_COLOUR,
                alpha=0.6,
                label=f"passed (>= {threshold})",
            )
        if under:
            axes.scatter(
                _times([p[0] for p in under]),
                [p[1] for p in under],
                s=12,
                color=FAILED_COLOUR,
                alpha=0.8,
                label=f"under threshold (< {threshold})",
            )
        first = min(p[0] for p in passed + under)
        last = max(p[0] for p in passed + under)
        _date_axis(axes, first, last)
        axes.axhline(threshold, color="black", linestyle="--", linewidth=1, label="threshold")
        axes.set_ylim(-0.02, 1.02)
        axes.legend(loc="lower left", fontsize=8)
    shown = len(passed) + len(under)
    sampled = "" if shown >= records["with_predictions"] else f"; {shown} sampled points shown"
    share = records["under_threshold_share"]
    axes.set_title(
        f"Top confidence per request: {records['with_predictions']} predictions, "
        f"{records['under_threshold']} under {threshold}"
        + (f" ({share:.1%})" if share is not None else "")
        + sampled,
        fontsize=10,
    )
    axes.set_ylabel("top class probability")
    return figure


def _bucket_times(summary: dict[str, Any]) -> tuple[np.ndarray, float, list[dict[str, Any]]]:
    series = summary["series"]
    buckets = series["buckets"]
    return _iso_times([b["start"] for b in buckets]), float(series["bucket_seconds"]), buckets


def volume_figure(summary: dict[str, Any]) -> Figure:
    """Requests per bucket (hour, or minute for short spans), passed and under threshold."""
    figure = _figure()
    axes = figure.add_subplot()
    starts, seconds, buckets = _bucket_times(summary)
    if not buckets:
        _no_data(axes)
        return figure
    width = seconds / 86400 * 0.9  # matplotlib dates are in days
    under = np.array([b["under_threshold"] for b in buckets])
    predicted = np.array([b["predictions"] for b in buckets])
    unpredicted = np.array([b["records"] for b in buckets]) - predicted
    passed = predicted - under
    axes.bar(starts, passed, width=width, align="edge", color=PASSED_COLOUR, label="passed")
    axes.bar(
        starts,
        under,
        width=width,
        align="edge",
        bottom=passed,
        color=FAILED_COLOUR,
        label="under threshold",
    )
    if unpredicted.any():
        axes.bar(
            starts,
            unpredicted,
            width=width,
            align="edge",
            bottom=predicted,
            color=BASELINE_COLOUR,
            label="no prediction",
        )
    first = datetime.fromisoformat(buckets[0]["start"]).timestamp()
    _date_axis(axes, first, datetime.fromisoformat(buckets[-1]["start"]).timestamp() + seconds)
    unit = "minute" if seconds == 60 else "hour"
    axes.set_title(f"Requests per {unit}", fontsize=10)
    axes.set_ylabel("requests")
    axes.legend(loc="upper left", fontsize=8)
    return figure


def class_mix_figure(summary: dict[str, Any]) -> Figure:
    """Share of each predicted class per bucket."""
    figure = _figure()
    axes = figure.add_subplot()
    _, seconds, buckets = _bucket_times(summary)
    names = summary["class_names"]
    predicted = [b for b in buckets if b["predictions"]]
    if not predicted or not names:
        _no_data(axes)
        return figure
    width = seconds / 86400 * 0.9
    bottoms = np.zeros(len(predicted))
    times = _iso_times([b["start"] for b in predicted])
    first = datetime.fromisoformat(predicted[0]["start"]).timestamp()
    last = datetime.fromisoformat(predicted[-1]["start"]).timestamp()
    for name in names:
        shares = np.array([b["class_counts"].get(name, 0) / b["predictions"] for b in predicted])
        axes.bar(times, shares, width=width, align="edge", bottom=bottoms, label=name)
        bottoms += shares
    _date_axis(axes, first, last + seconds)
    axes.set_ylim(0, 1)
    axes.set_ylabel("share of predictions")
    axes.set_title("Predicted class mix over time", fontsize=10)
    axes.legend(loc="upper left", fontsize=8)
    return figure


def histogram_figure(summary: dict[str, Any], baseline: Baseline | None) -> Figure:
    """Live top-confidence histogram against the baseline's (shares)."""
    figure = _figure()
    axes = figure.add_subplot()
    edges = np.array(summary["confidence_histogram"]["bin_edges"])
    counts = np.array(summary["confidence_histogram"]["counts"], dtype=np.float64)
    centres = (edges[:-1] + edges[1:]) / 2
    width = (edges[1] - edges[0]) * 0.42
    if counts.sum():
        axes.bar(
            centres + width / 2,
            counts / counts.sum(),
            width=width,
            color=PASSED_COLOUR,
            label="live",
        )
    if baseline is not None:
        reference = np.array(baseline.confidence_counts, dtype=np.float64)
        if reference.sum() and len(reference) == len(centres):
            axes.bar(
                centres - width / 2,
                reference / reference.sum(),
                width=width,
                color=BASELINE_COLOUR,
                label="baseline",
            )
    axes.axvline(
        summary["threshold"], color="black", linestyle="--", linewidth=1, label="threshold"
    )
    axes.set_xlim(0, 1)
    axes.set_xlabel("top class probability")
    axes.set_ylabel("share")
    axes.set_title("Confidence histogram", fontsize=10)
    axes.legend(loc="upper left", fontsize=8)
    return figure


def image_stats_figure(result: MonitorResult) -> Figure | None:
    """Per-image statistics of the live sample against the baseline, one panel each."""
    aggregator = result.aggregator
    if not aggregator.decoded_images:
        return None
    baseline = result.baseline.baseline
    baseline_stats = baseline.image_stats if baseline is not None else {}
    figure = _figure(12.0, 2.8)
    panels = figure.subplots(1, len(IMAGE_STAT_NAMES))
    for axes, name in zip(panels, IMAGE_STAT_NAMES, strict=True):
        live = aggregator.image_stat_sample(name)
        reference = baseline_stats.get(name, np.empty(0))
        values = np.concatenate([live, reference]) if len(reference) else live
        low, high = float(values.min()), float(values.max())
        if high <= low:
            low, high = low - 0.5, high + 0.5
        bins = np.linspace(low, high, 21)
        axes.hist(live, bins=bins, density=True, alpha=0.6, color=PASSED_COLOUR, label="live")
        if len(reference):
            axes.hist(
                reference,
                bins=bins,
                density=True,
                alpha=0.5,
                color=BASELINE_COLOUR,
                label="baseline",
            )
        axes.set_title(name, fontsize=9)
        axes.tick_params(labelsize=7)
        axes.set_yticks([])
    panels[0].legend(fontsize=7)
    return figure


# --- HTML ------------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    if value is None:
        return "&ndash;"
    if isinstance(value, float):
        return html.escape(f"{value:.4g}")
    return html.escape(str(value))


def _rows(pairs: list[tuple[str, Any]]) -> str:
    return "".join(f"<tr><th>{html.escape(k)}</th><td>{_cell(v)}</td></tr>" for k, v in pairs)


def render_html(result: MonitorResult, charts: dict[str, bytes]) -> str:
    summary = result.summary
    records = summary["records"]
    reader = summary["reader"]
    drift = summary["drift"]
    model = summary["model"]
    status = drift["status"]
    status_text = {
        "ok": "within bounds",
        "violations": f"{drift['violations']} violation(s)",
        "skipped": "drift not tested",
    }[status]
    overview = _rows(
        [
            ("capture", summary["capture"]["uri"]),
            ("endpoint", summary["capture"]["endpoint_name"] or "all"),
            (
                "window",
                f"{summary['capture']['since'] or 'start'} .. "
                f"{summary['capture']['until'] or 'now'}",
            ),
            ("first record", summary["time_range"]["first"]),
            ("last record", summary["time_range"]["last"]),
            ("records", records["total"]),
            ("with predictions", records["with_predictions"]),
            ("passed the threshold", records["passed"]),
            (f"under the threshold {summary['threshold']}", records["under_threshold"]),
            ("share under the threshold", records["under_threshold_share"]),
            ("mean top confidence", summary["mean_confidence"]),
            ("unknown content types", records["unknown_content_type"]),
            ("undecodable images", records["undecodable_images"]),
            ("outputs without probabilities", records["invalid_output"]),
            ("malformed lines", reader["malformed_lines"]),
            (
                "files read / failed",
                f"{reader['files_read']} / {sum(reader['files_failed'].values())}",
            ),
            ("model", model["label"]),
            (
                "baseline",
                f"{model['baseline_split']} split, {model['baseline_n']} images"
                if model["baseline"]
                else "none",
            ),
        ]
    )
    checks = "".join(
        "<tr class='{cls}'><td>{feature}</td><td>{check}</td><td>{value}</td><td>{p}</td>"
        "<td>{threshold}</td><td>{verdict}</td></tr>".format(
            cls="bad" if c["violated"] else "good",
            feature=html.escape(c["feature_name"]),
            check=html.escape(c["check"].upper()),
            value=_cell(c["value"]),
            p=_cell(c["p_value"]),
            threshold=html.escape(c["threshold"]),
            verdict="violation" if c["violated"] else "ok",
        )
        for c in drift["checks"]
    )
    notes = [drift["skipped_reason"]] if drift["skipped_reason"] else []
    notes += drift["notes"]
    if summary.get("message"):
        notes.insert(0, summary["message"])
    problems = {
        **{f"content type {k}": v for k, v in records["content_types"].items()},
        **{f"undecodable: {k}": v for k, v in records["undecodable_images_by_reason"].items()},
        **{f"no prediction: {k}": v for k, v in records["invalid_output_by_reason"].items()},
        **{f"malformed line: {k}": v for k, v in reader["malformed_lines_by_reason"].items()},
        **{f"file failed: {k}": v for k, v in reader["files_failed"].items()},
        **{f"file skipped: {k}": v for k, v in reader["files_skipped"].items()},
    }
    image_rows = "".join(
        f"<tr><th>{html.escape(name)}</th>"
        + "".join(
            f"<td>{_cell(values.get(key))}</td>" for key in ("count", "mean", "p05", "p50", "p95")
        )
        + "</tr>"
        for name, values in summary["image_statistics"].items()
    )
    hours = "".join(
        f"<tr><td>{html.escape(h['start'])}</td><td>{h['records']}</td><td>{h['under_threshold']}</td>"
        f"<td>{_cell(h['under_threshold_share'])}</td><td>{_cell(h['mean_confidence'])}</td>"
        f"<td>{html.escape(json.dumps(h['class_counts']))}</td></tr>"
        for h in summary["volume_per_hour"]
    )

    def chart(name: str, alt: str) -> str:
        if name not in charts:
            return ""
        data = base64.b64encode(charts[name]).decode()
        return f"<figure><img alt='{html.escape(alt)}' src='data:image/png;base64,{data}'></figure>"

    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>scones monitor: {html.escape(status_text)}</title>
<style>
body {{ font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; }}
th, td {{ border: 1px solid #ddd; padding: 3px 8px; text-align: left; }}
tr.bad td {{ background: #fde2e2; }} tr.good td {{ background: #e6f4ea; }}
.status {{ display: inline-block; padding: 2px 10px; border-radius: 4px; color: white; }}
.ok {{ background: #2f855a; }} .violations {{ background: #c53030; }}
.skipped {{ background: #718096; }}
img {{ max-width: 100%; }} figure {{ margin: 0 0 1em; }}
</style></head><body>
<h1>Endpoint monitoring <span class="status {status}">{html.escape(status_text)}</span></h1>
<p>Generated {html.escape(summary["generated_at"])} by <code>scones monitor</code>.</p>
{"".join(f"<p class='note'>{html.escape(n)}</p>" for n in notes)}
<h2>Overview</h2><table>{overview}</table>
<h2>Confidence over time</h2>{chart("confidence", "top confidence per request over time")}
<h2>Volume</h2>{chart("volume", "requests per hour")}
<table><tr><th>hour (UTC)</th><th>records</th><th>under threshold</th><th>share</th>
<th>mean confidence</th><th>classes</th></tr>{hours}</table>
<h2>Class mix</h2>{chart("class_mix", "predicted class mix over time")}
<p>Overall: {html.escape(json.dumps(summary["class_mix"]["counts"]))}</p>
<h2>Confidence histogram</h2>{chart("histogram", "confidence histogram against the baseline")}
<h2>Drift against the training baseline</h2>
<table><tr><th>feature</th><th>test</th><th>value</th><th>p-value</th><th>violation when</th>
<th>result</th></tr>{checks}</table>
<h2>Input images</h2>{chart("image_stats", "per-image statistics against the baseline")}
<table><tr><th>statistic</th><th>images</th><th>mean</th><th>p05</th><th>p50</th><th>p95</th></tr>
{image_rows}</table>
<h2>Records by kind</h2><table>{_rows(sorted(problems.items()))}</table>
</body></html>
"""
