#!/usr/bin/env bash
# Set up everything the test suite needs from scratch, then run it.
#
# Creates (or reuses) .venv, installs duro with its dev and cli extras, installs the pinned local
# Cosmos DB test server when its npm project exists, and runs pytest. Extra arguments go to
# pytest: `bash scripts/test.sh -k sqlite -x`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export PIP_DISABLE_PIP_VERSION_CHECK=1
python3 -m venv .venv
.venv/bin/pip install -q -e '.[dev,cli]'
if [[ -f tests/cosmos_server/package.json ]]; then
    npm ci --prefix tests/cosmos_server --no-audit --no-fund --loglevel=error
fi
exec .venv/bin/python -m pytest -q "$@"
