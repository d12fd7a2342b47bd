"""The I/O shell around the engine: dispatchers, the activity worker pool, the runtime."""

from __future__ import annotations

from ._activity_context import ActivityContext
from ._options import RuntimeOptions
from ._runtime import Runtime

__all__ = ["ActivityContext", "Runtime", "RuntimeOptions"]
