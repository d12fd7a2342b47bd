"""Fixtures for the reliability tests: the Cosmos test server of ``tests/cosmos``."""

from __future__ import annotations

from tests.cosmos.conftest import (
    compat_transport,
    cosmos_env,
    cosmos_faults,
    cosmos_key,
    cosmos_server,
    cosmos_server_url,
)

__all__ = [
    "compat_transport",
    "cosmos_env",
    "cosmos_faults",
    "cosmos_key",
    "cosmos_server",
    "cosmos_server_url",
]
