"""``AesGcmCodec`` on its own: round trips, the stored form, rotation, and every way a stored
payload can be wrong failing loudly, with the key id, and never as garbage."""

from __future__ import annotations

import base64
import copy
import pathlib
import pickle
import subprocess
import sys

import msgspec
import pytest

import duro
from duro import AesGcmCodec, CodecContext

from . import _scan

KEY_A = bytes(range(32))
KEY_B = bytes(range(100, 132))
HERE = CodecContext("order-1")


def sealed_blob(stored: bytes) -> tuple[str, bytes]:
    """The key id and the raw nonce + ciphertext + tag of a stored payload."""
    envelope = msgspec.json.decode(stored)
    key_id, _, token = envelope["$aesgcm"].partition(":")
    return key_id, base64.b64decode(token)


def envelope(key_id: str, blob: bytes) -> bytes:
    return msgspec.json.encode({"$aesgcm": f"{key_id}:{base64.b64encode(blob).decode()}"})


@pytest.mark.parametrize(
    "payload",
    [
        b"null",
        b"0",
        b'""',
        b'{"card":"4111 1111 1111 1111"}',
        '"é✓"'.encode(),
        b"[" + b"1," * 50_000 + b"1]",
    ],
)
def test_a_payload_comes_back_byte_for_byte(payload: bytes) -> None:
    codec = AesGcmCodec({"a": KEY_A}, active="a")
    assert codec.decode(codec.encode(payload, HERE), HERE) == payload


def test_the_stored_form_is_json_naming_the_key_id_with_a_fresh_nonce_each_time() -> None:
    codec = AesGcmCodec({"2025-01": KEY_A}, active="2025-01")
    first, second = codec.encode(b'"x"', HERE), codec.encode(b'"x"', HERE)

    assert first != second
    key_id, blob = sealed_blob(first)
    assert key_id == "2025-01"
    assert len(blob) == 12 + len(b'"x"') + 16  # nonce, ciphertext, tag
    assert sealed_blob(second)[1][:12] != blob[:12]
    assert msgspec.json.decode(first) == {"$aesgcm": first.decode()[12:-2]}


def test_data_written_under_the_old_key_reads_after_rotation_and_new_data_uses_the_new_key() -> (
    None
):
    old = AesGcmCodec({"A": KEY_A}, active="A")
    rotated = AesGcmCodec({"A": KEY_A, "B": KEY_B}, active="B")
    written_before = old.encode(b'"before"', HERE)

    assert rotated.decode(written_before, HERE) == b'"before"'
    written_after = rotated.encode(b'"after"', HERE)
    assert sealed_blob(written_after)[0] == "B"
    assert rotated.decode(written_after, HERE) == b'"after"'


def test_a_payload_under_a_removed_key_fails_naming_that_key() -> None:
    written = AesGcmCodec({"A": KEY_A}, active="A").encode(b'"secret"', HERE)
    only_b = AesGcmCodec({"B": KEY_B}, active="B")

    with pytest.raises(duro.UnknownKeyError) as caught:
        only_b.decode(written, HERE)
    assert caught.value.key_id == "A"
    assert caught.value.instance_id == "order-1"
    assert "'A'" in str(caught.value) and "order-1" in str(caught.value)
    assert issubclass(duro.UnknownKeyError, duro.CodecError)
    assert issubclass(duro.PayloadAuthenticationError, duro.CodecError)
    assert issubclass(duro.CodecError, duro.PayloadError)


def test_a_different_key_under_the_same_id_fails_authentication() -> None:
    written = AesGcmCodec({"A": KEY_A}, active="A").encode(b'"secret"', HERE)
    impostor = AesGcmCodec({"A": KEY_B}, active="A")

    with pytest.raises(duro.PayloadAuthenticationError) as caught:
        impostor.decode(written, HERE)
    assert caught.value.key_id == "A"
    assert "'A'" in str(caught.value)


def test_every_single_bit_flip_of_the_stored_payload_fails_authentication() -> None:
    codec = AesGcmCodec({"A": KEY_A}, active="A")
    _, blob = sealed_blob(codec.encode(b'{"amount":100}', HERE))

    for position in range(len(blob)):
        for bit in range(8):
            altered = bytearray(blob)
            altered[position] ^= 1 << bit
            with pytest.raises(duro.PayloadAuthenticationError):
                codec.decode(envelope("A", bytes(altered)), HERE)


def test_an_envelope_a_store_re_serialised_with_other_spacing_or_escapes_still_decodes() -> None:
    codec = AesGcmCodec({"A": KEY_A}, active="A")
    sealed = msgspec.json.decode(codec.encode(b'"x"', HERE))["$aesgcm"]
    spaced = ('{ "$aesgcm" : "' + sealed.replace("/", "\\/") + '" }').encode()

    assert codec.decode(spaced, HERE) == b'"x"'


