"""One typed settings object, read from ``SCONES_*`` environment variables.

CLI flags override these values; every default is embedded so nothing needs configuring
to run on one machine. All state lives under ``home`` (``./.scones``) unless moved.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import Field, ModelWrapValidatorHandler, PrivateAttr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

OFFICIAL_CIFAR100_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
OFFICIAL_CIFAR100_MD5 = "eb9058c3a382ffc7106e4002c42a8d85"
DEFAULT_THRESHOLD = 0.93
MODEL_THRESHOLD = "model"  # SCONES_THRESHOLD=model: the threshold the model itself records


class Settings(BaseSettings):
    """Configuration for every stage. Environment: ``SCONES_<FIELD>`` (case-insensitive)."""

    model_config = SettingsConfigDict(env_prefix="SCONES_", extra="ignore", validate_default=True)

    home: Path = Field(
        default=Path(".scones"),
        description="Folder that holds all local state (store, database, cache).",
    )
    store: str = Field(
        default="",
        description="Object store URI: a folder, file:///abs/path or s3://bucket/prefix. "
        "Default: <home>/store.",
    )
    db: Path = Field(
        default=Path(""),
        description="SQLite database of workflow executions. Default: <home>/scones.db.",
    )
    cache_dir: Path = Field(
        default=Path(""),
        description="Download cache (the CIFAR-100 archive). Default: <home>/cache.",
    )
    s3_endpoint_url: str | None = Field(
        default=None,
        description="S3 API endpoint (MinIO, moto, ...). Unset: AWS_ENDPOINT_URL or AWS itself.",
    )
    source: str = Field(
        default=OFFICIAL_CIFAR100_URL,
        description="What `scones stage` reads: the CIFAR-100 archive URL, a local archive, "
        "or an already-staged folder or store prefix.",
    )
    classes: str = Field(
        default="bicycle,motorcycle",
        description="CIFAR-100 fine label names to stage, in label order.",
    )
    model_name: str = Field(
        default="vehicle-classifier", description="Name of the model in the registry."
    )
    threshold: float = Field(
        default=DEFAULT_THRESHOLD,
        ge=0.0,
        le=1.0,
        description="Confidence a prediction needs to be passed on to routing; `model`: the "
        "model's own recommended threshold (from its model.json), else the default.",
    )
    endpoint_url: str = Field(
        default="http://127.0.0.1:8080",
        description="URL of the inference endpoint the classify function calls locally.",
    )
    endpoint_name: str = Field(
        default="scones-endpoint", description="Endpoint name, as in SageMaker and data capture."
    )
    capture_uri: str = Field(
        default="",
        description="Where the endpoint writes data capture. Default: <store>/data_capture.",
    )

    _threshold_from_model: bool = PrivateAttr(default=False)

    @model_validator(mode="wrap")
    @classmethod
    def _model_threshold(cls, data: Any, handler: ModelWrapValidatorHandler[Settings]) -> Settings:
        # SCONES_THRESHOLD=model keeps `threshold` a number (the default) and remembers
        # that the model's recorded threshold wins where a model is at hand.
        from_model = isinstance(data, dict) and str(data.get("threshold", "")).strip().lower() == (
            MODEL_THRESHOLD
        )
        if from_model:
            data = {**data, "threshold": DEFAULT_THRESHOLD}
        settings = handler(data)
        settings._threshold_from_model = from_model
        return settings

    @property
    def threshold_from_model(self) -> bool:
        return self._threshold_from_model

    def routing_threshold(self, recorded: float | None) -> float:
        """The threshold to route with, given the threshold a model records (or None)."""
        if self._threshold_from_model and recorded is not None:
            return recorded
        return self.threshold

    @model_validator(mode="after")
    def _derive_paths(self) -> Settings:
        # Derived defaults follow `home`, so moving home moves everything at once.
        if not self.store:
            self.store = str(self.home / "store")
        if self.db == Path(""):
            self.db = self.home / "scones.db"
        if self.cache_dir == Path(""):
            self.cache_dir = self.home / "cache"
        if not self.capture_uri:
            self.capture_uri = self.store.rstrip("/") + "/data_capture"
        return self

    @property
    def class_names(self) -> list[str]:
        return [name.strip() for name in self.classes.split(",") if name.strip()]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()


def configuration_reference() -> str:
    """The settings as a Markdown table, for the README (a test keeps the two in step)."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.default
        shown = "(derived)" if default in ("", Path("")) else f"`{default}`"
        rows.append(f"| `SCONES_{name.upper()}` | {shown} | {field.description or ''} |")
    return "\n".join(rows) + "\n"


def write_readme_reference(readme: Path) -> None:
    """Replace the configuration table between the README's markers."""
    start, end = "<!-- configuration-reference:start -->\n", "<!-- configuration-reference:end -->"
    text = readme.read_text()
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(head + start + configuration_reference() + end + tail)


if __name__ == "__main__":  # python -m scones.settings --write-readme
    import sys

    if sys.argv[1:] == ["--write-readme"]:
        write_readme_reference(Path("README.md"))
    else:
        print(configuration_reference(), end="")
