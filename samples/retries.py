"""Retries with back-off and per-attempt timeouts, all durable.

``RetryPolicy`` retries a failed activity after durable back-off timers (each attempt is its own
history event, so a restart during a back-off carries on where it was), gives up after
``max_attempts`` with the last error, never retries the error types listed in
``non_retryable``, and with ``attempt_timeout`` races each attempt against a timer: an attempt
that hangs is cancelled and retried. Run it with ``python -m samples.retries``.
"""

from __future__ import annotations

from datetime import timedelta

import anyio

import duro

registry = duro.Registry()


class InvalidCard(Exception):
    """The card number is wrong: no retry will fix it."""


@registry.activity
async def call_flaky_api(ctx: duro.ActivityContext, request: str) -> str:
    if ctx.attempt < 3:  # the partner's API is down for the first two attempts
        raise ConnectionError(f"503 from partner (attempt {ctx.attempt})")
    return f"{request}: ok on attempt {ctx.attempt}"


@registry.activity
async def call_slow_api(ctx: duro.ActivityContext, request: str) -> str:
    if ctx.attempt == 1:  # the first attempt hangs until it is timed out and cancelled
        await ctx.wait_cancelled()
        raise TimeoutError(ctx.cancel_reason)
    return f"{request}: ok on attempt {ctx.attempt}"


@registry.activity
async def charge(ctx: duro.ActivityContext, card: str) -> str:
    raise InvalidCard(f"card {card} does not exist")


POLICY = duro.RetryPolicy(
    max_attempts=4,
    initial_interval=timedelta(milliseconds=100),  # then 200 ms, 400 ms: doubling
    backoff_coefficient=2.0,
    max_interval=timedelta(seconds=30),
    attempt_timeout=timedelta(milliseconds=500),
    non_retryable=[InvalidCard],
)


@registry.orchestration
async def integrate(ctx: duro.OrchestrationContext, request: str) -> dict[str, str]:
    flaky = await ctx.schedule_activity(call_flaky_api, request, retry=POLICY)
    slow = await ctx.schedule_activity(call_slow_api, request, retry=POLICY)
    try:
        await ctx.schedule_activity(charge, "0000", retry=POLICY)
        charged = "charged"
    except duro.ActivityFailedError as exc:
        charged = f"{exc.error_type} after {exc.attempts} attempt(s)"
    return {"flaky": flaky, "slow": slow, "charge": charged}


async def main() -> None:
    store = duro.InMemoryProvider()
    async with duro.Runtime(store, registry):
        client = duro.Client(store)
        await client.start_orchestration("sync-1", integrate, "sync-1")
        status = await client.wait_for_orchestration(
            "sync-1", timeout=10, output_type=dict[str, str]
        )
        history = await client.get_history("sync-1")
    for key, value in status.output.items():
        print(f"{key:>6}: {value}")
    attempts = [
        (e.name, e.attempt) for e in history if isinstance(e, duro.history.ActivityScheduled)
    ]
    print(f"attempts recorded: {attempts}")
    expected = {
        "flaky": "sync-1: ok on attempt 3",
        "slow": "sync-1: ok on attempt 2",
        "charge": "InvalidCard after 1 attempt(s)",
    }
    if status.output != expected:
        raise SystemExit(f"unexpected result: {status}")


if __name__ == "__main__":
    anyio.run(main)
