"""One smoke test against the local Cosmos-compatible test server, started here.

It checks the client speaks the REST protocol end to end; behaviour the server does not
model faithfully (atomic batches, auth, 404 on missing reads, throttling) is covered by the
unit tests and by the compatibility layer in ``tests/cosmos``.
"""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterator

import pytest

from duro_cosmos._rest import (
    EMULATOR_KEY,
    BatchOperation,
    ContainerLink,
    CosmosBatchFailed,
    CosmosConflict,
    CosmosPreconditionFailed,
    CosmosRestClient,
)

ROOT = pathlib.Path(__file__).resolve().parents[2]
CLI = ROOT / "tests/cosmos_server/node_modules/@vercel/cosmosdb-server/lib/cli.js"


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    node = shutil.which("node")
    if not CLI.exists() or node is None:
        pytest.skip(
            "Cosmos test server not installed: run `npm ci --prefix tests/cosmos_server` "
            "(needs node >= 20)"
        )
    proc = subprocess.Popen(
        [node, str(CLI), "--host", "127.0.0.1", "-p", "0", "--no-ssl"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    drain = threading.Thread(target=proc.stdout.read, daemon=True)
    try:
        line = proc.stdout.readline()
        if "Ready" not in line:
            pytest.fail(f"test server did not start: {line!r}")
        port = int(line.strip().rsplit(":", 1)[1])
        drain.start()  # server stack traces go to stdout; keep the pipe from filling
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(5)
        if drain.is_alive():
            drain.join(5)
        proc.stdout.close()


@pytest.mark.anyio
async def test_crud_query_paging_and_batch(server_url: str) -> None:
    link = ContainerLink(f"test-{uuid.uuid4().hex[:8]}", "duro")
    async with CosmosRestClient(server_url, EMULATOR_KEY, batch_partition_key=True) as client:
        assert await client.create_database_if_missing(link.database)
        assert not await client.create_database_if_missing(link.database)
        policy = {
            "indexingMode": "consistent",
            "includedPaths": [{"path": "/*"}],
            "compositeIndexes": [[{"path": "/type"}, {"path": "/seq"}]],
        }
        assert await client.create_container_if_missing(
            link, partition_key_path="/instanceId", indexing_policy=policy
        )
        assert not await client.create_container_if_missing(link, partition_key_path="/instanceId")

        created = await client.create_document(link, {"id": "a", "instanceId": "i1", "n": 1}, "i1")
        assert created.status == 201 and created.etag
        with pytest.raises(CosmosConflict):
            await client.create_document(link, {"id": "a", "instanceId": "i1"}, "i1")
        read = await client.read_document(link, "a", "i1")
        assert read.body is not None and read.body["n"] == 1 and read.etag == created.etag

        replaced = await client.replace_document(
            link, "a", {"id": "a", "instanceId": "i1", "n": 2}, "i1", if_match=read.etag
        )
        with pytest.raises(CosmosPreconditionFailed):
            await client.replace_document(
                link, "a", {"id": "a", "instanceId": "i1", "n": 3}, "i1", if_match=read.etag
            )
        patched = await client.patch_document(
            link, "a", "i1", [{"op": "incr", "path": "/n", "value": 5}], if_match=replaced.etag
        )
        assert patched.body is not None and patched.body["n"] == 7
        await client.upsert_document(link, {"id": "b", "instanceId": "i1", "n": 0}, "i1")
        await client.delete_document(link, "b", "i1")

        for seq in range(5):
            doc = {"id": f"h{seq}", "instanceId": "i2", "type": "history", "seq": seq}
            await client.create_document(link, doc, "i2")
        pages = [
            page
            async for page in client.query(
                link,
                "SELECT * FROM c WHERE c.instanceId = @iid AND c.type = @t ORDER BY c.seq",
                {"iid": "i2", "t": "history"},
                partition_key="i2",
                max_item_count=2,
            )
        ]
        assert len(pages) >= 3
        assert [d["seq"] for p in pages for d in p.items] == [0, 1, 2, 3, 4]

        results = await client.batch(
            link,
            "i3",
            [
                BatchOperation.create({"id": "x", "instanceId": "i3"}),
                BatchOperation.upsert({"id": "y", "instanceId": "i3"}),
            ],
        )
        assert [r.status for r in results] == [201, 201] or [r.status for r in results] == [
            201,
            200,
        ]
        with pytest.raises(CosmosBatchFailed) as info:
            await client.batch(link, "i3", [BatchOperation.create({"id": "x", "instanceId": "i3"})])
        assert info.value.failed_index == 0 and info.value.failed_status == 409

        stats = client.statistics()
        assert stats.by_kind["batch"] == 2 and stats.by_kind["query"] == len(pages)
        assert await client.delete_database(link.database)
