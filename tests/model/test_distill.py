"""Distillation: the loss, the teacher's answers for each view, a student that obeys them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from model_helpers import TINY_SCRATCH, run_cli, shared_sample, staged_shared, write_layout
from PIL import Image

from scones.errors import UsageError
from scones.model.artifact import MODEL_JSON, ModelCard, OnnxClassifier, softmax
from scones.model.dataset import load_split
from scones.model.distill import TeacherError, distillation_loss, teacher_targets, to_pixels
from scones.model.efficientnet import EfficientNetLite0
from scones.model.evaluate import predict_pixels
from scones.model.preprocess import Preprocessing, normalize_hwc_uint8, resize_for
from scones.model.train import TrainConfig, export_onnx, make_config, train_model
from scones.store import open_store

TINY_STUDENT = {**TINY_SCRATCH, "epochs": 20, "threads": 1}


def test_loss_is_cross_entropy_without_a_teacher_and_kl_with_one() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 2, generator=generator)
    labels = torch.tensor([0, 1, 0, 1, 1, 0])
    teacher = torch.softmax(torch.randn(6, 2, generator=generator), dim=1)
    hard = F.cross_entropy(logits, labels, label_smoothing=0.1)
    common = {"temperature": 2.0, "label_smoothing": 0.1}
    assert torch.equal(distillation_loss(logits, labels, None, weight=0.7, **common), hard)
    assert torch.equal(distillation_loss(logits, labels, teacher, weight=0.0, **common), hard)
    # A student whose softened output is the teacher's has nothing left to learn from it.
    mimic = 2.0 * torch.log(teacher)
    assert distillation_loss(mimic, labels, teacher, weight=1.0, **common) < 1e-6
    soft = distillation_loss(logits, labels, teacher, weight=1.0, **common)
    assert soft > 0.0
    mixed = distillation_loss(logits, labels, teacher, weight=0.7, **common)
    assert torch.allclose(mixed, 0.3 * hard + 0.7 * soft)


def test_teacher_options_are_checked() -> None:
    assert TrainConfig(teacher="production").backbone == "scratch"  # a teacher implies it
    assert TrainConfig(teacher="3", backbone="scratch").epochs == 34  # scratch's own defaults
    with pytest.raises(UsageError, match="teacher distils into the scratch network"):
        make_config({"teacher": "production", "backbone": "efficientnet-lite0"})
    with pytest.raises(UsageError, match=r"distill_weight=1\.5"):
        make_config({"teacher": "production", "distill_weight": 1.5})
    with pytest.raises(UsageError, match=r"distill_temperature=0"):
        make_config({"teacher": "production", "distill_temperature": 0})
    with pytest.raises(UsageError, match="teacher"):
        make_config({"teacher": ""})


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory, shared_vehicles: Path) -> Path:
    return staged_shared(tmp_path_factory.mktemp("staged"), shared_vehicles, 16, 6)


@pytest.fixture(scope="module")
def contrary_teacher(tmp_path_factory: pytest.TempPathFactory, shared_vehicles: Path) -> Path:
    """A model trained on the same images with every label swapped: it calls bicycles
    motorcycles. A student that learns its soft labels must learn that too."""
    swapped = {
        "train": [(1 - label, png) for label, png in shared_sample(shared_vehicles, 16)],
        "validation": [(1 - label, png) for label, png in shared_sample(shared_vehicles, 6, 16)],
    }
    root = write_layout(tmp_path_factory.mktemp("swapped"), swapped)
    config = TrainConfig(**TINY_STUDENT)
    trained = train_model(
        open_store(str(root)), config, tmp_path_factory.mktemp("t") / "m", name="contrary"
    )
    return trained.model_dir


def agreement_with_labels(model_dir: Path, store_root: Path) -> float:
    classifier = OnnxClassifier(model_dir)
    images = load_split(open_store(str(store_root)), "train", prep=classifier.preprocessing)
    predicted = predict_pixels(classifier, images.pixels).argmax(1)
    return float((predicted == images.labels).mean())


@pytest.mark.slow
def test_a_student_learns_what_its_teacher_says(
    contrary_teacher: Path, staged: Path, tmp_path: Path
) -> None:
    # The teacher has learned the swapped labels (it disagrees with the true ones).
    assert agreement_with_labels(contrary_teacher, staged) < 0.3
    store = open_store(str(staged))
    alone = train_model(store, TrainConfig(**TINY_STUDENT), tmp_path / "a", name="alone")
    config = TrainConfig(teacher=str(contrary_teacher), distill_weight=1.0, **TINY_STUDENT)
    student = train_model(
        store, config, tmp_path / "s", name="student", teacher_dir=contrary_teacher
    )
    # Validation accuracy on the true labels after the last epoch (the history keeps every
    # epoch; the saved checkpoint is chosen on the true labels, so it would hide this).
    assert alone.card.training["history"][-1]["val_accuracy"] > 0.7
    assert student.card.training["history"][-1]["val_accuracy"] < 0.3  # it obeyed the teacher
    card = json.loads((student.model_dir / MODEL_JSON).read_text())
    recorded = card["training"]["teacher"]
    assert recorded["ref"] == str(contrary_teacher)
    assert recorded["name"] == "contrary"
    assert recorded["onnx_sha256"].startswith("sha256:")
    assert recorded["train_agreement"] < 0.3
    assert card["training"]["distill_weight"] == 1.0
    assert "teacher's soft labels" in card["architecture"]["distilled"]


def test_pixels_survive_normalisation_and_back(staged: Path) -> None:
    prep = Preprocessing()
    images = load_split(open_store(str(staged)), "train", prep=prep)
    inputs = torch.from_numpy(normalize_hwc_uint8(images.pixels, prep))
    assert np.array_equal(to_pixels(inputs, prep), images.pixels)


def test_teacher_scores_each_view_at_its_own_size(tmp_path: Path, staged: Path) -> None:
    size = 40  # not the student's 32: the teacher sees each view resized to its contract
    torch.manual_seed(0)
    head = torch.nn.Sequential(EfficientNetLite0(size), torch.nn.Linear(1000, 2)).eval()
    teacher_dir = tmp_path / "teacher"
    teacher_dir.mkdir()
    export_onnx(head, teacher_dir / "model.onnx", (3, size, size))
    teacher_prep = Preprocessing(input_size=(size, size), mean=(0.5,) * 3, std=(0.5,) * 3)
    card = ModelCard(
        name="t",
        class_names=["bicycle", "motorcycle"],
        input_shape=(3, size, size),
        preprocessing=teacher_prep,
        temperature=0.5,
    )
    (teacher_dir / MODEL_JSON).write_text(card.model_dump_json())
    prep = Preprocessing()
    images = load_split(open_store(str(staged)), "train", prep=prep)
    inputs = torch.from_numpy(normalize_hwc_uint8(images.pixels, prep))

    def targets(seed: int, classes: list[str] | None = None):
        return teacher_targets(
            teacher_dir,
            inputs,
            images.labels,
            classes or ["bicycle", "motorcycle"],
            prep,
            views=3,
            temperature=3.0,
            crop_padding=4,
            cutout_size=8,
            seed=seed,
            ref="t",
        )

    pool = targets(seed=0)
    assert pool.views.shape == (len(images), 3, 3, 32, 32)
    assert pool.probabilities.shape == (len(images), 3, 2)
    assert torch.equal(pool.views[:, 0], inputs)  # view 0 is the image itself
    assert not torch.equal(pool.views[:, 1], inputs)  # the others are augmented
    # View 0's answer is what the served teacher says of the 32 px image, resized to 40 px,
    # at its own temperature (0.5) times the distillation temperature (3).
    resized = np.stack(
        [np.asarray(resize_for(Image.fromarray(p), teacher_prep)) for p in images.pixels]
    )
    logits = OnnxClassifier(teacher_dir).logits(normalize_hwc_uint8(resized, teacher_prep))
    assert np.allclose(pool.probabilities[:, 0].numpy(), softmax(logits, 1.5), atol=1e-5)
    assert pool.description["input_size"] == [size, size]
    assert pool.description["views_per_image"] == 3
    assert torch.equal(targets(seed=0).views, pool.views)  # a seed repeats
    assert not torch.equal(targets(seed=1).views, pool.views)
    with pytest.raises(
        TeacherError, match=r"outputs classes \['bicycle', 'motorcycle'\].*\['car', 'bus'\]"
    ):
        targets(seed=0, classes=["car", "bus"])


def test_cli_teacher_that_does_not_resolve_is_named(tmp_path: Path, staged: Path) -> None:
    result = run_cli(
        "train", "--store", str(staged), "--teacher", "7", "--epochs", "1", "--width", "4"
    )
    assert result.returncode != 0
    assert "model reference '7'" in result.stderr and "no version 7" in result.stderr
    assert not (staged / "models").exists()  # nothing trained, nothing registered
