"""The fetch requests a runtime sends, built once from its options."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from typing import TypeVar

from ..providers import FetchActivityRequest, FetchTurnRequest
from ._options import RuntimeOptions

R = TypeVar("R", FetchTurnRequest, FetchActivityRequest)


def turn_fetch_request(
    options: RuntimeOptions,
    cached_histories: Mapping[str, tuple[int, int]],
    skip_instances: Collection[str],
) -> FetchTurnRequest:
    """``cached_histories`` (the execution cache's index) and ``skip_instances`` (the turns
    handed to other workers) are live collections, read at every fetch."""
    return FetchTurnRequest(
        lock_timeout=options.orchestration_lock_timeout,
        poll_timeout=options.poll_timeout,
        owner_id=options.worker_id,
        max_items=options.orchestration_fetch_batch,
        cached_histories=cached_histories,
        skip_instances=skip_instances,
    )


def activity_fetch_request(
    options: RuntimeOptions, skip_activities: Collection[tuple[str, int, int]]
) -> FetchActivityRequest:
    """``skip_activities``: the activities handed to other workers (live, read at every
    fetch)."""
    return FetchActivityRequest(
        lock_timeout=options.activity_lock_timeout,
        poll_timeout=options.poll_timeout,
        owner_id=options.worker_id,
        tag_filter=options.tag_filter,
        session_owner=options.worker_id if options.max_sessions > 0 else None,
        session_lock_timeout=options.session_lock_timeout,
        max_items=options.activity_fetch_batch,
        skip_activities=skip_activities,
    )


def sized(request: R, max_items: int, *, wait: bool) -> R:
    """``request`` for up to ``max_items``, long-polling only if ``wait``."""
    poll_timeout = request.poll_timeout if wait else 0.0
    return dataclasses.replace(request, max_items=max_items, poll_timeout=poll_timeout)
