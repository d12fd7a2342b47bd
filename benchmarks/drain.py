"""How fast the runtime alone drains a backlog: W1 or W2 instances started before it runs.

    python -m benchmarks.drain --workload W1 --n 400 --provider sqlite

W1 and W2 in ``benchmarks.run`` time a client starting instances while the runtime works;
this takes the client's start loop out, so an A/B of two trees measures the runtime and the
store alone (run both trees alternately, several times: the machine is noisy). Every output
is checked; prints orchestrations per second of the drain and the CPU seconds it took.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import anyio

import duro

from ._duro_workloads import PROVIDERS, chain, expected_output, fan_out, registry


async def drain(workload: str, n: int, provider: str, steps: int) -> None:
    orchestration = fan_out if workload == "W1" else chain
    with tempfile.TemporaryDirectory() as db_dir:
        store = PROVIDERS[provider](db_dir)
        await store.open()
        client = duro.Client(store, registry=registry)
        began = time.perf_counter()
        for seed in range(n):
            await client.start_orchestration(f"{workload}-{seed}", orchestration, [seed, steps])
        starts_s = time.perf_counter() - began
        cpu = time.process_time()
        async with duro.Runtime(store, registry):
            began = time.perf_counter()
            for seed in range(n):
                status = await client.wait_for_orchestration(f"{workload}-{seed}", timeout=300)
                want = expected_output(orchestration, seed, steps)
                if status.state is not duro.State.COMPLETED or status.output != want:
                    raise RuntimeError(
                        f"{workload}-{seed}: {status.state.value}: output {status.output!r}, "
                        f"expected {want!r} ({status.error})"
                    )
            drain_s = time.perf_counter() - began
        cpu_s = time.process_time() - cpu
        await store.close()
    print(
        f"{workload} {provider} n={n}: starts {starts_s:.3f} s; drain {drain_s:.3f} s = "
        f"{n / drain_s:.0f} orch/s, {cpu_s:.2f} CPU s ({cpu_s / n * 1000:.2f} ms per instance)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=("W1", "W2"), default="W1")
    parser.add_argument("--n", type=int, default=400, help="instances started beforehand")
    parser.add_argument("--steps", type=int, default=5, help="activities per instance")
    parser.add_argument("--provider", choices=("memory", "sqlite"), default="sqlite")
    args = parser.parse_args()
    anyio.run(drain, args.workload, args.n, args.provider, args.steps)


if __name__ == "__main__":
    main()
