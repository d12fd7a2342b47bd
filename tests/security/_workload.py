"""A workload that puts a recognisable secret in every kind of payload a store keeps.

``vault`` touches each payload kind: its input, custom status, a KV value, an activity input
and result, a sub-orchestration input and output, a detached start, an external event, two
mailbox messages (one carried over by ``continue_as_new``), the continue-as-new input and the
output. ``parked`` leaves a work item with a secret input queued for a tag no default worker
serves, so queued work items can be inspected too.
"""

from __future__ import annotations

from typing import Any

import duro

SECRET = "Zq7-TOP-SECRET-PAYLOAD"
"""Every payload of the workload contains this; no store may hold it in clear with a codec."""

PARKED_TAG = "elsewhere"

registry = duro.Registry()


@registry.activity
async def annotate(ctx: duro.ActivityContext, note: str) -> str:
    return f"{note}|{SECRET}-activity-result"


@registry.activity(name="remote")
async def remote(ctx: duro.ActivityContext, note: str) -> str:
    return f"{note}|{SECRET}-remote-result"


@registry.orchestration
async def child(ctx: duro.OrchestrationContext, note: str) -> str:
    return f"{note}|{SECRET}-child-output"


@registry.orchestration
async def vault(ctx: duro.OrchestrationContext, data: dict[str, Any]) -> dict[str, Any]:
    if data.get("round") == 2:
        second = await ctx.dequeue_event("inbox")  # carried over by continue_as_new
        return {
            "carried": data,
            "second": second,
            "kv": ctx.kv.get("note"),
            "out": f"{SECRET}-output",
        }
    ctx.set_custom_status(f"{SECRET}-status")
    ctx.kv.set("note", f"{SECRET}-kv")
    activity = await ctx.schedule_activity(annotate, f"{SECRET}-activity-input")
    sub = await ctx.schedule_sub_orchestration(child, f"{SECRET}-child-input")
    ctx.start_orchestration(
        child, f"{SECRET}-chained-input", instance_id=f"{ctx.instance_id}.chained"
    )
    event = await ctx.wait_for_event("approve")
    first = await ctx.dequeue_event("inbox")
    ctx.continue_as_new(
        {"round": 2, "input": data["input"], "a": activity, "c": sub, "e": event, "q": first}
    )


@registry.orchestration
async def parked(ctx: duro.OrchestrationContext, note: str) -> str:
    result: str = await ctx.schedule_activity("remote", note, tag=PARKED_TAG)
    return result


async def send_vault_inputs(client: duro.Client, instance_id: str) -> None:
    """Start ``vault`` as ``instance_id`` and send it everything it waits for."""
    await client.start_orchestration(instance_id, vault, {"round": 1, "input": f"{SECRET}-input"})
    await client.raise_event(instance_id, "approve", f"{SECRET}-event")
    await client.enqueue_event(instance_id, "inbox", f"{SECRET}-queue-1")
    await client.enqueue_event(instance_id, "inbox", f"{SECRET}-queue-2")


def expected_vault_output(instance_id: str) -> dict[str, Any]:
    return {
        "carried": {
            "round": 2,
            "input": f"{SECRET}-input",
            "a": f"{SECRET}-activity-input|{SECRET}-activity-result",
            "c": f"{SECRET}-child-input|{SECRET}-child-output",
            "e": f"{SECRET}-event",
            "q": f"{SECRET}-queue-1",
        },
        "second": f"{SECRET}-queue-2",
        "kv": f"{SECRET}-kv",
        "out": f"{SECRET}-output",
    }
