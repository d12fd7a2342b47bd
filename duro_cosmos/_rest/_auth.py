"""Master-key request signing for the Cosmos DB REST API.

The documented scheme (REST reference, "Access control in the Azure Cosmos DB SQL API"):

* the string to sign is ``verb``, ``resourceType``, ``resourceLink`` and ``date``, each
  followed by a newline, then an empty line: verb, resource type and date lowercased, the
  resource link kept exactly as it is (ids are case-sensitive);
* the signature is the base64 of HMAC-SHA256 over the UTF-8 string, keyed with the
  base64-*decoded* master key;
* the ``Authorization`` header is ``type=master&ver=1.0&sig=<signature>``, URL-encoded as a
  whole;
* ``date`` is the RFC 1123 / RFC 7231 HTTP-date sent in ``x-ms-date`` (same string, not
  lowercased there).

The decoded key lives only inside :class:`MasterKeySigner`; its ``repr`` never shows it.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import hashlib
import hmac
import time
from urllib.parse import quote

from ._errors import CosmosInvalidRequest

__all__ = [
    "MasterKeySigner",
    "http_date",
    "resource_of_path",
    "string_to_sign",
]

_TOKEN_TYPE = "master"
_TOKEN_VERSION = "1.0"


def http_date(now: float | None = None) -> str:
    """RFC 1123 date for ``x-ms-date``, e.g. ``Thu, 27 Apr 2017 00:51:12 GMT``.

    ``now`` is a POSIX timestamp; the current time when omitted.
    """
    return email.utils.formatdate(time.time() if now is None else now, usegmt=True)


def string_to_sign(verb: str, resource_type: str, resource_link: str, date: str) -> str:
    """The exact payload the documented scheme signs (trailing empty line included)."""
    return f"{verb.lower()}\n{resource_type.lower()}\n{resource_link}\n{date.lower()}\n\n"


def resource_of_path(path: str) -> tuple[str, str]:
    """``(resource_type, resource_link)`` to sign for a request path (ids unencoded).

    A path with an even number of segments names one resource (``dbs/a/colls/b`` → type
    ``colls``, link ``dbs/a/colls/b``); an odd number names a feed under its parent
    (``dbs/a/colls`` → type ``colls``, link ``dbs/a``; ``dbs`` → type ``dbs``, link ``""``).
    """
    segments = [s for s in path.strip("/").split("/") if s]
    if not segments:
        return "", ""
    if len(segments) % 2 == 0:
        return segments[-2], "/".join(segments)
    return segments[-1], "/".join(segments[:-1])


class MasterKeySigner:
    """Signs requests with an account master key. The key is never shown."""

    __slots__ = ("_key",)

    def __init__(self, key: str) -> None:
        try:
            decoded = base64.b64decode(key.strip(), validate=True)
        except (binascii.Error, ValueError):
            # No chaining: the underlying error text could quote the key.
            raise CosmosInvalidRequest(
                "configure Cosmos DB",
                "the account key is not valid base64; copy the primary or secondary key "
                "exactly as the portal or emulator shows it",
            ) from None
        if not decoded:
            raise CosmosInvalidRequest("configure Cosmos DB", "the account key is empty")
        self._key = decoded

    def signature(self, verb: str, resource_type: str, resource_link: str, date: str) -> str:
        """Base64 HMAC-SHA256 of :func:`string_to_sign` (not URL-encoded)."""
        payload = string_to_sign(verb, resource_type, resource_link, date).encode("utf-8")
        digest = hmac.new(self._key, payload, hashlib.sha256).digest()
        return base64.b64encode(digest).decode("ascii")

    def authorization(self, verb: str, resource_type: str, resource_link: str, date: str) -> str:
        """The URL-encoded ``Authorization`` header value."""
        sig = self.signature(verb, resource_type, resource_link, date)
        return quote(f"type={_TOKEN_TYPE}&ver={_TOKEN_VERSION}&sig={sig}", safe="")

    def __repr__(self) -> str:
        return "MasterKeySigner(key=<hidden>)"
