#!/usr/bin/env bash
# The test suite (creates the virtualenv first if needed): the layering contract, then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/lint-imports --no-cache >/dev/null || .venv/bin/lint-imports --no-cache  # silent when kept; details if broken
exec .venv/bin/python -m pytest -q -n 2 --dist loadfile "$@"
