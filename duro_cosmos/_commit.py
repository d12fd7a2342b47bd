"""What a turn sends: work items, withdrawals and messages, split by partition."""

from __future__ import annotations

import msgspec

from duro.providers._types import TurnCommit

from ._documents import OutboxItem, dump
from ._model import queue_doc, work_doc
from ._rest import BatchOperation
from ._store import Store


async def turn_effects(
    store: Store, commit: TurnCommit, commit_id: str, now: int
) -> tuple[list[tuple[BatchOperation, OutboxItem]], list[OutboxItem]]:
    """Work items, withdrawals and messages: same-partition ones as batch operations (with
    the outbox item that can stand in for each), other partitions' as outbox items."""
    instance_id = commit.changes.instance_id
    local: list[tuple[BatchOperation, OutboxItem]] = []
    remote: list[OutboxItem] = []
    execution_id = commit.changes.execution_id
    withdrawn = {(instance_id, execution_id, seq) for seq in commit.changes.cancelled_activities}
    for i, task in enumerate(commit.changes.activity_tasks):
        if (task.instance_id, task.execution_id, task.seq) in withdrawn:
            continue  # scheduled and withdrawn in one turn: never inserted
        doc = work_doc(task, f"w:{commit_id}:{i}", now)
        body = dump(doc)
        item = OutboxItem(
            target=task.instance_id, doc_id=doc.id, kind="work",
            body=msgspec.json.encode(body).decode(),
        )  # fmt: skip
        if task.instance_id == instance_id:
            local.append((BatchOperation.create(body), item))
        else:
            remote.append(item)
    if withdrawn:
        rows = await store.query_partition(
            instance_id,
            "SELECT c.id, c.executionId, c.seqNo FROM c WHERE c.instanceId = @pk "
            "AND c.type = 'worker_queue'",
        )
        for row in rows:
            if (instance_id, row["executionId"], row["seqNo"]) in withdrawn:
                item = OutboxItem(target=instance_id, doc_id=row["id"], kind="withdraw")
                local.append((BatchOperation.delete(row["id"]), item))
    for j, scheduled in enumerate(commit.changes.orchestrator_messages):
        visible = now if scheduled.visible_at_ms is None else scheduled.visible_at_ms
        qdoc = queue_doc(scheduled.message, f"m:{commit_id}:{j}", visible, now)
        body = dump(qdoc)
        item = OutboxItem(
            target=qdoc.instance_id, doc_id=qdoc.id, kind="message",
            body=msgspec.json.encode(body).decode(),
        )  # fmt: skip
        if qdoc.instance_id == instance_id:
            local.append((BatchOperation.create(body), item))
        else:
            remote.append(item)
    return local, remote
