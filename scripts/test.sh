#!/usr/bin/env bash
# Set up everything the test suite needs from scratch, then run it.
#
# Creates (or reuses) .venv, installs duro with its dev, cli and ui extras, installs the pinned
# local Cosmos DB test server when its npm project exists, installs Debian's Chromium for the
# browser test of `duro ui` when it is missing (as root, with apt-get; about 30 s), and runs
# pytest on two worker processes (pytest-xdist; DURO_TEST_WORKERS changes the count, 0 runs
# in this process). Extra arguments go to pytest: `bash scripts/test.sh -k sqlite -x`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export PIP_DISABLE_PIP_VERSION_CHECK=1
python3 -m venv .venv
.venv/bin/pip install -q -e '.[dev,cli,ui]'
if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
        echo "installing Chromium (Debian's chromium package) for tests/ui/test_browser.py"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
    else
        echo "no Chromium and no root apt-get: tests/ui/test_browser.py will fail" \
            "(install chromium, or set DURO_SKIP_BROWSER=1 to skip it)" >&2
    fi
fi
if [[ -f tests/cosmos_server/package.json ]]; then
    npm ci --prefix tests/cosmos_server --no-audit --no-fund --loglevel=error
fi
exec .venv/bin/python -m pytest -q -n "${DURO_TEST_WORKERS:-2}" "$@"
