"""MLflow pyfunc model (models-from-code: nothing pickled) wrapping a safetensors bundle."""

from __future__ import annotations

import mlflow
import numpy as np
import torch
from mlflow.pyfunc import PythonModel


class GlacierModel(PythonModel):
    """Input (B, C, H, W) float32 normalised bands -> glacier probability (B, 1, H, W)."""

    def load_context(self, context) -> None:
        from glaciermap.models.serialize import load_bundle

        self.model, self.bundle = load_bundle(context.artifacts["bundle"])

    def predict(self, context, model_input, params=None):
        x = torch.as_tensor(np.asarray(model_input, dtype=np.float32))
        with torch.inference_mode():
            return torch.sigmoid(self.model(x)).numpy()


mlflow.models.set_model(GlacierModel())
