"""KServe's Python model server serving the benchmark model: `python kserve_app.py PORT`.

KServe's open inference protocol v1 (`POST /v1/models/vehicles:predict`, images base64 in
`{"instances": [{"image_bytes": {"b64": ...}}]}`, the form of its image examples), one
uvicorn worker, gRPC off. The Python model server has no dynamic batching of its own: in a
cluster KServe batches in its agent sidecar (a Go proxy in front of this server), which is not
part of this package, so each request is one model call here.
"""

from __future__ import annotations

import base64
import sys

import numpy as np
from kserve import Model, ModelServer
from vehicle_model import from_env


class VehicleKServeModel(Model):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.load()

    def load(self) -> bool:
        self.model = from_env()
        self.ready = True
        return self.ready

    def predict(self, payload: dict, headers: dict | None = None) -> dict:
        batch = np.stack(
            [
                self.model.preprocess(base64.b64decode(item["image_bytes"]["b64"]))
                for item in payload["instances"]
            ]
        )
        return {"predictions": self.model.predict(batch)}


if __name__ == "__main__":
    ModelServer(
        http_port=int(sys.argv[1]), workers=1, enable_grpc=False, enable_latency_logging=False
    ).start([VehicleKServeModel("vehicles")])
