"""Human-in-the-loop approval: wait for an external event, but not forever.

``ctx.select`` races the ``approval`` event against a durable timer and returns the index of
whichever finished first in history order; the loser is dropped. A manager has two days to
answer; this run gives them a second instead. Run it with
``python -m samples.approval_workflow``: one request is approved in time, the other escalates
after its timeout. ``tests/samples/test_samples.py`` tests the two-day version on a
``WorkflowEnvironment``, where the wait takes milliseconds.
"""

from __future__ import annotations

from datetime import timedelta

import anyio
import msgspec

import duro

registry = duro.Registry()


class Request(msgspec.Struct):
    requester: str
    amount: int
    answer_within: timedelta = timedelta(days=2)


class Decision(msgspec.Struct):
    approved: bool
    by: str


@registry.activity
async def notify(ctx: duro.ActivityContext, message: str) -> None:
    print(f"    [notify] {ctx.instance_id}: {message}")


@registry.orchestration
async def approval_workflow(ctx: duro.OrchestrationContext, request: Request) -> str:
    await ctx.schedule_activity(notify, f"{request.requester} asks for {request.amount} EUR")
    ctx.set_custom_status("waiting for a manager")
    index, decision = await ctx.select(
        ctx.wait_for_event("approval", type=Decision),
        ctx.schedule_timer(request.answer_within),  # durable: days are fine
    )
    if index == 1:
        ctx.set_custom_status("escalated")
        await ctx.schedule_activity(notify, "no answer in time: escalated to finance")
        return "escalated"
    verdict = "approved" if decision.approved else "rejected"
    ctx.set_custom_status(verdict)
    await ctx.schedule_activity(notify, f"{verdict} by {decision.by}")
    return verdict


async def main() -> None:
    store = duro.SqliteProvider.in_memory()
    async with duro.Runtime(store, registry):
        client = duro.Client(store)
        second = timedelta(seconds=1)
        await client.start_orchestration(
            "expense-1", approval_workflow, Request("ada", 120, second)
        )
        await client.start_orchestration(
            "expense-2", approval_workflow, Request("bob", 900, second)
        )

        # Answer expense-1 once it is waiting; expense-2 never gets an answer.
        status = await client.get_status("expense-1")
        while status.custom_status != "waiting for a manager":
            status = await client.wait_for_status_change("expense-1", status, timeout=10)
        await client.raise_event("expense-1", "approval", Decision(approved=True, by="grace"))

        outputs: list[str] = []
        for instance_id in ("expense-1", "expense-2"):
            status = await client.wait_for_orchestration(instance_id, timeout=10, output_type=str)
            print(f"{instance_id}: {status.state.value} -> {status.output}")
            outputs.append(status.output)
    if outputs != ["approved", "escalated"]:
        raise SystemExit(f"unexpected results: {outputs}")


if __name__ == "__main__":
    anyio.run(main)
