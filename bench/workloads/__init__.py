"""The workloads of ``make bench``, in the order they run.

Owns the list and its order: bulk writes first (each reloads the table), then the per-call
writes, then the read-only workloads that share one loaded table, then arrays, vectors and the
migration (which declares the next version of the trades model, so it runs last). Each module
owns its workloads' variants.
"""

from __future__ import annotations

from bench.harness import Workload
from bench.workloads.arrays import Arrays
from bench.workloads.bulk import (
    BatchDelete,
    BulkInsert,
    BulkUpsert,
    IncrementUpdate,
    RowUpdate,
    SetUpdate,
)
from bench.workloads.calls import Lookups, PooledLookups, RowDeletes, RowUpdates
from bench.workloads.columnar import Columnar
from bench.workloads.migrate import Migrate
from bench.workloads.partitions import PartitionLoad, PartitionRead
from bench.workloads.pipeline import (
    LatencyComplex,
    LatencyInsert,
    LatencyLookup,
    LatencyUpdate,
    PipelinedEtl,
    PipelinedLookups,
    PipelinedUpdates,
)
from bench.workloads.reads import Aggregates, FindByIds, Pages, RangeRead
from bench.workloads.replicas import ReplicaLookups, ReplicaRanges, ReplicaRouting
from bench.workloads.vectors import VectorLoad, VectorNearest

WORKLOADS: tuple[type[Workload], ...] = (
    BulkInsert,
    BulkUpsert,
    SetUpdate,
    IncrementUpdate,
    RowUpdate,
    BatchDelete,
    RowUpdates,
    RowDeletes,
    Lookups,
    PooledLookups,
    PipelinedLookups,
    LatencyLookup,
    LatencyComplex,
    PipelinedUpdates,
    PipelinedEtl,
    LatencyUpdate,
    LatencyInsert,
    FindByIds,
    RangeRead,
    Aggregates,
    Pages,
    ReplicaRouting,
    ReplicaLookups,
    ReplicaRanges,
    Columnar,
    Arrays,
    VectorLoad,
    VectorNearest,
    PartitionLoad,
    PartitionRead,
    Migrate,
)

__all__ = ["WORKLOADS"]
