"""Payload codecs: what a provider does to every payload on its way into the store and back.

A payload is the raw JSON of an orchestration input or output, an activity input or result,
event data, a custom status or a KV value. A provider built with ``codec=`` encodes each one
just before it stores it and decodes it just after it reads it (``duro/providers/_boundary.py``),
so the engine, the runtime and the client only ever see plaintext, and ids, names and
timestamps stay in clear for the store to route, list and expire by. See
docs/decisions/0007-payload-encryption.md.

:class:`AesGcmCodec` encrypts with AES-GCM. It is the only module of duro that imports
``cryptography``, and only when a codec is built, so ``import duro`` does not load it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn, Protocol

import msgspec

from ._errors import PayloadAuthenticationError, UnknownKeyError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM


@dataclass(frozen=True, slots=True)
class CodecContext:
    """Where a payload lives: ``instance_id`` is the instance whose store entry (history,
    queue message, work item, record or KV) holds it. A payload a turn sends to another
    instance is encoded for that instance."""

    instance_id: str


class Codec(Protocol):
    """Transforms payloads on their way into a store (``encode``) and back (``decode``).

    ``decode(encode(p, c), c) == p`` for every payload ``p``. ``encode`` must return valid
    JSON (stores embed payloads in JSON documents) and must not fail for valid JSON input;
    ``decode`` raises :class:`duro.CodecError` (or a subclass) for anything it cannot turn
    back into the original payload, never returns something else. Both are called on the
    event loop for every payload, so keep them fast and free of I/O. Without a codec
    (``codec=None``, the default) payloads are stored as they are.
    """

    def encode(self, payload: bytes, context: CodecContext) -> bytes:
        """The stored form of ``payload`` (raw JSON), for the instance in ``context``."""
        ...

    def decode(self, stored: bytes, context: CodecContext) -> bytes:
        """The payload that ``encode`` turned into ``stored``; ``CodecError`` otherwise."""
        ...


_KEY_ID = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_KEY_SIZES = (16, 24, 32)
_NONCE_BYTES = 12
"""96 bits, the size GCM is specified for; random per payload (see ``AesGcmCodec``)."""
_AAD_PREFIX = b"duro.payload.v1\x00"
"""Associated data: versioned and followed by the instance id, so a ciphertext moved to
another instance (or read by a future format) fails authentication instead of decrypting."""
_ENVELOPE_START = b'{"$aesgcm":"'
_ENVELOPE_END = b'"}'


class _Envelope(msgspec.Struct, forbid_unknown_fields=True, rename={"sealed": "$aesgcm"}):
    """The stored form: ``{"$aesgcm": "<key id>:<base64 of nonce + ciphertext + tag>"}``."""

    sealed: str


_envelope_decoder = msgspec.json.Decoder(_Envelope)
_bytes_decoder = msgspec.json.Decoder(bytes)
_json_encoder = msgspec.json.Encoder()


class AesGcmCodec:
    """Encrypts every payload with AES-GCM; ``active`` names the key that encrypts.

    ``keys`` maps key ids (1-64 of ``A-Z a-z 0-9 _ . -``) to 16, 24 or 32 random bytes
    (AES-128, -192, -256); every key decrypts, so rotating is: add the new key everywhere,
    then make it ``active``, and drop the old one once nothing written under it remains.
    Each payload is stored as ``{"$aesgcm": "<key id>:<base64>"}`` with a fresh random
    96-bit nonce and the instance id as associated data: a wrong key, altered bytes or a
    payload copied to another instance raise :class:`duro.PayloadAuthenticationError`, a key
    id not in ``keys`` raises :class:`duro.UnknownKeyError`; neither ever yields garbage.

    With ``accept_plaintext=True``, stored payloads that are not encrypted are read as they
    are, so encryption can be turned on for a store that already holds data; everything new
    is encrypted. Leave it off otherwise: it lets whoever can write the store substitute
    unencrypted payloads.

    The key bytes are not kept as attributes and never appear in ``repr``, errors or logs.
    """

    __slots__ = ("_accept_plaintext", "_active", "_active_prefix", "_ciphers")

    def __init__(
        self, keys: Mapping[str, bytes], active: str, *, accept_plaintext: bool = False
    ) -> None:
        # Imported here, not at module level: only users of encryption pay for loading it.
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if not keys:
            raise ValueError("AesGcmCodec needs at least one key")
        ciphers: dict[str, AESGCM] = {}
        for key_id, key in keys.items():
            if not isinstance(key_id, str) or not _KEY_ID.fullmatch(key_id):
                raise ValueError(
                    f"key id {key_id!r} is invalid: use 1-64 letters, digits, '_', '.' or '-'"
                )
            if not isinstance(key, bytes | bytearray):
                raise TypeError(f"key {key_id!r} must be bytes, not {type(key).__name__}")
            if len(key) not in _KEY_SIZES:
                raise ValueError(
                    f"key {key_id!r} is {len(key)} bytes; AES-GCM keys are 16, 24 or 32 bytes"
                )
            ciphers[key_id] = AESGCM(bytes(key))
        if active not in ciphers:
            raise ValueError(f"active key id {active!r} is not one of {sorted(ciphers)}")
        self._ciphers = ciphers
        self._active = active
        self._active_prefix = _ENVELOPE_START + active.encode() + b":"
        self._accept_plaintext = accept_plaintext

    @property
    def active_key_id(self) -> str:
        """The id of the key new payloads are encrypted with."""
        return self._active

    @property
    def key_ids(self) -> frozenset[str]:
        """Every key id that decrypts."""
        return frozenset(self._ciphers)

    def __repr__(self) -> str:
        return f"AesGcmCodec(active={self._active!r}, key_ids={sorted(self._ciphers)!r})"

    def __reduce__(self) -> NoReturn:
        # Pickling would have to write the keys out; refuse rather than leak them.
        raise TypeError("AesGcmCodec cannot be pickled (it would carry its keys)")

    def encode(self, payload: bytes, context: CodecContext) -> bytes:
        """``payload`` sealed under the active key, with the instance id as associated data."""
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._ciphers[self._active].encrypt(nonce, payload, _aad(context))
        # msgspec writes bytes as a quoted base64 string, faster than the base64 module.
        quoted = _json_encoder.encode(nonce + sealed)
        return self._active_prefix + quoted[1:] + b"}"

    def decode(self, stored: bytes, context: CodecContext) -> bytes:
        """The payload ``encode`` sealed; ``UnknownKeyError`` or
        ``PayloadAuthenticationError`` when it cannot be opened."""
        sealed = _sealed_part(stored)
        if sealed is None:
            if self._accept_plaintext:
                return stored
            raise PayloadAuthenticationError(
                f"a payload of instance {context.instance_id!r} is not encrypted, but this "
                "store's codec encrypts every payload (written without a codec? "
                "AesGcmCodec(accept_plaintext=True) reads such data)",
                instance_id=context.instance_id,
            )
        raw_key_id, _, token = sealed.partition(b":")
        key_id = raw_key_id.decode("ascii", "replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise UnknownKeyError(
                f"a payload of instance {context.instance_id!r} is encrypted with key id "
                f"{key_id!r}, which this codec does not hold (it holds {sorted(self._ciphers)}); "
                "add that key to AesGcmCodec(keys=...)",
                instance_id=context.instance_id,
                key_id=key_id,
            )
        from cryptography.exceptions import InvalidTag

        try:
            # msgspec decodes base64 about three times as fast as binascii (64 KB: 90 us).
            blob = _bytes_decoder.decode(b'"' + token + b'"')
            if len(blob) < _NONCE_BYTES + 16:
                raise ValueError("too short")
            return cipher.decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], _aad(context))
        except (InvalidTag, msgspec.DecodeError, msgspec.ValidationError, ValueError):
            # ``from None``: the cause adds nothing, and errors never carry payload bytes.
            raise PayloadAuthenticationError(
                f"a payload of instance {context.instance_id!r} fails authentication under "
                f"key id {key_id!r}: the key configured for that id is not the one that "
                "encrypted it, or the stored data was altered or copied from another instance",
                instance_id=context.instance_id,
                key_id=key_id,
            ) from None


def _sealed_part(stored: bytes) -> bytes | None:
    """``<key id>:<base64>`` of an envelope, or None if ``stored`` is not one.

    The envelope exactly as ``encode`` writes it is sliced out (no JSON parse: this runs for
    every payload read); anything else, such as JSON a store re-serialised with other spacing
    or escapes, goes through the JSON decoder."""
    if stored.startswith(_ENVELOPE_START) and stored.endswith(_ENVELOPE_END):
        middle = stored[len(_ENVELOPE_START) : -len(_ENVELOPE_END)]
        if middle.isascii() and b'"' not in middle and b"\\" not in middle:
            return middle
    try:
        return _envelope_decoder.decode(stored).sealed.encode()
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def _aad(context: CodecContext) -> bytes:
    return _AAD_PREFIX + context.instance_id.encode("utf-8", "surrogatepass")
