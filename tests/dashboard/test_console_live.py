"""The workflow console in headless Chromium over real executions.

Real handlers, the real definitions and the real endpoint (the tiny model) run a pass, a
threshold failure, a transient endpoint error retried then passing, a Map execution and an
execution whose object key holds ``<script>``; the dashboard serves them on a real socket.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from console_helpers import chromium, console_errors, serving

from conftest import noise_png, solid_png
from scones.asl import FakeClock
from scones.dashboard.app import DashboardConfig, create_app
from scones.dashboard.graph import COLOURS
from scones.functions import classify_image
from scones.monitor.runner import MonitorOptions
from scones.settings import get_settings
from scones.store import open_store
from scones.workflow.executions import ExecutionRecord, ExecutionStore
from scones.workflow.local import local_runner
from workflow.wf_helpers import FlakyProxy, running_endpoint

SCONES = str(Path(sys.executable).with_name("scones"))
SCRIPT_KEY = "test/<script>window.pwned=1</script>.png"
SINGLE = ("SerializeImageData", "ClassifyImage", "FilterInferences")
LOW = ("ExplainLowConfidence", "LowConfidence")


@pytest.fixture(scope="module")
def executions(
    tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, dict[str, ExecutionRecord]]]:
    """The five executions in one database; the env lets the dashboard read their images."""
    root = tmp_path_factory.mktemp("console")
    store = open_store(str(root / "store"))
    for key, data in {
        "test/red.png": solid_png((200, 30, 30)),
        "test/blue.png": solid_png((30, 30, 200)),
        "test/noise.png": noise_png(3),
        SCRIPT_KEY: solid_png((200, 30, 30)),
    }.items():
        store.put(key, data)
    patch = pytest.MonkeyPatch()
    # A module fixture runs before the per-test isolation in conftest: start from no SCONES_*
    # (earlier in-process runs leave SCONES_BUCKET_<NAME> behind, as a Lambda's env would be).
    for name in [name for name in os.environ if name.startswith("SCONES_")]:
        patch.delenv(name)
    patch.setenv("SCONES_STORE", str(root / "store"))
    patch.delenv("THRESHOLD", raising=False)
    db_path = root / "home" / "scones.db"
    records: dict[str, ExecutionRecord] = {}
    try:
        with running_endpoint(tiny_model_dir, root) as url, ExecutionStore(db_path) as db:
            patch.setenv("SCONES_ENDPOINT_URL", url)
            get_settings.cache_clear()

            def single(name: str, key: str) -> None:
                with local_runner(db, clock=FakeClock()) as runner:
                    records[name] = runner.start(
                        {"s3_bucket": "scones", "s3_key": key, "image_data": ""}, name=name
                    )

            single("passes", "test/red.png")
            single("unsure", "test/noise.png")
            single("scripted", SCRIPT_KEY)
            with FlakyProxy(url, failures=2) as proxy:
                patch.setenv("SCONES_ENDPOINT_URL", proxy.url)
                single("flaky", "test/blue.png")
            patch.setenv("SCONES_ENDPOINT_URL", url)
            with local_runner(db, "map", clock=FakeClock()) as runner:
                keys = ["test/red.png", "test/noise.png"]
                records["mapped"] = runner.start({"s3_bucket": "scones", "keys": keys}, "mapped")
            classify_image.close_idle_connections()
        yield db_path, records
    finally:
        patch.undo()
        get_settings.cache_clear()


@pytest.fixture(scope="module")
def console_url(executions, tmp_path_factory) -> Iterator[str]:
    db_path, _ = executions
    capture = tmp_path_factory.mktemp("capture")
    config = DashboardConfig(
        monitor=MonitorOptions(
            capture_uri=str(capture),
            endpoint_name="scones-endpoint",
            store_uri=str(db_path.parent.parent / "store"),  # where the images are
        ),
        db_path=db_path,
        window=None,
        refresh_seconds=1.0,
    )
    with serving(create_app(config)) as url:
        yield url


@pytest.fixture(scope="module")
def browser(tmp_path_factory) -> Iterator[object]:
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as driver:
        yield driver


def open_execution(browser, console_url: str, record: ExecutionRecord) -> dict[str, str]:
    """Opens the execution page; returns state path -> status class from the graph's DOM."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{console_url}/executions/{quote(record.execution_id, safe='')}")
    WebDriverWait(browser, 30, poll_frequency=0.1).until(
        lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-loaded") == "true"
    )
    statuses = {}
    for node in browser.find_elements(By.CSS_SELECTOR, "#graph g.state"):
        classes = set(node.get_attribute("class").split())
        [status] = classes & {"succeeded", "failed", "caught", "running", "not-reached"}
        statuses[node.get_attribute("data-path")] = status
        fill = node.find_element(By.CSS_SELECTOR, "path, polygon").get_attribute("fill")
        assert fill == COLOURS[status.replace("-", "_")][0], (node.get_attribute("id"), fill)
    assert console_errors(browser) == []
    return statuses


