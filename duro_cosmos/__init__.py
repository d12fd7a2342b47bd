"""duro on Azure Cosmos DB (NoSQL API): ``CosmosProvider`` over raw REST, no Azure SDK."""

from ._provider import CosmosProvider
from ._rest import CosmosConfig, CosmosConfigError, HttpRetryPolicy, RequestStatistics
from ._store import INDEXING_POLICY, TurnTooLargeError

__all__ = [
    "INDEXING_POLICY",
    "CosmosConfig",
    "CosmosConfigError",
    "CosmosProvider",
    "HttpRetryPolicy",
    "RequestStatistics",
    "TurnTooLargeError",
]
