"""LitServe serving the benchmark model: `python litserve_app.py PORT` in LitServe's venv.

As LitServe's documentation recommends for throughput: batching on the LitAPI
(max_batch_size, batch_timeout), one inference worker per device (CPU), ZeroMQ queues
(fast_queue), one API server process. Images arrive base64-encoded in JSON, the form
LitServe's image examples use (its handler parses every non-form body as JSON).
"""

from __future__ import annotations

import base64
import sys

import litserve as ls
import numpy as np
from vehicle_model import VehicleModel, batching_from_env, from_env


class VehicleAPI(ls.LitAPI):
    def setup(self, device: str) -> None:
        self.model: VehicleModel = from_env()

    def decode_request(self, request: dict) -> np.ndarray:
        return self.model.preprocess(base64.b64decode(request["image"]))

    def batch(self, inputs: list[np.ndarray]) -> np.ndarray:
        return np.stack(inputs)

    def predict(self, batch: np.ndarray) -> list[list[float]]:
        return self.model.predict(batch)

    def unbatch(self, output: list[list[float]]) -> list[list[float]]:
        return output

    def encode_response(self, output: list[float]) -> dict:
        return {"probabilities": output}


if __name__ == "__main__":
    max_batch_size, delay_s = batching_from_env()
    api = VehicleAPI(max_batch_size=max_batch_size, batch_timeout=delay_s, api_path="/predict")
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=1, fast_queue=True)
    server.run(
        host="127.0.0.1",
        port=int(sys.argv[1]),
        num_api_servers=1,
        log_level="warning",
        generate_client_file=False,
    )