def entered_states(record: ExecutionRecord) -> set[str]:
    return {
        event["stateEnteredEventDetails"]["name"]
        for event in record.history
        if event["type"].endswith("StateEntered")
    }


@pytest.mark.browser
def test_a_passing_execution_is_green_along_its_path_and_grey_elsewhere(
    executions, console_url, browser
):
    from selenium.webdriver.common.by import By

    record = executions[1]["passes"]
    assert record.status == "SUCCEEDED"
    statuses = open_execution(browser, console_url, record)
    assert statuses == {**dict.fromkeys(SINGLE, "succeeded"), **dict.fromkeys(LOW, "not-reached")}
    assert {path for path, s in statuses.items() if s != "not-reached"} == entered_states(record)
    # Clicking a state shows what it received.
    browser.find_element(By.CSS_SELECTOR, "#graph g.state[data-path='SerializeImageData']").click()
    shown = json.loads(browser.find_element(By.CSS_SELECTOR, "#panel-body pre.input").text)
    assert shown == record.input
    assert browser.find_element(By.ID, "panel-title").text == "SerializeImageData"
    events = browser.find_elements(By.CSS_SELECTOR, "#events tbody tr")
    assert len(events) == len(record.history)
    image = browser.find_element(By.ID, "execution-image")
    assert browser.execute_script("return arguments[0].naturalWidth", image) > 0


@pytest.mark.browser
def test_a_threshold_failure_is_caught_then_fails_in_red(executions, console_url, browser):
    from selenium.webdriver.common.by import By

    record = executions[1]["unsure"]
    assert record.error == "ThresholdConfidenceNotMet"
    statuses = open_execution(browser, console_url, record)
    assert statuses == {
        "SerializeImageData": "succeeded",
        "ClassifyImage": "succeeded",
        "FilterInferences": "caught",
        "ExplainLowConfidence": "succeeded",
        "LowConfidence": "failed",
    }
    # The failed state opens by itself; the caught one shows its error and cause.
    assert browser.find_element(By.ID, "panel-title").text == "LowConfidence"
    browser.find_element(By.CSS_SELECTOR, "#graph g.state[data-path='FilterInferences']").click()
    panel = browser.find_element(By.ID, "panel-body").text
    assert "ThresholdConfidenceNotMet" in panel and "threshold 0.93" in panel
    assert "FAILED" in browser.find_element(By.ID, "execution-status").text


@pytest.mark.browser
def test_retries_are_counted_on_their_state(executions, console_url, browser):
    from selenium.webdriver.common.by import By

    record = executions[1]["flaky"]
    assert record.status == "SUCCEEDED"
    statuses = open_execution(browser, console_url, record)
    assert statuses == {**dict.fromkeys(SINGLE, "succeeded"), **dict.fromkeys(LOW, "not-reached")}
    node = browser.find_element(By.CSS_SELECTOR, "#graph g.state[data-path='ClassifyImage']")
    assert "2 retries" in node.text
    node.click()
    assert browser.find_element(By.CSS_SELECTOR, "#panel-body dd.retries").text == "2"
    assert "EndpointTransientError" in browser.find_element(By.ID, "panel-body").text
    taken_retry = browser.find_elements(By.CSS_SELECTOR, "#graph g.edge.retry.taken")
    assert len(taken_retry) == 1


@pytest.mark.browser
def test_a_map_execution_colours_its_iterations_states(executions, console_url, browser):
    from selenium.webdriver.common.by import By

    record = executions[1]["mapped"]
    assert [r["status"] for r in record.output["results"]] == ["ROUTED", "LOW_CONFIDENCE"]
    statuses = open_execution(browser, console_url, record)
    inner = "ClassifyEachImage/0/"
    assert statuses == {
        "ClassifyEachImage": "succeeded",
        inner + "SerializeImageData": "succeeded",
        inner + "ClassifyImage": "succeeded",
        inner + "FilterInferences": "caught",  # the noise image, under the threshold
        inner + "RecordRouted": "succeeded",
        inner + "ParseLowConfidence": "succeeded",
        inner + "RecordLowConfidence": "succeeded",
        inner + "RecordFailure": "not-reached",
    }
    node = browser.find_element(
        By.CSS_SELECTOR, f"#graph g.state[data-path='{inner}SerializeImageData']"
    )
    assert "2 runs" in node.text
    node.click()
    inputs = [
        json.loads(pre.text)["s3_key"]
        for pre in browser.find_elements(By.CSS_SELECTOR, "#panel-body pre.input")
    ]
    assert sorted(inputs) == ["test/noise.png", "test/red.png"]


