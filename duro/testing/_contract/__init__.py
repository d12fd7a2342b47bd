"""The provider contract suite: one class a provider's test module subclasses."""

from __future__ import annotations

import pytest

# Mixins are plain modules, not test files: ask pytest to rewrite their asserts so a failing
# contract check shows the values involved. Must run before the mixins are imported.
pytest.register_assert_rewrite(
    "duro.testing._contract._activities",
    "duro.testing._contract._batches",
    "duro.testing._contract._cached",
    "duro.testing._contract._deletion",
    "duro.testing._contract._handover",
    "duro.testing._contract._heartbeats",
    "duro.testing._contract._kv",
    "duro.testing._contract._locks",
    "duro.testing._contract._management",
    "duro.testing._contract._queues",
    "duro.testing._contract._retention",
    "duro.testing._contract._sessions",
    "duro.testing._contract._skips",
    "duro.testing._contract._starts",
    "duro.testing._contract._tags",
    "duro.testing._contract._turns",
    "duro.testing._contract._fixtures",
    "duro.testing._contract._helpers",
)

from ._activities import ActivityQueueContract  # noqa: E402
from ._base import ContractBase  # noqa: E402
from ._batches import ActivityBatchContract, TurnBatchContract  # noqa: E402
from ._cached import CachedHistoryContract  # noqa: E402
from ._deletion import DeletionContract, PruneContract  # noqa: E402
from ._handover import CommitFetchContract  # noqa: E402
from ._heartbeats import HeartbeatContract  # noqa: E402
from ._kv import KvContract  # noqa: E402
from ._locks import InstanceLockingContract, LockExpiryContract  # noqa: E402
from ._management import CustomStatusContract, ManagementContract  # noqa: E402
from ._queues import (  # noqa: E402
    ArrivalOrderContract,
    LongPollingContract,
    PoisonContract,
    QueueSemanticsContract,
)
from ._retention import RetentionContract  # noqa: E402
from ._sessions import SessionContract  # noqa: E402
from ._skips import SkipContract  # noqa: E402
from ._starts import StartContract  # noqa: E402
from ._tags import TagContract  # noqa: E402
from ._turns import (  # noqa: E402
    AtomicityContract,
    ErrorClassificationContract,
    InstanceCreationContract,
    MultiExecutionContract,
)


class ProviderContract(
    AtomicityContract,
    ErrorClassificationContract,
    InstanceCreationContract,
    StartContract,
    MultiExecutionContract,
    InstanceLockingContract,
    LockExpiryContract,
    QueueSemanticsContract,
    ArrivalOrderContract,
    PoisonContract,
    LongPollingContract,
    ActivityQueueContract,
    ActivityBatchContract,
    HeartbeatContract,
    TurnBatchContract,
    CommitFetchContract,
    CachedHistoryContract,
    SkipContract,
    TagContract,
    SessionContract,
    ManagementContract,
    CustomStatusContract,
    DeletionContract,
    PruneContract,
    RetentionContract,
    KvContract,
):
    """Every behaviour a duro provider must honour, as one pytest class to subclass.

    ::

        class TestMyStoreContract(duro.testing.ProviderContract):
            long_polling = False  # True if fetches wait for work in-process

            def create_provider(self, clock, tmp_path):
                return MyStore(..., clock=clock)

    The provider must read time from ``clock`` (a ``VirtualClock``) so lock expiry and timer
    visibility can be driven without sleeping. ``lock_timeout`` tunes the lock the tests take.
    """


__all__ = [
    "ActivityBatchContract",
    "ActivityQueueContract",
    "ArrivalOrderContract",
    "AtomicityContract",
    "CachedHistoryContract",
    "CommitFetchContract",
    "ContractBase",
    "CustomStatusContract",
    "DeletionContract",
    "ErrorClassificationContract",
    "HeartbeatContract",
    "InstanceCreationContract",
    "InstanceLockingContract",
    "KvContract",
    "LockExpiryContract",
    "LongPollingContract",
    "ManagementContract",
    "MultiExecutionContract",
    "PoisonContract",
    "ProviderContract",
    "PruneContract",
    "QueueSemanticsContract",
    "RetentionContract",
    "SessionContract",
    "SkipContract",
    "StartContract",
    "TagContract",
    "TurnBatchContract",
]
