"""The request-unit price list the compat layer's meter charges by (Azure's rules of thumb).

The local test server answers ``x-ms-request-charge: 1`` to everything. The meter estimates
what Azure Cosmos DB would charge instead, from the sizes and shapes the layer can see. These
are **estimates for comparing request patterns**, not a bill: real charges also depend on
consistency level, index lookups, documents loaded (not only returned) and service version.

=================================  ==========================================================
request                            estimated charge (RU)
=================================  ==========================================================
point read (200)                   ``max(1, KB returned) x 1``
create, upsert that creates (201)  ``4.5 x max(1, KB written) + 0.05 x indexed terms``
                                   (= ~5.5 RU for a 1 KB item with ~20 indexed properties)
replace, upsert that replaces      2 x the create charge of the new document
delete                             1 x the create charge of the deleted document
PATCH                              2 x the create charge of the patched document (replace-like:
                                   Cosmos rewrites and re-indexes the whole item)
transactional batch                the sum of its operations (a failed batch: the operations
                                   before the failing one, plus ~1 RU for the failing one)
query page in one partition        ``2.5 + 1 x KB returned``
query page over P partitions       ``2.5 x P + 1 x KB returned`` (each physical partition runs
                                   the query on its own index; the documents are returned once)
412, 409, 404                      1
429                                0 (throttled requests are free; the client waits instead)
other 4xx, 5xx, injected faults    0 (refused before a partition executed anything)
pkranges, account, database,       1 (nominal: metadata requests are served by the gateway and
container requests                 the master partition, not by the container's throughput)
=================================  ==========================================================

*KB* is bytes / 1024 of the JSON body as sent or returned (system properties included on the
way back). *Indexed terms* are the scalar leaves the container's indexing policy indexes
(:mod:`.compat_indexing`); the meter learns the policy from the container-create request it
sees, and assumes Cosmos's default (index everything) for containers created elsewhere.

Sources (Azure Cosmos DB documentation, learn.microsoft.com):

* "Request Units in Azure Cosmos DB": a point read of a 1 KB item is 1 RU; write charges
  grow with item size, item property count and the number of indexed properties.
* "Optimize request cost in Azure Cosmos DB" (optimize-cost-reads-writes): point read 1 KB =
  1 RU, 100 KB = 10 RU; a query's charge depends on documents loaded/returned and index
  lookups, and a query split into pages is charged page by page, summing to the whole.
* "Understand request unit consumption": measured 1 KB write = 4.95 RU. (Note: its table grows
  writes *sub-linearly* between 1 and 32 KB, e.g. 4 KB = 6.67 RU; the linear ~5 RU per KB
  rule used here over-estimates multi-KB writes. The meter also reports bytes, so totals can
  be re-priced with another curve.)
* "Indexing policies in Azure Cosmos DB": path syntax and precedence; excluding paths reduces
  the RU charge of writes.
* "Query an Azure Cosmos DB container" (how-to-query-container): a cross-partition query fans
  out to every physical partition and runs against each partition's own index; RU charges
  grow with the number of physical partitions.
* "Transactional batch operations in Azure Cosmos DB": all operations share one partition key
  and succeed or fail together; the batch response carries the request charge.
* "Review rate-limiting errors" (Learn module on monitoring Cosmos DB responses) and the
  "Handle rate limiting/request rate too large" guidance: a 429 is the service ending the
  request pre-emptively, using no throughput beyond the provisioned level, with
  ``x-ms-retry-after-ms`` telling the client how long to wait.
* The shared brief ``/work/shared/reference/cosmos-cost.md`` condenses the same rules
  (replace ~2x create, delete ~ create, 412/409/404 ~1 RU, 429 free, query >= 2.5 RU).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_RU_TABLE", "RuTable"]

KB = 1024.0


@dataclass(frozen=True, slots=True)
class RuTable:
    """Coefficients of the price list above; replace the defaults to try another model."""

    read_per_kb: float = 1.0
    read_min: float = 1.0
    write_per_kb: float = 4.5
    write_per_indexed_term: float = 0.05
    write_min_kb: float = 1.0
    replace_factor: float = 2.0
    delete_factor: float = 1.0
    patch_factor: float = 2.0
    query_per_partition: float = 2.5
    query_per_kb: float = 1.0
    failure: float = 1.0
    """412, 409 and 404: the partition did a lookup before refusing."""
    metadata: float = 1.0

    def point_read(self, returned_bytes: int) -> float:
        return max(self.read_min, self.read_per_kb * returned_bytes / KB)

    def create(self, written_bytes: int, indexed_terms: int) -> float:
        kb = max(self.write_min_kb, written_bytes / KB)
        return self.write_per_kb * kb + self.write_per_indexed_term * indexed_terms

    def replace(self, written_bytes: int, indexed_terms: int) -> float:
        return self.replace_factor * self.create(written_bytes, indexed_terms)

    def delete(self, document_bytes: int, indexed_terms: int) -> float:
        return self.delete_factor * self.create(document_bytes, indexed_terms)

    def patch(self, document_bytes: int, indexed_terms: int) -> float:
        return self.patch_factor * self.create(document_bytes, indexed_terms)

    def query_page(self, returned_bytes: int, partitions: int) -> float:
        return self.query_per_partition * max(1, partitions) + (
            self.query_per_kb * returned_bytes / KB
        )

    def refused(self, status: int) -> float:
        """A request answered with an error status (never called for 2xx)."""
        if status in (404, 409, 412):
            return self.failure
        return 0.0


DEFAULT_RU_TABLE = RuTable()
