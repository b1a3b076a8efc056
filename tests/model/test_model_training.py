"""Training: loss falls, the artifact round-trips, ONNX matches PyTorch, runs repeat, bad data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from model_helpers import TINY_SCRATCH, run_cli, shared_sample, staged_shared, write_layout

from scones.data.layout import LayoutError
from scones.errors import UsageError
from scones.images import IMAGE_STAT_NAMES
from scones.model.artifact import (
    BASELINE_JSON,
    MODEL_JSON,
    MODEL_ONNX,
    MODEL_WEIGHTS,
    ArtifactError,
    OnnxClassifier,
    extract_artifact,
    pack_artifact,
    read_baseline,
    read_card,
)
from scones.model.baseline import CONFIDENCE_BIN_EDGES
from scones.model.net import VehicleNet, count_macs, count_parameters
from scones.model.preprocess import Preprocessing, preprocess_batch
from scones.model.train import (
    TrainConfig,
    TrainingDataError,
    export_onnx,
    fit,
    load_config,
    load_training_data,
    make_config,
    train_model,
)
from scones.store import open_store

TINY = TINY_SCRATCH


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory, shared_vehicles: Path) -> Path:
    return staged_shared(tmp_path_factory.mktemp("staged"), shared_vehicles)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, staged: Path):
    config = TrainConfig(**TINY)
    return train_model(
        open_store(str(staged)), config, tmp_path_factory.mktemp("model") / "m", name="tiny"
    )


def test_training_loss_falls(trained) -> None:
    history = trained.card.training["history"]
    assert len(history) == TINY["epochs"]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert 1 <= trained.card.training["best_epoch"] <= TINY["epochs"]


def test_artifact_is_self_describing(trained) -> None:
    model_dir = trained.model_dir
    for name in (MODEL_JSON, MODEL_ONNX, MODEL_WEIGHTS, BASELINE_JSON):
        assert (model_dir / name).is_file(), name
    card = read_card(model_dir)
    assert card.class_names == ["bicycle", "motorcycle"]
    assert card.input_shape == (3, 32, 32)
    assert card.preprocessing == Preprocessing()
    assert card.temperature > 0
    assert card.training["epochs"] == TINY["epochs"] and card.training["seed"] == 0
    assert card.training["n_train"] == 32 and card.training["n_validation"] == 12
    assert card.metrics["n"] == 12 and 0.0 <= card.metrics["accuracy"] <= 1.0
    assert card.metrics["onnx_max_abs_diff"] < 1e-4
    assert card.data_fingerprint.startswith("sha256:")
    assert card.code_version and card.created_at.endswith("Z")
    assert card.architecture["parameters"] == count_parameters(VehicleNet(2, TINY["width"]))


def test_without_a_test_split_the_baseline_is_validation_and_says_so(
    trained, shared_vehicles: Path, tmp_path: Path
) -> None:
    import shutil

    from scones.model.baseline import write_baseline
    from scones.model.dataset import load_split

    layout = write_layout(
        tmp_path / "layout",
        {
            "train": shared_sample(shared_vehicles, 4),
            "validation": shared_sample(shared_vehicles, 5, skip=4),
        },
    )
    store = open_store(str(layout))
    prep = Preprocessing()
    validation = load_split(store, "validation", prep=prep, num_classes=2, with_statistics=True)
    model_dir = Path(shutil.copytree(trained.model_dir, tmp_path / "model"))
    write_baseline(
        model_dir, store, class_names=["bicycle", "motorcycle"], prep=prep, validation=validation
    )
    baseline = read_baseline(model_dir)
    assert baseline is not None
    assert baseline["split"] == "validation" and baseline["selection_saw_it"] is True
    assert baseline["n"] == 10 and len(baseline["image_stats"]["brightness"]) == 10


def test_artifact_round_trips_through_tar(trained, tmp_path: Path) -> None:
    archive = pack_artifact(trained.model_dir, tmp_path / "model.tar.gz")
    extracted = extract_artifact(archive, tmp_path / "x")
    batch = np.random.default_rng(0).normal(size=(3, 3, 32, 32)).astype(np.float32)
    before = OnnxClassifier(trained.model_dir).predict(batch)
    after = OnnxClassifier(extracted).predict(batch)
    np.testing.assert_array_equal(before, after)
    np.testing.assert_allclose(after.sum(axis=1), 1.0, rtol=1e-5)


def test_safetensors_weights_reproduce_the_onnx_graph(trained, shared_vehicles: Path) -> None:
    from safetensors.torch import load_file

    card = read_card(trained.model_dir)
    net = VehicleNet(2, card.architecture["width"])
    net.load_state_dict(load_file(str(trained.model_dir / MODEL_WEIGHTS)))
    net.eval()
    images = [data for _, data in shared_sample(shared_vehicles, 4, skip=100)]
    inputs = preprocess_batch(images, card.preprocessing)
    with torch.no_grad():
        tensor = torch.from_numpy(inputs)
        expected = 0.5 * (net(tensor) + net(tensor.flip(3)))  # the graph averages the mirror
    actual = OnnxClassifier(trained.model_dir).logits(inputs)
    assert np.abs(actual - expected.numpy()).max() < 1e-4


def test_onnx_export_matches_pytorch_for_any_batch_size(tmp_path: Path) -> None:
    torch.manual_seed(1)
    net = VehicleNet(2, width=8).eval()
    export_onnx(net, tmp_path / MODEL_ONNX, (3, 32, 32))
    import onnxruntime as ort

    session = ort.InferenceSession(str(tmp_path / MODEL_ONNX))
    for batch in (1, 7):
        x = np.random.default_rng(batch).normal(size=(batch, 3, 32, 32)).astype(np.float32)
        (onnx_logits,) = session.run(["logits"], {"input": x})
        with torch.no_grad():
            t = torch.from_numpy(x)
            torch_logits = (0.5 * (net(t) + net(t.flip(3)))).numpy()
        assert onnx_logits.shape == (batch, 2)
        assert np.abs(onnx_logits - torch_logits).max() < 1e-4


def test_baseline_follows_the_contract(trained) -> None:
    baseline = read_baseline(trained.model_dir)
    assert baseline is not None
    # The test split: neither checkpoint selection nor calibration looked at it.
    assert baseline["format_version"] == 1 and baseline["split"] == "test"
    assert baseline["selection_saw_it"] is False
    assert baseline["n"] == 12 and baseline["class_names"] == ["bicycle", "motorcycle"]
    assert sum(baseline["class_counts"].values()) == 12
    assert baseline["label_mix"] == {"bicycle": 0.5, "motorcycle": 0.5}
    assert sum(baseline["class_mix"].values()) == pytest.approx(1.0)
    assert baseline["confidence_bin_edges"] == list(CONFIDENCE_BIN_EDGES)
    assert sum(baseline["confidence_histogram"]) == 12
    assert set(baseline["image_stats"]) == set(IMAGE_STAT_NAMES)
    assert baseline["image_stats"]["width"] == [32.0] * 12
    assert all(0 < b < 1 for b in baseline["image_stats"]["brightness"])


def test_training_is_deterministic_for_a_seed(staged: Path) -> None:
    prep = Preprocessing()
    data = load_training_data(open_store(str(staged)), prep)
    config = {**TINY, "epochs": 2, "cutout": 6}

    def weights(seed: int) -> dict[str, torch.Tensor]:
        return fit(TrainConfig(**config, seed=seed), data, prep).net.state_dict()

    first, again, other = weights(3), weights(3), weights(4)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_ensemble_is_one_graph_averaging_its_members(staged: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    store = open_store(str(staged))
    config = {**TINY, "epochs": 2}
    trained = train_model(
        store, TrainConfig(**{**config, "members": 2}), tmp_path / "m", name="ensemble"
    )
    card = read_card(trained.model_dir)
    single = VehicleNet(2, TINY["width"])
    assert card.architecture["members"] == 2
    assert card.architecture["parameters"] == 2 * count_parameters(single)
    assert card.architecture["macs_per_image"] == 2 * 2 * count_macs(single)  # members x flip
    assert len(card.training["best_epochs"]) == 2
    assert [row["member"] for row in card.training["history"]] == [0, 0, 1, 1]

    weights = load_file(str(trained.model_dir / MODEL_WEIGHTS))
    nets = []
    for member in range(2):
        net = VehicleNet(2, TINY["width"])
        prefix = f"members.{member}."
        net.load_state_dict(
            {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}
        )
        nets.append(net.eval())
    first, second = (net.state_dict() for net in nets)
    assert not all(torch.equal(first[k], second[k]) for k in first)  # seeds differ

    # Member 0 is exactly the single-network run with the same seed.
    prep = Preprocessing()
    alone = fit(TrainConfig(**config), load_training_data(store, prep), prep).net.state_dict()
    assert all(torch.equal(alone[k], first[k]) for k in alone)

    inputs = np.random.default_rng(5).normal(size=(3, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        t = torch.from_numpy(inputs)
        expected = sum(0.5 * (net(t) + net(t.flip(3))) for net in nets) / 2
    actual = OnnxClassifier(trained.model_dir).logits(inputs)
    assert np.abs(actual - expected.numpy()).max() < 1e-4


def test_macs_are_counted() -> None:
    net = VehicleNet(2, width=32)
    assert 90e6 < count_macs(net) < 100e6  # one view; the served graph runs two (flip)
    assert 1.0e6 < count_parameters(net) < 2.0e6


# --- bad input --------------------------------------------------------------------------


def test_empty_training_set_is_refused(tmp_path: Path, shared_vehicles: Path) -> None:
    root = write_layout(tmp_path, {"train": [], "validation": shared_sample(shared_vehicles, 2)})
    with pytest.raises(
        TrainingDataError, match=r"train\.lst has 0 images; training needs at least 2"
    ):
        load_training_data(open_store(str(root)), Preprocessing())


def test_single_class_training_set_is_refused(tmp_path: Path, shared_vehicles: Path) -> None:
    bicycles = [row for row in shared_sample(shared_vehicles, 4) if row[0] == 0]
    root = write_layout(
        tmp_path, {"train": bicycles, "validation": shared_sample(shared_vehicles, 1)}
    )
    with pytest.raises(TrainingDataError, match="only class 'bicycle'"):
        load_training_data(open_store(str(root)), Preprocessing())


def test_missing_validation_split_is_refused(tmp_path: Path, shared_vehicles: Path) -> None:
    root = write_layout(tmp_path, {"train": shared_sample(shared_vehicles, 2), "validation": []})
    with pytest.raises(TrainingDataError, match="validation"):
        load_training_data(open_store(str(root)), Preprocessing())


def test_lst_naming_missing_images_is_refused(tmp_path: Path, shared_vehicles: Path) -> None:
    root = write_layout(
        tmp_path,
        {
            "train": shared_sample(shared_vehicles, 2),
            "validation": shared_sample(shared_vehicles, 1),
        },
    )
    (root / "train" / "train_0001.png").unlink()
    with pytest.raises(
        LayoutError, match=r"names 1 images that are not in the store: .*train_0001\.png"
    ):
        load_training_data(open_store(str(root)), Preprocessing())


def test_undecodable_image_is_named(tmp_path: Path, shared_vehicles: Path) -> None:
    root = write_layout(
        tmp_path,
        {
            "train": shared_sample(shared_vehicles, 2),
            "validation": shared_sample(shared_vehicles, 1),
        },
    )
    (root / "train" / "train_0002.png").write_bytes(b"not a png")
    with pytest.raises(LayoutError, match=r"train_0002\.png"):
        load_training_data(open_store(str(root)), Preprocessing())


def test_config_file_and_bad_hyperparameters(tmp_path: Path) -> None:
    good = tmp_path / "train.toml"
    good.write_text("epochs = 7\nlr = 0.05\n")
    assert make_config(load_config(good)).epochs == 7
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"epochs": 0, "learning_rate": 1}))
    with pytest.raises(UsageError, match=r"epochs=0.*learning_rate"):
        make_config(load_config(bad))
    for members in (0, 9):
        with pytest.raises(UsageError, match=f"members={members}"):
            make_config({"members": members})
    with pytest.raises(UsageError, match="not valid"):
        broken = tmp_path / "broken.json"
        broken.write_text("{")
        load_config(broken)


def test_cli_train_single_class_fails_with_one_line(tmp_path: Path, shared_vehicles: Path) -> None:
    bicycles = [row for row in shared_sample(shared_vehicles, 3) if row[0] == 0]
    root = write_layout(
        tmp_path / "s", {"train": bicycles, "validation": shared_sample(shared_vehicles, 1)}
    )
    result = run_cli("train", "--store", str(root), "--epochs", "1", "--width", "4")
    assert result.returncode != 0
    assert "only class 'bicycle'" in result.stderr
    assert not (root / "models").exists()  # nothing registered


def test_cli_train_registers_and_promotes(tmp_path: Path, shared_vehicles: Path) -> None:
    root = staged_shared(tmp_path / "s", shared_vehicles, train=8, validation=3)
    config = tmp_path / "c.json"
    config.write_text(
        json.dumps({"backbone": "scratch", "width": 4, "batch_size": 8, "device": "cpu"})
    )
    result = run_cli(
        "train", "--store", str(root), "--epochs", "1", "--config", str(config), "--promote"
    )
    assert result.returncode == 0, result.stderr
    assert "registered vehicle-classifier version 1" in result.stdout
    assert (root / "models" / "vehicle-classifier" / "1" / "model.tar.gz").is_file()
    aliases = json.loads((root / "models" / "vehicle-classifier" / "aliases.json").read_text())
    assert aliases == {"production": 1}
    # The "done when": evaluate the promoted model on the staged folder.
    evaluated = run_cli("evaluate", "--model", "production", "--data", str(root), "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads(evaluated.stdout)
    assert report["n"] == 6 and report["model"]["version"] == 1


def test_inconsistent_model_json_is_refused(trained, tmp_path: Path) -> None:
    import shutil

    broken = Path(shutil.copytree(trained.model_dir, tmp_path / "broken"))
    card = json.loads((broken / MODEL_JSON).read_text())
    card["class_names"] = ["bicycle", "motorcycle", "scooter"]
    (broken / MODEL_JSON).write_text(json.dumps(card))
    with pytest.raises(ArtifactError, match="3 names but the ONNX graph outputs 2"):
        OnnxClassifier(broken)
    (broken / MODEL_JSON).unlink()
    with pytest.raises(ArtifactError, match=r"has no model\.json"):
        OnnxClassifier(broken)
