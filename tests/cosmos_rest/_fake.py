"""A scripted fake of the Cosmos DB *server* for unit tests, as an ``httpx.MockTransport``.

Each request pops the next step: an ``httpx.Response`` to answer with, or an exception to
raise (a network fault). Requests are journalled; sleeps are recorded, not waited.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx

from duro_cosmos._rest import CosmosRestClient, HttpRetryPolicy

KEY = "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw=="

Step = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


def reply(status: int, body: Any = None, **headers: str) -> httpx.Response:
    content = b"" if body is None else json.dumps(body).encode()
    hdrs = {k.replace("_", "-"): v for k, v in headers.items()}
    return httpx.Response(status, content=content, headers=hdrs)


def error(status: int, substatus: int | None = None, **headers: str) -> httpx.Response:
    if substatus is not None:
        headers["x_ms_substatus"] = str(substatus)
    headers.setdefault("x_ms_activity_id", "act-1")
    return reply(status, {"code": f"E{status}", "message": f"failure {status}"}, **headers)


class FakeServer:
    def __init__(self, *steps: Step) -> None:
        self.steps = list(steps)
        self.requests: list[httpx.Request] = []
        self.sleeps: list[float] = []

    def add(self, *steps: Step) -> None:
        self.steps.extend(steps)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if not self.steps:
            raise AssertionError(f"unexpected request {request.method} {request.url}")
        step = self.steps.pop(0)
        if isinstance(step, Exception):
            raise step
        if isinstance(step, httpx.Response):
            return step
        return step(request)

    async def _sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def policy(self, **overrides: Any) -> HttpRetryPolicy:
        settings: dict[str, Any] = {"sleep": self._sleep, "rng": lambda: 0.0}
        settings.update(overrides)
        return HttpRetryPolicy(**settings)

    def client(self, **overrides: Any) -> CosmosRestClient:
        retry = overrides.pop("retry", None) or self.policy()
        return CosmosRestClient(
            "http://cosmos.test:8081",
            KEY,
            transport=httpx.MockTransport(self._handle),
            retry=retry,
            **overrides,
        )
