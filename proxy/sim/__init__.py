"""A simulated oVirt engine, standing in for a real one in tests, demos and benchmarks.

`engine` is the REST server (SimulatedEngine), `httpd` its HTTP side, `bodies` its XML
documents, `affinity` its affinity groups and labels, `events` its audit log and `search`
the engine's search language; `generate` makes random cluster
snapshots and `cli` is `ovirt-scheduler-proxy simulate`.  The snapshot format belongs to
`proxy.snapshot`.
"""

from .engine import SimulatedEngine

__all__ = ["SimulatedEngine"]
