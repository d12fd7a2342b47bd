"""Configuration from the environment, validation naming the variable, and key masking."""

from __future__ import annotations

import pickle

import httpx
import pytest

from duro_cosmos._rest import (
    EMULATOR_KEY,
    ContainerLink,
    CosmosAmbiguousWrite,
    CosmosConfig,
    CosmosConfigError,
    CosmosError,
    CosmosRestClient,
    MasterKeySigner,
    error_from_response,
)

from ._fake import FakeServer, error, reply

SECRET = "c2VjcmV0LWtleS1mb3ItdGVzdHMtb25seS0xMjM0NTY3ODkwYWJjZGVm"  # base64, not a real key


def test_defaults_from_an_empty_environment() -> None:
    config = CosmosConfig.from_env({})
    assert config.endpoint == "http://localhost:8081"
    assert config.key == EMULATOR_KEY
    assert (config.database, config.container) == ("duro", "duro")
    assert config.verify is True and config.ca_bundle is None
    assert config.tls_verify is True


def test_values_from_the_environment(tmp_path: object) -> None:
    import pathlib

    bundle = pathlib.Path(str(tmp_path)) / "ca.pem"
    bundle.write_text("dummy")
    config = CosmosConfig.from_env(
        {
            "COSMOS_ENDPOINT": "https://acct.documents.azure.com:443/",
            "COSMOS_KEY": SECRET,
            "COSMOS_DATABASE": "prod",
            "COSMOS_CONTAINER": "runs",
            "COSMOS_VERIFY": "false",
            "COSMOS_CA_BUNDLE": str(bundle),
        }
    )
    assert config.endpoint == "https://acct.documents.azure.com:443/"
    assert (config.database, config.container, config.verify) == ("prod", "runs", False)
    assert config.tls_verify == str(bundle)


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"COSMOS_ENDPOINT": "localhost:8081"}, "COSMOS_ENDPOINT"),
        ({"COSMOS_ENDPOINT": "ftp://x"}, "COSMOS_ENDPOINT"),
        ({"COSMOS_KEY": "not base64 !!"}, "COSMOS_KEY"),
        ({"COSMOS_DATABASE": "a/b"}, "COSMOS_DATABASE"),
        ({"COSMOS_CONTAINER": "x" * 256}, "COSMOS_CONTAINER"),
        ({"COSMOS_VERIFY": "maybe"}, "COSMOS_VERIFY"),
        ({"COSMOS_CA_BUNDLE": "/no/such/file.pem"}, "COSMOS_CA_BUNDLE"),
    ],
)
def test_errors_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(CosmosConfigError) as info:
        CosmosConfig.from_env(env)
    assert info.value.variable == variable
    assert str(info.value).startswith(variable)
    assert isinstance(info.value, ValueError)


def test_bad_key_is_not_quoted() -> None:
    bad = "secret-but-not-base64!!"
    with pytest.raises(CosmosConfigError) as info:
        CosmosConfig.from_env({"COSMOS_KEY": bad})
    assert bad not in str(info.value)


def test_direct_construction_names_the_field() -> None:
    with pytest.raises(CosmosConfigError) as info:
        CosmosConfig("http://h", SECRET, "", "c")
    assert info.value.variable == "database"


def test_repr_and_str_mask_the_key() -> None:
    config = CosmosConfig("http://h:1", SECRET, "d", "c")
    for text in (repr(config), str(config), f"{config}", f"{config!r}"):
        assert SECRET not in text
        assert "<hidden>" in text


@pytest.mark.anyio
async def test_key_never_appears_in_client_or_errors() -> None:
    config = CosmosConfig("http://cosmos.test", SECRET, "d", "c")
    assert SECRET not in repr(MasterKeySigner(SECRET))
    server = FakeServer(
        *(error(s) for s in (400, 401, 403, 404, 408, 409, 412, 413, 429, 449, 500, 503)),
        httpx.ReadTimeout("lost"),
        reply(207, [{"statusCode": 409}]),
    )
    client = CosmosRestClient(
        config.endpoint,
        config.key,
        transport=httpx.MockTransport(server._handle),
        retry=server.policy(max_attempts=1, max_throttle_attempts=1),
    )
    async with client:
        assert SECRET not in repr(client) and SECRET not in str(client)
        link = ContainerLink("d", "c")
        raised: list[BaseException] = []
        for _ in range(12):
            with pytest.raises(CosmosError) as info:
                await client.read_document(link, "x", "p")
            raised.append(info.value)
        with pytest.raises(CosmosAmbiguousWrite) as ambiguous:
            await client.create_document(link, {"id": "x"}, "p")
        raised.append(ambiguous.value)
        from duro_cosmos._rest import BatchOperation

        with pytest.raises(CosmosError) as batch:
            await client.batch(link, "p", [BatchOperation.create({"id": "x"})])
        raised.append(batch.value)
    raised.append(error_from_response("op", 401, httpx.Headers(), b""))
    for exc in raised:
        for text in (str(exc), repr(exc), str(exc.args)):
            assert SECRET not in text
        cause = exc.__cause__
        while cause is not None:
            assert SECRET not in str(cause) and SECRET not in repr(cause)
            cause = cause.__cause__


@pytest.mark.anyio
async def test_create_client_uses_the_settings() -> None:
    config = CosmosConfig("http://cosmos.test:9", SECRET, "d", "c", max_connections=3)
    async with config.create_client() as client:
        assert client.endpoint == "http://cosmos.test:9"
        assert SECRET not in repr(client)


def test_config_pickles_for_worker_processes() -> None:
    config = CosmosConfig("http://h:1", SECRET, "d", "c")
    assert pickle.loads(pickle.dumps(config)) == config
