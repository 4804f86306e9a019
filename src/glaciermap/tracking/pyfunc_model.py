"""MLflow pyfunc model (models-from-code: nothing pickled) wrapping a safetensors bundle.

The served model maps what `glaciermap infer` maps: the input is a normalised cube (or a batch of
them) of any size, predicted window by window with the bundle's patch size and blended
(`glaciermap.data.windows.predict_cube`), on the accelerator when one is present. NaN marks no
data, so a sensor group without data in a window is absent for the model, as in infer. The
probabilities are calibrated with the bundle's temperature; a bundle without calibration.json is
refused when the model loads.

Input: (B, C, H, W) or (C, H, W) float32, bands normalised with the bundle's statistics, in the
sensor set's order. Params (optional): lon, lat (degrees; GlaViTU's location encoding), stride,
device. Output: glacier probability (B, 1, H, W).
"""

from __future__ import annotations

import mlflow
import numpy as np
from mlflow.pyfunc import PythonModel


class GlacierModel(PythonModel):
    """Normalised cube(s) -> glacier probability, through the same windowing as `glaciermap infer`."""

    def load_context(self, context) -> None:
        from glaciermap.models.serialize import load_bundle, require_calibrated

        self.model, self.bundle = load_bundle(context.artifacts["bundle"])
        self.temperature = require_calibrated(self.bundle)

    def predict(self, context, model_input, params=None):
        from glaciermap.data.windows import PreparedCube, predict_cube

        params = params or {}
        x = np.asarray(model_input, dtype=np.float32)
        batch = x[None] if x.ndim == 3 else x
        size = self.bundle.patch_size
        location = np.array([params.get("lon", 0.0), params.get("lat", 0.0)], np.float32)
        out = []
        for image in batch:
            h, w = image.shape[-2:]
            cube = PreparedCube(image=image, target=np.zeros((h, w), np.uint8), glacier=np.zeros((h, w), np.uint8),
                                valid=np.ones((h, w), bool), location=location,
                                glacier_pixels=np.zeros((0, 2), np.int64))
            out.append(predict_cube(self.model, cube, self.bundle.groups, size=size,
                                    stride=int(params.get("stride", size * 3 // 4)), temperature=self.temperature,
                                    device=params.get("device", "auto"))[None])
        return np.stack(out)


mlflow.models.set_model(GlacierModel())