@pytest.mark.parametrize(
    "stored",
    [
        envelope("A", b""),  # nothing at all
        envelope("A", bytes(27)),  # shorter than nonce + tag
        b'{"$aesgcm":"A:not base64!"}',
        b'{"$aesgcm":"A"}',  # no separator, no data
        b'{"$aesgcm":"A:AAAA","extra":1}',  # not exactly the envelope
    ],
)
def test_malformed_stored_payloads_fail_authentication(stored: bytes) -> None:
    codec = AesGcmCodec({"A": KEY_A}, active="A")
    with pytest.raises(duro.PayloadAuthenticationError):
        codec.decode(stored, HERE)


def test_a_payload_moved_to_another_instance_fails_authentication() -> None:
    codec = AesGcmCodec({"A": KEY_A}, active="A")
    written = codec.encode(b'"for order-1"', CodecContext("order-1"))

    with pytest.raises(duro.PayloadAuthenticationError) as caught:
        codec.decode(written, CodecContext("order-2"))
    assert caught.value.instance_id == "order-2"


def test_an_unencrypted_payload_is_refused_unless_plaintext_is_accepted() -> None:
    with pytest.raises(duro.PayloadAuthenticationError) as caught:
        AesGcmCodec({"A": KEY_A}, active="A").decode(b'{"card":"4111"}', HERE)
    assert caught.value.key_id is None
    assert "4111" not in str(caught.value)  # errors never quote payloads

    migrating = AesGcmCodec({"A": KEY_A}, active="A", accept_plaintext=True)
    assert migrating.decode(b'{"card":"4111"}', HERE) == b'{"card":"4111"}'
    assert sealed_blob(migrating.encode(b"1", HERE))[0] == "A"  # new data is still encrypted
    with pytest.raises(duro.PayloadAuthenticationError):  # and envelopes still authenticate
        migrating.decode(envelope("A", bytes(40)), HERE)


@pytest.mark.parametrize(
    ("keys", "active", "error"),
    [
        ({}, "A", ValueError),
        ({"A": KEY_A}, "B", ValueError),
        ({"bad:id": KEY_A}, "bad:id", ValueError),
        ({"": KEY_A}, "", ValueError),
        ({"A": b"short-key-material-0123456789"}, "A", ValueError),
        ({"A": KEY_A.hex()}, "A", TypeError),
    ],
)
def test_invalid_keys_are_refused_without_quoting_the_key(
    keys: dict[str, bytes], active: str, error: type[Exception]
) -> None:
    with pytest.raises(error) as caught:
        AesGcmCodec(keys, active)
    message = str(caught.value)
    for key in keys.values():
        material = key if isinstance(key, bytes) else key.encode()
        assert _scan.found(message.encode(), material) == []
        assert material.decode(errors="ignore") not in message


def test_repr_names_the_key_ids_and_shows_no_key_and_the_codec_keeps_no_key_bytes() -> None:
    codec = AesGcmCodec({"A": KEY_A, "B": KEY_B}, active="B")

    assert repr(codec) == "AesGcmCodec(active='B', key_ids=['A', 'B'])"
    assert codec.key_ids == frozenset({"A", "B"}) and codec.active_key_id == "B"
    held = _scan.reachable_bytes([getattr(codec, slot) for slot in type(codec).__slots__])
    for key in (KEY_A, KEY_B):
        assert _scan.found(repr(codec).encode() + str(codec).encode() + held, key) == []
    for provider in (duro.InMemoryProvider(codec=codec), duro.SqliteProvider("x.db", codec=codec)):
        assert "key_ids=['A', 'B']" in repr(provider)


def test_a_codec_cannot_be_pickled_or_copied_with_its_keys() -> None:
    codec = AesGcmCodec({"A": KEY_A}, active="A")
    with pytest.raises(TypeError):
        pickle.dumps(codec)
    with pytest.raises(TypeError):
        copy.deepcopy(codec)


def test_importing_duro_does_not_load_cryptography_and_only_the_codec_module_imports_it() -> None:
    code = (
        "import sys, duro, duro_cosmos\n"
        "before = 'cryptography' in sys.modules\n"
        "duro.AesGcmCodec({'a': bytes(32)}, active='a')\n"
        "print(before, 'cryptography' in sys.modules)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.split() == ["False", "True"]

    root = pathlib.Path(duro.__file__).parent.parent
    importers = sorted(
        str(path.relative_to(root))
        for package in ("duro", "duro_cosmos")
        for path in (root / package).rglob("*.py")
        if "import cryptography" in path.read_text() or "from cryptography" in path.read_text()
    )
    assert importers == ["duro/_codec.py"]
