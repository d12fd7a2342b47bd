"""``CosmosConfig``: where the Cosmos DB account is and how to reach it.

``CosmosConfig.from_env()`` reads:

=====================  ============================================================
``COSMOS_ENDPOINT``    account URL (default ``http://localhost:8081``)
``COSMOS_KEY``         master key (default: the public emulator key)
``COSMOS_DATABASE``    database id (default ``duro``)
``COSMOS_CONTAINER``   container id (default ``duro``)
``COSMOS_VERIFY``      ``true``/``false``: verify TLS certificates (default ``true``)
``COSMOS_CA_BUNDLE``   CA bundle file for a local emulator's certificate (optional)
=====================  ============================================================

Validation errors name the bad variable (or field) and never quote the key.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from duro._errors import DuroError

from ._types import MAX_ID_LENGTH

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider

    from ._client import CosmosRestClient
    from ._retry import HttpRetryPolicy

__all__ = ["EMULATOR_KEY", "CosmosConfig", "CosmosConfigError"]

EMULATOR_KEY = (
    "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw=="
)
"""The well-known, public key of the Cosmos DB emulator (not a secret)."""

_ENV = {
    "endpoint": "COSMOS_ENDPOINT",
    "key": "COSMOS_KEY",
    "database": "COSMOS_DATABASE",
    "container": "COSMOS_CONTAINER",
    "verify": "COSMOS_VERIFY",
    "ca_bundle": "COSMOS_CA_BUNDLE",
}
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class CosmosConfigError(DuroError, ValueError):
    """A configuration value is invalid; ``variable`` names the field or environment variable."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem


@dataclass(frozen=True, slots=True)
class CosmosConfig:
    """Connection settings for one container. ``repr`` and ``str`` mask the key."""

    endpoint: str
    key: str = field(repr=False)
    database: str
    container: str
    verify: bool = field(default=True, kw_only=True)
    ca_bundle: str | None = field(default=None, kw_only=True)
    timeout: float = field(default=30.0, kw_only=True)
    connect_timeout: float = field(default=5.0, kw_only=True)
    max_connections: int = field(default=64, kw_only=True)

    def __post_init__(self) -> None:
        _check(self)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> CosmosConfig:
        """Build from ``COSMOS_*`` variables (``os.environ`` unless ``environ`` is given)."""
        env = os.environ if environ is None else environ

        def get(name: str, default: str) -> str:
            value = env.get(name)
            return default if value is None or value.strip() == "" else value.strip()

        raw_verify = get(_ENV["verify"], "true").lower()
        if raw_verify not in _TRUE | _FALSE:
            raise CosmosConfigError(_ENV["verify"], f"expected true or false, got {raw_verify!r}")
        values: dict[str, Any] = {
            "endpoint": get(_ENV["endpoint"], "http://localhost:8081"),
            "key": get(_ENV["key"], EMULATOR_KEY),
            "database": get(_ENV["database"], "duro"),
            "container": get(_ENV["container"], "duro"),
            "verify": raw_verify in _TRUE,
            "ca_bundle": get(_ENV["ca_bundle"], "") or None,
        }
        values.update(overrides)
        try:
            return cls(**values)
        except CosmosConfigError as exc:
            if exc.variable in _ENV and exc.variable not in overrides:
                raise CosmosConfigError(_ENV[exc.variable], exc.problem) from None
            raise

    @property
    def tls_verify(self) -> bool | str:
        """What to pass as ``verify`` to the HTTP client: the CA bundle path if set."""
        return self.ca_bundle if self.ca_bundle is not None else self.verify

    def create_client(
        self,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        retry: HttpRetryPolicy | None = None,
        batch_partition_key: bool = False,
        meter_provider: MeterProvider | None = None,
    ) -> CosmosRestClient:
        """A :class:`CosmosRestClient` for this account (close it when done)."""
        from ._client import CosmosRestClient

        return CosmosRestClient(
            self.endpoint,
            self.key,
            transport=transport,
            verify=self.tls_verify,
            timeout=httpx.Timeout(self.timeout, connect=self.connect_timeout),
            max_connections=self.max_connections,
            retry=retry,
            batch_partition_key=batch_partition_key,
            meter_provider=meter_provider,
        )

    def __repr__(self) -> str:
        return (
            f"CosmosConfig(endpoint={self.endpoint!r}, key=<hidden>, "
            f"database={self.database!r}, container={self.container!r}, "
            f"verify={self.verify!r}, ca_bundle={self.ca_bundle!r})"
        )

    __str__ = __repr__


def _check(config: CosmosConfig) -> None:
    try:
        url = httpx.URL(config.endpoint)
    except (httpx.InvalidURL, TypeError):
        raise CosmosConfigError("endpoint", f"{config.endpoint!r} is not a URL") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise CosmosConfigError(
            "endpoint", f"{config.endpoint!r} must be an http:// or https:// URL with a host"
        )
    if not isinstance(config.key, str) or not config.key.strip():
        raise CosmosConfigError("key", "the account key is empty")
    try:
        decoded = base64.b64decode(config.key.strip(), validate=True)
    except (binascii.Error, ValueError):
        decoded = b""
    if not decoded:
        raise CosmosConfigError(
            "key", "the account key is not valid base64 (copy the primary or secondary key)"
        )
    for name in ("database", "container"):
        value = getattr(config, name)
        if not isinstance(value, str) or not value:
            raise CosmosConfigError(name, "must be a non-empty id")
        if len(value) > MAX_ID_LENGTH or any(c in value for c in "/\\?#"):
            raise CosmosConfigError(
                name, f"{value!r} is not a valid id (at most 255 characters, no / \\ ? #)"
            )
    if config.ca_bundle is not None and not os.path.isfile(config.ca_bundle):
        raise CosmosConfigError("ca_bundle", f"no such file: {config.ca_bundle!r}")
    if config.timeout <= 0 or config.connect_timeout <= 0:
        raise CosmosConfigError("timeout", "timeouts must be positive")
    if config.max_connections < 1:
        raise CosmosConfigError("max_connections", "must be at least 1")
