#!/usr/bin/env bash
# The main job: the demo pipeline end to end (simulated Alps region -> trained models -> metrics).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
date +%s > .demo_start  # for benchmarks/demo_stages.py (per-stage wall time)
if [ ! -d data ]; then
  # the raw data is versioned by data.dvc: pull it, or re-create it (the simulator is deterministic)
  dvc pull -q data.dvc 2>/dev/null || glaciermap simulate
fi
dvc add -q data
dvc push -q data.dvc 2>/dev/null || true
dvc repro
python scripts/summary.py
