"""glaciermap: map glaciers from satellite imagery and measure how fast each one shrinks."""

import os

__version__ = "0.1.0"

# No outbound calls: MLflow (>= 3.2) reports usage to its telemetry host unless told not to. Set
# before any stage imports MLflow; a user's own setting wins (docs/reliability.md, "Network").
for _var in ("MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK"):
    os.environ.setdefault(_var, "true")
