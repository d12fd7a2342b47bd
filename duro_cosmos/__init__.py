"""duro on Azure Cosmos DB (NoSQL API): ``CosmosProvider`` over raw REST, no Azure SDK."""

from ._provider import CosmosProvider
from ._rest import CosmosConfig, CosmosConfigError, RequestStatistics, RetryPolicy
from ._store import INDEXING_POLICY, TurnTooLargeError

__all__ = [
    "INDEXING_POLICY",
    "CosmosConfig",
    "CosmosConfigError",
    "CosmosProvider",
    "RequestStatistics",
    "RetryPolicy",
    "TurnTooLargeError",
]
