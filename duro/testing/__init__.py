"""Tools for testing workflows and providers."""

from __future__ import annotations

from ._clock import VirtualClock

__all__ = ["VirtualClock"]
