"""Master-key signing against the documented scheme, with expected values computed here."""

from __future__ import annotations

import base64
import calendar
import hashlib
import hmac
from urllib.parse import quote, unquote

import pytest

from duro_cosmos._rest import (
    ContainerLink,
    CosmosInvalidRequest,
    MasterKeySigner,
    http_date,
    resource_of_path,
    string_to_sign,
)

from ._fake import KEY, FakeServer, reply

# The worked example of the REST reference page "Access control in the Azure Cosmos DB SQL
# API" ("Example Encoding"): these inputs give this Authorization header.
DOC_KEY = "dsZQi3KtZmCv1ljt3VNWNm7sQUF1y5rJfC6kv5JiwvW0EndXdDku/dkKBp8/ufDToSxLzR4y+O/0H/t4bQtVNw=="
DOC_DATE = "Thu, 27 Apr 2017 00:51:12 GMT"
DOC_OUTPUT = "type%3dmaster%26ver%3d1.0%26sig%3dc09PEVJrgp2uQRkr934kFbTqhByc7TVr3OHyqlu%2bc%2bc%3d"


def expected_header(key: str, verb: str, rtype: str, link: str, date: str) -> str:
    """Independent rendering of the documented algorithm (not the module under test)."""
    text = verb.lower() + "\n" + rtype.lower() + "\n" + link + "\n" + date.lower() + "\n" + "\n"
    mac = hmac.new(base64.b64decode(key), text.encode("utf-8"), hashlib.sha256)
    sig = base64.b64encode(mac.digest()).decode()
    return quote("type=master&ver=1.0&sig=" + sig, safe="")


def test_documented_example() -> None:
    header = MasterKeySigner(DOC_KEY).authorization("GET", "dbs", "dbs/ToDoList", DOC_DATE)
    # The page's .NET encoder writes lowercase escapes; both decode to the same string.
    assert header.lower() == DOC_OUTPUT.lower()
    assert unquote(header) == unquote(DOC_OUTPUT)
    assert unquote(header) == "type=master&ver=1.0&sig=c09PEVJrgp2uQRkr934kFbTqhByc7TVr3OHyqlu+c+c="


def test_string_to_sign_is_the_documented_payload() -> None:
    assert (
        string_to_sign("GET", "DBS", "dbs/ToDoList", DOC_DATE)
        == "get\ndbs\ndbs/ToDoList\nthu, 27 apr 2017 00:51:12 gmt\n\n"
    )


@pytest.mark.parametrize(
    ("verb", "rtype", "link"),
    [
        ("POST", "dbs", ""),  # create database: the feed has an empty link
        ("GET", "colls", "dbs/duro/colls/Duro"),  # link keeps its case
        ("POST", "docs", "dbs/duro/colls/duro"),  # create / query / batch on the docs feed
        ("PUT", "docs", "dbs/duro/colls/duro/docs/Instance 1"),
        ("DELETE", "docs", "dbs/duro/colls/duro/docs/h-00000001"),
        ("PATCH", "docs", "dbs/duro/colls/duro/docs/ünïcode"),
    ],
)
@pytest.mark.parametrize("key", [KEY, DOC_KEY])
def test_vectors_match_independent_computation(key: str, verb: str, rtype: str, link: str) -> None:
    date = "Tue, 01 Nov 1994 08:12:31 GMT"
    assert MasterKeySigner(key).authorization(verb, rtype, link, date) == expected_header(
        key, verb, rtype, link, date
    )


def test_fixed_vector_with_emulator_key() -> None:
    # Frozen output, so a change to both implementations at once is still caught.
    header = MasterKeySigner(KEY).authorization(
        "POST", "docs", "dbs/duro/colls/duro", "Tue, 01 Nov 1994 08:12:31 GMT"
    )
    assert header == expected_header(
        KEY, "post", "docs", "dbs/duro/colls/duro", "Tue, 01 Nov 1994 08:12:31 GMT"
    )
    assert header.startswith("type%3Dmaster%26ver%3D1.0%26sig%3D")
    assert len(base64.b64decode(unquote(header).split("sig=", 1)[1])) == 32


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("dbs", ("dbs", "")),
        ("dbs/db1", ("dbs", "dbs/db1")),
        ("dbs/db1/colls", ("colls", "dbs/db1")),
        ("dbs/db1/colls/c1", ("colls", "dbs/db1/colls/c1")),
        ("dbs/db1/colls/c1/docs", ("docs", "dbs/db1/colls/c1")),
        ("/dbs/db1/colls/c1/docs/Doc1/", ("docs", "dbs/db1/colls/c1/docs/Doc1")),
    ],
)
def test_resource_of_path(path: str, expected: tuple[str, str]) -> None:
    assert resource_of_path(path) == expected


def test_http_date_is_rfc1123_gmt() -> None:
    when = calendar.timegm((2017, 4, 27, 0, 51, 12, 0, 0, 0))
    assert http_date(when) == DOC_DATE
    assert http_date().endswith(" GMT")


@pytest.mark.parametrize("bad", ["not base64!!", "", "   "])
def test_invalid_key_is_refused_without_quoting_it(bad: str) -> None:
    with pytest.raises(CosmosInvalidRequest) as info:
        MasterKeySigner(bad)
    if bad.strip():
        assert bad not in str(info.value)
    assert info.value.__cause__ is None


def test_signer_repr_hides_key() -> None:
    signer = MasterKeySigner(KEY)
    assert KEY not in repr(signer)
    assert "hidden" in repr(signer)


@pytest.mark.anyio
async def test_client_signs_each_request_over_the_raw_id_and_its_own_date() -> None:
    doc_id = "Order 1ü"
    server = FakeServer(reply(200, {"id": doc_id, "_etag": '"e1"'}, etag='"e1"'))
    async with server.client() as client:
        await client.read_document(ContainerLink("db", "coll"), doc_id, "inst-1")
    (request,) = server.requests
    date = request.headers["x-ms-date"]
    assert date.endswith(" GMT")
    assert request.headers["authorization"] == expected_header(
        KEY, "GET", "docs", f"dbs/db/colls/coll/docs/{doc_id}", date
    )
    assert request.url.raw_path == b"/dbs/db/colls/coll/docs/Order%201%C3%BC"
    assert request.headers["x-ms-documentdb-partitionkey"] == '["inst-1"]'
    assert request.headers["x-ms-version"] == "2020-07-15"
