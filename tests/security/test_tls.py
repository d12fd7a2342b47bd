"""TLS to Cosmos DB: verified by default; switching verification off for an https endpoint
takes an explicit option and is logged as a warning (without the key)."""

from __future__ import annotations

import logging

import certifi
import pytest

from duro_cosmos import CosmosConfig, CosmosProvider
from duro_cosmos._rest import CosmosRestClient

pytestmark = pytest.mark.anyio

ENDPOINT = "https://acct.documents.azure.com:443/"
KEY = "c2VjcmV0LWtleS1tYXRlcmlhbC1ub3QtZm9yLWxvZ3MtMDEyMzQ1Njc4OQ=="


def _tls_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "duro_cosmos.rest" and "TLS" in r.getMessage()]


async def test_verification_is_on_unless_switched_off_explicitly() -> None:
    assert CosmosConfig(ENDPOINT, KEY, "db", "c").tls_verify is True
    assert CosmosConfig.from_env({"COSMOS_ENDPOINT": ENDPOINT, "COSMOS_KEY": KEY}).verify is True
    config = CosmosConfig.from_env(
        {"COSMOS_ENDPOINT": ENDPOINT, "COSMOS_KEY": KEY, "COSMOS_VERIFY": "false"}
    )
    assert config.tls_verify is False


@pytest.mark.parametrize(
    "config",
    [
        CosmosConfig(ENDPOINT, KEY, "db", "c", verify=False),
        CosmosConfig.from_env(
            {"COSMOS_ENDPOINT": ENDPOINT, "COSMOS_KEY": KEY, "COSMOS_VERIFY": "false"}
        ),
    ],
    ids=["option", "environment"],
)
async def test_switching_verification_off_logs_a_warning_naming_the_endpoint_not_the_key(
    config: CosmosConfig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="duro_cosmos.rest")
    provider = CosmosProvider(config)
    provider.statistics()  # builds the HTTP client, as the first request would
    await provider.close()
    [warning] = _tls_warnings(caplog)
    assert warning.levelno == logging.WARNING
    assert "verification is off" in warning.getMessage()
    assert "acct.documents.azure.com" in warning.getMessage()
    assert KEY not in caplog.text


@pytest.mark.parametrize(
    ("endpoint", "verify"),
    [
        (ENDPOINT, True),  # the default
        ("http://localhost:8081", False),  # no TLS to verify (local emulator)
    ],
)
async def test_no_warning_while_certificates_are_verified(
    endpoint: str, verify: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="duro_cosmos.rest")
    async with CosmosRestClient(endpoint, KEY, verify=verify):
        pass
    assert _tls_warnings(caplog) == []


async def test_a_ca_bundle_keeps_verification_on_even_with_verify_false(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bundle = certifi.where()
    config = CosmosConfig(ENDPOINT, KEY, "db", "c", verify=False, ca_bundle=bundle)
    caplog.set_level(logging.WARNING, logger="duro_cosmos.rest")
    async with config.create_client():
        pass
    assert config.tls_verify == bundle
    assert _tls_warnings(caplog) == []
