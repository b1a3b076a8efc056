"""The whole loop from the command line: real models trained on the shared photos, the
workflow over the real endpoint, labels through the CLI, retraining with them, compare,
and a promotion that happens only when the candidate is better."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.request
from pathlib import Path

import pytest
from review_helpers import SCONES

from conftest import SHARED_VEHICLES, free_port, noise_png, wait_http
from scones.data.layout import LstEntry, format_lst, parse_lst
from scones.review.queue import ReviewQueue

STAGED_PHOTOS = 300  # the first 300 shared photos are the staged data
NEW_PHOTOS = 14  # the next ones arrive as drivers' photos the models never saw
# No linear probe: it would dominate both models alike, and the loop needs the epochs to matter.
FAST = ["--members", "1", "--no-linear-probe", "--width", "8", "--threads", "2", "--seed", "0"]
# Four small trainings and a dozen CLI runs: minutes on a loaded two-core machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]


def scones(home: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCONES_")}
    env["SCONES_HOME"] = str(home)
    return subprocess.run([SCONES, *args], capture_output=True, text=True, env=env, timeout=timeout)


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    """Stage 300 photos; v1 trained 1 epoch (production), v2 trained 4 epochs."""
    home = tmp_path_factory.mktemp("loop-home")
    entries = parse_lst((SHARED_VEHICLES / "train.lst").read_text(), source="train.lst")
    source = home / "source"
    (source / "train").mkdir(parents=True)
    for entry in entries[:STAGED_PHOTOS]:
        (source / "train" / entry.path).write_bytes(
            (SHARED_VEHICLES / "train" / entry.path).read_bytes()
        )
    rows = [LstEntry(i, e.label, e.path) for i, e in enumerate(entries[:STAGED_PHOTOS])]
    (source / "train.lst").write_text(format_lst(rows))
    ok(scones(home, "stage", "--source", str(source)))
    ok(scones(home, "train", "--epochs", "1", "--lr", "0.002", *FAST, "--promote"))
    ok(scones(home, "train", "--epochs", "4", *FAST))
    new = {
        e.path: (SHARED_VEHICLES / "train" / e.path).read_bytes()
        for e in entries[STAGED_PHOTOS : STAGED_PHOTOS + NEW_PHOTOS]
    }
    return home, new


def test_compare_reports_what_two_evaluate_runs_report(loop):
    home, _ = loop
    compared = json.loads(ok(scones(home, "compare", "--candidate", "2", "--json")))
    for role, ref in (("champion", "production"), ("candidate", "2")):
        evaluated = json.loads(ok(scones(home, "evaluate", "--model", ref, "--json")))
        figures = compared[role]
        assert figures["accuracy"] == evaluated["accuracy"]
        assert figures["ece"] == evaluated["ece"]
        assert figures["coverage"] == evaluated["at_threshold"]["coverage"]
        assert figures["selective_accuracy"] == evaluated["at_threshold"]["selective_accuracy"]
    assert compared["data"]["n"] == evaluated["n"]
    assert compared["candidate"]["accuracy"] > compared["champion"]["accuracy"]
    table = ok(scones(home, "compare", "--candidate", "2"))
    assert "McNemar exact test" in table and "selective accuracy" in table


def test_a_split_the_models_trained_on_is_refused_by_checksum(loop):
    home, _ = loop
    result = scones(home, "compare", "--candidate", "2", "--split", "train")
    assert result.returncode == 1
    assert "shares" in result.stderr and "sha256:" in result.stderr
    assert "training data of the champion" in result.stderr


def test_the_loop_label_retrain_compare_promote(loop):
    home, new_photos = loop
    incoming = home / "store" / "incoming"  # where drivers' photos arrive
    incoming.mkdir(parents=True, exist_ok=True)
    for name, data in new_photos.items():
        (incoming / name).write_bytes(data)
    (incoming / "not-a-vehicle.png").write_bytes(noise_png(11))

    # The workflow over the real endpoint serving production (v1, unsure of most photos).
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCONES_")}
    env["SCONES_HOME"] = str(home)
    serve = subprocess.Popen(
        [SCONES, "serve", "--model", "production", "--port", str(port), "--log-level", "error"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/ping", process=serve)
        keys = [f"incoming/{name}" for name in [*new_photos, "not-a-vehicle.png"]]
        args = [a for key in keys for a in ("--key", key)]
        run = scones(home, "run", *args, "--endpoint-url", url, "--json")
        assert run.returncode == 1  # some were not routed
        outcomes = [json.loads(line) for line in run.stdout.splitlines()]
        unsure = {o["s3_key"] for o in outcomes if o["status"] == "LOW_CONFIDENCE"}
        assert len(unsure) >= 5
        with urllib.request.urlopen(url + "/info", timeout=5) as response:
            version = str(json.loads(response.read())["model_version"])
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=30)

    # `scones run` added every threshold failure once; a backfill adds nothing more.
    items = [json.loads(line) for line in ok(scones(home, "review", "list", "--json")).splitlines()]
    assert {item["image"]["key"] for item in items} == unsure
    assert {item["model_version"] for item in items} == {version}
    synced = ok(scones(home, "review", "sync"))
    assert "added 0 items" in synced

    # Label: the true class of each photo, neither for the noise; three through the CLI,
    # the rest through the library (the page and the API have tests of their own).
    truth = {e.path: ["bicycle", "motorcycle"][e.label] for e in _shared_entries()}

    def true_label(item: dict) -> str:
        return truth.get(item["image"]["key"].removeprefix("incoming/"), "neither")

    for item in items[:3]:
        ok(scones(home, "review", "label", item["key"], true_label(item), "--by", "kim"))
    with ReviewQueue(home / "scones.db", classes=("bicycle", "motorcycle")) as queue:
        for item in items[3:]:
            queue.label(item["key"], true_label(item), by="lee")
    first = items[0]["key"]
    again = scones(home, "review", "label", first, "neither")
    assert again.returncode == 2 and "--relabel" in again.stderr
    ok(scones(home, "review", "label", first, "neither", "--relabel", "--note", "unsure"))
    ok(scones(home, "review", "undo", first))
    shown = json.loads(ok(scones(home, "review", "show", first)))
    assert (shown["history"][0]["by"], shown["history"][0]["undone_at"]) == ("kim", None)
    assert shown["history"][1]["label"] == "neither" and shown["history"][1]["undone_at"]
    assert shown["label"] == truth.get(shown["image"]["key"].removeprefix("incoming/"), "neither")

    # Retrain with the reviewed photos: they join the training split only.
    trainable = sum(1 for item in items if item["image"]["key"] != "incoming/not-a-vehicle.png")
    out = scones(home, "train", "--epochs", "4", *FAST, "--include-reviewed")
    ok(out)
    assert f"adding {trainable} reviewed images" in out.stderr
    card = json.loads(ok(scones(home, "models", "show", "3")))
    reviewed = card["training"]["reviewed"]
    assert reviewed["count"] == trainable
    assert reviewed["fingerprint"].startswith("sha256:")
    assert (
        card["training"]["n_train"]
        == json.loads(ok(scones(home, "models", "show", "2")))["training"]["n_train"] + trainable
    )

    # The retrained model beats production (v1, one barely trained epoch) and is promoted;
    # then v1, now the deliberately worse candidate, is refused with the numbers.
    promoted = ok(scones(home, "models", "promote", "3", "--if-better"))
    assert "production -> version 3 (was 1)" in promoted
    refused = scones(home, "models", "promote", "1", "--if-better", "--margin", "0.01")
    assert refused.returncode == 1
    assert "not promoting" in refused.stderr and "accuracy on test" in refused.stderr
    assert json.loads(ok(scones(home, "models", "show", "production")))["version"] == 3


def _shared_entries() -> list[LstEntry]:
    return parse_lst((SHARED_VEHICLES / "train.lst").read_text(), source="train.lst")
