"""CosmosProvider over HTTPS, with its own TLS settings (no compat transport in between).

The local server started without ``--no-ssl`` serves a bundled certificate that is
self-signed, issued for ``CN=cosmosdb`` (no subject alternative name) and expired in 2021, so:

* verification on (the default) must fail at once with a typed, permanent error that says
  what to check;
* ``ca_bundle`` must really be used: with the server's own certificate as the bundle the
  complaint changes from "self-signed" to the certificate's other defects (wrong name,
  expired);
* ``COSMOS_VERIFY=false`` is how docs/providers/cosmos.md says to reach this test server;
  provider operations and orchestrations then work over TLS;
* ``COSMOS_CA_BUNDLE`` is how it says to trust an emulator's certificate: shown working, with
  verification on, against the same server code given a fresh certificate for ``127.0.0.1``.

Without the compat layer the server's batch needs a per-operation partition key
(``batch_partition_key=True``), and a point read of a missing document is a 500 there, so
these scenarios only read documents that exist.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from duro import ProviderError
from duro_cosmos import CosmosConfig, CosmosProvider, HttpRetryPolicy
from duro_cosmos._rest import CosmosError
from tests.cosmos.compat import EMULATOR_KEY
from tests.cosmos.server import SERVER_DIR, CosmosServer, cli_path
from tests.cosmos.support import fresh_database, unique_name

from ._smoke import provider_smoke, run_orchestrations

pytestmark = pytest.mark.anyio

FAST_RETRY = HttpRetryPolicy(base_delay=0.001, max_delay=0.05)


def _provider(config: CosmosConfig) -> CosmosProvider:
    return CosmosProvider(config, retry=FAST_RETRY, batch_partition_key=True)


@pytest.fixture
def names(cosmos_https_server: CosmosServer) -> Iterator[dict[str, str]]:
    with fresh_database(cosmos_https_server.url, "https") as database:
        yield {"COSMOS_DATABASE": database, "COSMOS_CONTAINER": unique_name("c")}


async def _first_use_error(config: CosmosConfig) -> CosmosError:
    started = time.monotonic()
    with pytest.raises(CosmosError) as caught:
        async with _provider(config) as provider:
            await provider.queue_depths()
    assert time.monotonic() - started < 5, "a certificate failure must not be retried"
    error = caught.value
    assert isinstance(error, ProviderError) and not error.retryable
    assert "TLS handshake failed" in str(error) and "ca_bundle" in str(error)
    assert config.key not in str(error)
    return error


async def test_verification_is_on_by_default_and_rejects_the_certificate_clearly(
    cosmos_https_server: CosmosServer, names: dict[str, str]
) -> None:
    config = CosmosConfig.from_env({"COSMOS_ENDPOINT": cosmos_https_server.url, **names})
    assert config.verify is True and config.ca_bundle is None
    error = await _first_use_error(config)
    assert "CERTIFICATE_VERIFY_FAILED" in str(error) and "self-signed" in str(error)


async def test_a_ca_bundle_replaces_the_default_trust_store(
    cosmos_https_server: CosmosServer, names: dict[str, str]
) -> None:
    bundle = SERVER_DIR / "node_modules" / "@vercel" / "cosmosdb-server" / "cert.pem"
    config = CosmosConfig.from_env(
        {"COSMOS_ENDPOINT": cosmos_https_server.url, "COSMOS_CA_BUNDLE": str(bundle), **names}
    )
    error = await _first_use_error(config)
    # Trusted now, so what is left are this certificate's own defects: it names "cosmosdb",
    # not 127.0.0.1, and it expired in 2021 (which one OpenSSL reports first varies).
    message = str(error)
    assert "CERTIFICATE_VERIFY_FAILED" in message and "self-signed" not in message
    assert "127.0.0.1" in message or "expired" in message


async def test_provider_operations_over_https_with_verification_off(
    cosmos_https_server: CosmosServer, names: dict[str, str]
) -> None:
    config = CosmosConfig.from_env(
        {"COSMOS_ENDPOINT": cosmos_https_server.url, "COSMOS_VERIFY": "false", **names}
    )
    async with _provider(config) as provider:
        await provider_smoke(provider)
        depths = await provider.queue_depths()
        assert depths.orchestrator == 0 and depths.worker == 0
        assert provider.statistics().total > 0


async def test_an_orchestration_end_to_end_over_https(
    cosmos_https_server: CosmosServer, names: dict[str, str]
) -> None:
    config = CosmosConfig.from_env(
        {"COSMOS_ENDPOINT": cosmos_https_server.url, "COSMOS_VERIFY": "false", **names}
    )
    async with _provider(config) as provider:
        await run_orchestrations(provider, count=1, timeout=30)


# -- a certificate that can be trusted -------------------------------------------------------

_LAUNCHER = """
const fs = require("fs");
const { createHttpsServer } = require(process.argv[1]);
const server = createHttpsServer({
  cert: fs.readFileSync(process.argv[2]), key: fs.readFileSync(process.argv[3]),
}).listen(0, "127.0.0.1", () => {
  console.log(`Ready to accept HTTPS connections at 127.0.0.1:${server.address().port}`);
});
"""


def _self_signed_for_loopback(directory: Path) -> tuple[Path, Path]:
    """A fresh self-signed certificate for 127.0.0.1 (what an emulator's exported cert is)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def trusted_server(tmp_path: Path) -> Iterator[tuple[CosmosServer, Path]]:
    """The same server code on a fresh loopback certificate; yields it and the CA file."""
    cert, key = _self_signed_for_loopback(tmp_path)
    package = cli_path().parent  # .../@vercel/cosmosdb-server/lib
    node = shutil.which("node")
    assert node is not None, "`node` (Node.js >= 20) runs the test server"
    process = subprocess.Popen(
        [node, "-e", _LAUNCHER, str(package), str(cert), str(key)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        encoding="utf-8",
        errors="replace",
        bufsize=1,
    )
    server = CosmosServer(process, https=True, max_lines=200)
    try:
        server._wait_ready(15.0)
        yield server, cert
    finally:
        server.stop()


async def test_a_ca_bundle_trusts_a_local_emulator_certificate_with_verification_on(
    trusted_server: tuple[CosmosServer, Path],
) -> None:
    server, ca_file = trusted_server
    environ = {
        "COSMOS_ENDPOINT": server.url,
        "COSMOS_KEY": EMULATOR_KEY,
        "COSMOS_CA_BUNDLE": str(ca_file),
        "COSMOS_DATABASE": unique_name("https"),
        "COSMOS_CONTAINER": unique_name("c"),
    }
    config = CosmosConfig.from_env(environ)
    assert config.verify is True and config.tls_verify == str(ca_file)
    async with _provider(config) as provider:
        await provider_smoke(provider)
    # And the same endpoint without the bundle is refused: the bundle is what made it work.
    await _first_use_error(CosmosConfig.from_env({**environ, "COSMOS_CA_BUNDLE": ""}))