@pytest.mark.browser
def test_a_key_with_a_script_tag_is_shown_as_text(executions, console_url, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    record = executions[1]["scripted"]
    open_execution(browser, console_url, record)
    browser.find_element(By.CSS_SELECTOR, "#graph g.state[data-path='SerializeImageData']").click()
    assert SCRIPT_KEY in browser.find_element(By.CSS_SELECTOR, "#panel-body pre.input").text
    assert browser.execute_script("return window.pwned") is None
    browser.get(f"{console_url}/executions?q={quote('test/<script>')}")
    WebDriverWait(browser, 20).until(
        lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-loaded") == "true"
    )
    [row] = browser.find_elements(By.CSS_SELECTOR, "#executions tbody tr.execution")
    assert row.find_element(By.CSS_SELECTOR, "td.key").text == SCRIPT_KEY
    assert browser.find_elements(By.CSS_SELECTOR, "#executions script") == []
    assert browser.execute_script("return window.pwned") is None


@pytest.mark.browser
def test_the_executions_list_shows_newest_first_with_class_and_refreshes(
    executions, console_url, browser
):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{console_url}/executions?status=SUCCEEDED&state_machine=scones-classify-image")
    wait = WebDriverWait(browser, 20, poll_frequency=0.1)
    rows = browser.find_elements(By.CSS_SELECTOR, "#executions tbody tr.execution")
    assert [r.find_element(By.CSS_SELECTOR, "a.name").text for r in rows] == [
        "flaky",
        "scripted",
        "passes",
    ]
    assert [r.find_element(By.CSS_SELECTOR, "td.class").text for r in rows] == [
        "motorcycle",
        "bicycle",
        "bicycle",
    ]
    thumb = rows[0].find_element(By.CSS_SELECTOR, "img.thumb")
    wait.until(lambda d: d.execute_script("return arguments[0].naturalWidth", thumb) == 32)
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-refreshed"))
    assert len(browser.find_elements(By.CSS_SELECTOR, "#executions tbody tr.execution")) == 3
    assert console_errors(browser) == []


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=20) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read()


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("status=LOST", "'LOST'"),
        ("before=yesterday", "'yesterday'"),
        ("limit=100000", "100000"),
        ("limit=ten", "'ten'"),
        ("since=last+week", "'last week'"),
    ],
)
def test_bad_filters_are_a_400_naming_the_value(executions, console_url, query, named):
    status, body = get(f"{console_url}/api/executions?{query}")
    assert status == 400
    assert named in json.loads(body)["message"]


def test_an_unknown_execution_is_a_404(console_url):
    status, body = get(f"{console_url}/executions/no-such-execution")
    assert status == 404 and "no-such-execution" in json.loads(body)["message"]


def test_the_state_machine_page_counts_executions_and_per_state_figures(executions, console_url):
    status, body = get(f"{console_url}/state-machines/scones-classify-image")
    assert status == 200
    page = body.decode()
    assert "<svg" in page
    counts = dict(re.findall(r"data-status='([A-Z_]+)'><div class='value'>(\d+)<", page))
    assert counts == {"RUNNING": "0", "SUCCEEDED": "3", "FAILED": "1", "TIMED_OUT": "0"} | {
        "ABORTED": "0"
    }
    row = re.search(r"<tr data-state='ClassifyImage'>(.*?)</tr>", page)
    assert row is not None
    cells = re.findall(r"<td>([^<]*)</td>", row.group(1))
    assert cells[:5] == ["ClassifyImage", "4", "0", "0", "2"]  # reached, failed, caught, retries


def test_executions_show_graph_writes_an_svg_naming_every_state(executions, tmp_path):
    db_path, records = executions
    out = tmp_path / "pictures" / "unsure.svg"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCONES_")}
    env["SCONES_HOME"] = str(db_path.parent)
    result = subprocess.run(
        [SCONES, "executions", "show", "unsure", "--graph", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["status"] == "FAILED"
    svg = ET.parse(out).getroot()
    ns = {"svg": "http://www.w3.org/2000/svg"}
    nodes = {
        " ".join(t.text or "" for t in g.iterfind(".//svg:text", ns)): g.get("class")
        for g in svg.iterfind(".//svg:g", ns)
        if "state" in (g.get("class") or "").split()
    }
    names = {label.split()[0]: classes for label, classes in nodes.items()}
    assert set(names) == {*SINGLE, *LOW}
    assert [name for name, classes in names.items() if "failed" in classes.split()] == [
        "LowConfidence"
    ]
    assert "caught" in names["FilterInferences"].split()

    png = tmp_path / "unsure.png"
    result = subprocess.run(
        [SCONES, "executions", "show", records["unsure"].execution_id, "--graph", str(png)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    bad = subprocess.run(
        [SCONES, "executions", "show", "unsure", "--graph", str(tmp_path / "x.gif")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert bad.returncode != 0 and "x.gif" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "x.gif").exists()
