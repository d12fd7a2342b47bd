"""OpenTelemetry spans for turns and activities (no-ops unless an SDK is configured)."""

from __future__ import annotations

from opentelemetry import trace

tracer = trace.get_tracer("duro")


def turn_attributes(instance_id: str, execution_id: int, messages: int) -> dict[str, str | int]:
    return {
        "duro.instance_id": instance_id,
        "duro.execution_id": execution_id,
        "duro.messages": messages,
    }


def activity_attributes(instance_id: str, name: str, attempt: int) -> dict[str, str | int]:
    return {"duro.instance_id": instance_id, "duro.activity": name, "duro.attempt": attempt}
