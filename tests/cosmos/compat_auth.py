"""Master-key authorization checking, written from the documented Cosmos DB REST scheme.

Documented scheme ("Access control in the Azure Cosmos DB SQL API"): the string to sign is

    lower(verb) + "\\n" + lower(resourceType) + "\\n" + resourceLink + "\\n"
    + lower(x-ms-date) + "\\n" + "" + "\\n"

signed with HMAC-SHA256 under the base64-decoded master key; the ``authorization`` header is the
URL-encoded string ``type=master&ver=1.0&sig=<base64 signature>``. ``resourceLink`` is the
path of the addressed resource without a leading slash (ids unescaped and case preserved); for
a feed (``POST .../docs``, ``GET /dbs``) it is the parent's link and ``resourceType`` the feed
name. The date comes from ``x-ms-date`` (else ``date``) and must be near the server's clock.

This verifier is independent of the provider's signer on purpose: the two meet only on the wire.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from urllib.parse import unquote

__all__ = ["AuthFailure", "resource_of_path", "string_to_sign", "verify_authorization"]

DEFAULT_MAX_SKEW = dt.timedelta(minutes=15)


@dataclass(frozen=True, slots=True)
class AuthFailure:
    """Why a request was refused: the status and message to answer with."""

    status: int
    message: str


def resource_of_path(path: str) -> tuple[str, str]:
    """``(resourceType, resourceLink)`` for a request path such as ``/dbs/d/colls/c/docs``."""
    segments = [unquote(part) for part in path.strip("/").split("/") if part]
    if not segments:
        return "", ""
    if len(segments) % 2 == 1:  # a feed: /dbs, /dbs/d/colls, /dbs/d/colls/c/docs ...
        return segments[-1], "/".join(segments[:-1])
    return segments[-2], "/".join(segments)


def string_to_sign(verb: str, resource_type: str, resource_link: str, date: str) -> str:
    return f"{verb.lower()}\n{resource_type.lower()}\n{resource_link}\n{date.lower()}\n\n"


def _signature(key: bytes, payload: str) -> bytes:
    return hmac.new(key, payload.encode("utf-8"), hashlib.sha256).digest()


def _parse_token(header: str) -> dict[str, str] | None:
    # Base64 signatures contain '+' and '/', so no form decoding (which maps '+' to space).
    fields: dict[str, str] = {}
    for part in unquote(header).split("&"):
        name, sep, value = part.partition("=")
        if not sep:
            return None
        fields[name.strip().lower()] = value.strip()
    return fields


def verify_authorization(
    *,
    key: str,
    method: str,
    path: str,
    headers: dict[str, str],
    now: dt.datetime | None = None,
    max_skew: dt.timedelta = DEFAULT_MAX_SKEW,
) -> AuthFailure | None:
    """Check a request's master-key signature and date; ``None`` when it is acceptable.

    ``headers`` must have lower-case names. Real Cosmos answers 401 for both a bad
    signature and a date outside the allowed window ("The authorization token is not valid
    at the current time"), so both map to 401 here.
    """
    header = headers.get("authorization")
    if not header:
        return AuthFailure(401, "Required header 'authorization' is missing.")
    token = _parse_token(header)
    if token is None or token.get("type") != "master" or token.get("ver") != "1.0":
        return AuthFailure(401, "The authorization header is not a master-key token (v1.0).")
    date = headers.get("x-ms-date") or headers.get("date")
    if not date:
        return AuthFailure(401, "Required header 'x-ms-date' is missing.")
    try:
        when = parsedate_to_datetime(date)
    except (TypeError, ValueError):
        return AuthFailure(401, f"The x-ms-date header {date!r} is not an RFC 1123 date.")
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    current = now or dt.datetime.now(dt.UTC)
    if abs(current - when) > max_skew:
        return AuthFailure(
            401,
            "The authorization token is not valid at the current time "
            f"(x-ms-date {date}, server time {current:%a, %d %b %Y %H:%M:%S} GMT).",
        )
    try:
        sig = base64.b64decode(token.get("sig", ""), validate=True)
        secret = base64.b64decode(key)
    except (binascii.Error, ValueError):
        return AuthFailure(401, "The authorization signature is not valid base64.")
    resource_type, resource_link = resource_of_path(path)
    expected = _signature(secret, string_to_sign(method, resource_type, resource_link, date))
    if not hmac.compare_digest(sig, expected):
        return AuthFailure(
            401,
            "The input authorization token can't serve the request. The MAC signature found "
            "in the HTTP request is not the same as the computed signature. "
            f"Server used following payload to sign: "
            f"{string_to_sign(method, resource_type, resource_link, date)!r}",
        )
    return None
