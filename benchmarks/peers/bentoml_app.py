"""BentoML serving the benchmark model: `bentoml serve bentoml_app:VehicleClassifier`.

As BentoML's documentation recommends for throughput: an adaptive-batching API
(batchable=True, max_batch_size; BentoML picks the wait itself within max_latency_ms, it has
no fixed delay knob), one worker process. Images arrive as multipart uploads, the form of
BentoML's image examples (PIL.Image parameters).
"""

from __future__ import annotations

import bentoml
import numpy as np
from PIL import Image
from vehicle_model import batching_from_env, from_env

MAX_BATCH_SIZE, _DELAY_S = batching_from_env()


@bentoml.service(workers=1, traffic={"timeout": 60})
class VehicleClassifier:
    def __init__(self) -> None:
        self.model = from_env()

    @bentoml.api(batchable=True, max_batch_size=MAX_BATCH_SIZE, max_latency_ms=10_000)
    def classify(self, images: list[Image.Image]) -> list[list[float]]:
        batch = np.stack([self.model.preprocess_image(image) for image in images])
        return self.model.predict(batch)
