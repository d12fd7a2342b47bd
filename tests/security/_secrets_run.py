"""Runs workloads with every secret in play and prints everything observable as JSON.

Run by ``test_secrets.py`` in a separate process: OpenTelemetry's global tracer provider can
be set once per process, and the rest of the suite runs with none. The secrets come in through
the environment (``SECRETS_*``), so nothing here knows them as literals:

* the Cosmos account key, used by the provider and checked by the compat layer, and a wrong
  one a misconfigured provider sends;
* two AES keys, ``A`` and ``B``, in the payload codec.

Captured, all of it printed: every log record of every logger at DEBUG, formatted with its
traceback; every span the SDK's in-memory exporter finished, as JSON; the ``repr`` and ``str``
of the objects that hold secrets; and the messages and tracebacks of the errors that the
secrets' misuse raises (wrong account key, missing and wrong AES keys, invalid keys).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from pathlib import Path

import anyio
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import duro
from duro.providers import Provider
from duro_cosmos import CosmosConfig, CosmosProvider, HttpRetryPolicy
from duro_cosmos._rest import CosmosRestClient
from tests.cosmos.compat import CompatTransport
from tests.cosmos.compat_faults import FaultPlan
from tests.e2e._support import options

from ._workload import expected_vault_output, registry, send_vault_inputs

FAST_RETRY = HttpRetryPolicy(base_delay=0.001, max_delay=0.01)


@registry.activity
async def declined(ctx: duro.ActivityContext, card: str) -> str:
    raise ValueError(f"card {card} declined")


@registry.orchestration
async def checkout(ctx: duro.OrchestrationContext, card: str) -> str:
    ctx.logger.debug("charging %s", card)
    try:
        return str(await ctx.schedule_activity(declined, card))
    except duro.ActivityFailedError as exc:
        return f"failed: {exc.error_message}"


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


texts: list[str] = []


def note_error(what: str, exc: BaseException) -> None:
    """An error as a user would see it: message, repr, traceback (also logged)."""
    texts.extend([str(exc), repr(exc), "".join(traceback.format_exception(exc))])
    logging.getLogger("secrets-run").exception("expected failure: %s", what, exc_info=exc)


async def run_workload(store: Provider, prefix: str) -> None:
    client = duro.Client(store, registry=registry)
    async with duro.Runtime(store, registry, options()):
        await send_vault_inputs(client, f"{prefix}-v1")
        await client.start_orchestration(f"{prefix}-c1", checkout, "4111-1111")
        status = await client.wait_for_orchestration(f"{prefix}-v1", timeout=60)
        if status.output != expected_vault_output(f"{prefix}-v1"):
            raise AssertionError(f"wrong output: {status.output!r}")
        await client.wait_for_orchestration(f"{prefix}-c1", timeout=60)
    texts.extend(
        [repr(store), str(store), repr(client), repr(await client.get_status(f"{prefix}-v1"))]
    )


async def main() -> None:
    env = os.environ
    url, cosmos_key = env["SECRETS_COSMOS_URL"], env["SECRETS_COSMOS_KEY"]
    key_a, key_b = bytes.fromhex(env["SECRETS_KEY_A"]), bytes.fromhex(env["SECRETS_KEY_B"])
    database, tmp = env["SECRETS_DATABASE"], Path(env["SECRETS_TMP"])

    capture = Capture()
    logging.basicConfig(level=logging.DEBUG, handlers=[capture], force=True)
    logging.captureWarnings(True)
    exporter = InMemorySpanExporter()
    tracing = TracerProvider()
    tracing.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(tracing)

    codec = duro.AesGcmCodec({"A": key_a, "B": key_b}, active="B")
    texts.extend([repr(codec), str(codec)])

    # Cosmos, with throttled batches so the retry paths log too.
    faults = FaultPlan(seed=0)
    faults.add(kind="batch", status=429, retry_after_ms=5, times=3)
    transport = CompatTransport(url, key=cosmos_key, faults=faults)
    config = CosmosConfig(url, cosmos_key, database, "secrets")
    texts.extend([repr(config), str(config)])
    cosmos = CosmosProvider(config, transport=transport, codec=codec, retry=FAST_RETRY)
    texts.extend([repr(cosmos.config), repr(cosmos._ctx.store.client)])
    async with cosmos:
        await run_workload(cosmos, "cosmos")
        texts.append(repr(cosmos.statistics()))

    # SQLite, then the same file read by a worker that lacks key B.
    sqlite = duro.SqliteProvider(tmp / "secrets.db", codec=codec)
    async with sqlite:
        await run_workload(sqlite, "sqlite")
        await duro.Client(sqlite, registry=registry).start_orchestration("late", "vault", {})
    only_a = duro.SqliteProvider(tmp / "secrets.db", codec=duro.AesGcmCodec({"A": key_a}, "A"))
    async with only_a:
        try:
            await duro.Client(only_a).get_status("sqlite-v1")
        except duro.UnknownKeyError as exc:
            note_error("a key removed too early", exc)
        if not await only_a.fetch_turns(duro.providers.FetchTurnRequest(lock_timeout=5)) == []:
            raise AssertionError("work under a missing key was handed out")
    wrong_b = duro.SqliteProvider(tmp / "secrets.db", codec=duro.AesGcmCodec({"B": key_a}, "B"))
    async with wrong_b:
        try:
            await duro.Client(wrong_b).get_status("sqlite-v1")
        except duro.PayloadAuthenticationError as exc:
            note_error("another key under the same id", exc)

    # A wrong account key: the server refuses every request.
    wrong = CosmosConfig(url, env["SECRETS_WRONG_COSMOS_KEY"], database, "secrets")
    refused = CosmosProvider(
        wrong, transport=CompatTransport(url, key=cosmos_key), retry=FAST_RETRY
    )
    try:
        async with refused:
            await refused.queue_depths()
    except duro.ProviderError as exc:
        note_error("a wrong account key", exc)

    # Keys the codec refuses, and TLS verification switched off.
    for keys in ({"A": key_a[:31]}, {"A": key_a.hex()}, {"A:B": key_a}):
        try:
            duro.AesGcmCodec(keys, "A")  # type: ignore[arg-type]
        except (TypeError, ValueError) as exc:
            note_error("an invalid key", exc)
    async with CosmosRestClient("https://acct.documents.azure.com", cosmos_key, verify=False):
        pass

    spans = [json.loads(span.to_json()) for span in exporter.get_finished_spans()]
    json.dump({"logs": capture.lines, "spans": spans, "texts": texts}, sys.stdout)


if __name__ == "__main__":
    anyio.run(main)
