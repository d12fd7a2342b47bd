"""duro_cosmos: the Azure Cosmos DB (NoSQL API) provider for duro, over raw REST."""
