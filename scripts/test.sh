#!/usr/bin/env bash
# The test suite (creates the virtualenv first if needed).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python -m pytest -q -n 2 --dist loadfile "$@"
