"""Schedules: recurring runs of an orchestration, each schedule a built-in eternal
orchestration (decision 0008)."""

from __future__ import annotations

from ._manage import ScheduleInfo

__all__ = ["ScheduleInfo"]
