"""Secrets never appear: not in logs at any level, spans, reprs or error messages.

``_secrets_run`` runs workloads on Cosmos and SQLite with an encrypting codec, logging at DEBUG
and an OpenTelemetry SDK recording every span, and provokes the errors the secrets' misuse
raises; everything it captured is searched for the Cosmos account key and both AES keys, raw
and in every text encoding (``_scan.forms``). Fresh random secrets each run.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.cosmos.support import drop_database, unique_name

from . import _scan

ROOT = Path(__file__).resolve().parents[2]


def test_no_secret_appears_in_logs_spans_reprs_or_errors(
    cosmos_server_url: str, tmp_path: Path
) -> None:
    account_key = base64.b64encode(os.urandom(64)).decode()
    wrong_key = base64.b64encode(os.urandom(64)).decode()
    key_a, key_b = os.urandom(32), os.urandom(32)
    database = unique_name("secrets")
    env = {
        **os.environ,
        "SECRETS_COSMOS_URL": cosmos_server_url,
        "SECRETS_COSMOS_KEY": account_key,
        "SECRETS_WRONG_COSMOS_KEY": wrong_key,
        "SECRETS_KEY_A": key_a.hex(),
        "SECRETS_KEY_B": key_b.hex(),
        "SECRETS_DATABASE": database,
        "SECRETS_TMP": str(tmp_path),
    }
    try:
        run = subprocess.run(
            [sys.executable, "-m", "tests.security._secrets_run"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
    finally:
        drop_database(cosmos_server_url, database)
    assert run.returncode == 0, run.stderr[-5000:]
    captured = json.loads(run.stdout)
    logs, spans, texts = captured["logs"], captured["spans"], captured["texts"]

    # The capture is real: DEBUG from the HTTP stack and the runtime, spans of turns and
    # activities, and each provoked error.
    assert sum(" DEBUG " in line for line in logs) > 100
    assert any(" httpx " in line or " httpcore" in line for line in logs)
    assert {"duro.turn", "duro.activity"} <= {span["name"] for span in spans}
    assert any("declined" in json.dumps(span) for span in spans) or any(
        "declined" in line for line in logs
    )
    everything = "\n".join([*logs, *(json.dumps(s) for s in spans), *texts, run.stderr])
    for expected in (
        "key id 'B', which this codec does not hold",  # missing key, on read and on fetch
        "fails authentication under key id 'B'",
        "TLS certificate verification is off",
        "AesGcmCodec(active='B', key_ids=['A', 'B'])",
        "key=<hidden>",
    ):
        assert expected in everything, expected
    assert any("401" in text or "auth" in text.lower() for text in texts)

    haystack = everything.encode("utf-8", "surrogatepass")
    leaks = {
        name: _scan.found(haystack, secret)
        for name, secret in {
            "account key (text)": account_key.encode(),
            "account key (bytes)": base64.b64decode(account_key),
            "wrong account key (text)": wrong_key.encode(),
            "wrong account key (bytes)": base64.b64decode(wrong_key),
            "key A": key_a,
            "key B": key_b,
        }.items()
    }
    assert {name: forms for name, forms in leaks.items() if forms} == {}
