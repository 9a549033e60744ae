"""Errors the fleet simulator raises on purpose.

The tree::

    SimError (ValueError)   a fleet that cannot be built as described (duplicate pod, GPUs
                            over a node's capacity, unknown workload) or a question it cannot
                            answer (a truth window reaching past the simulated present)

Catalog look-ups (`Deployment.of`) raise the cost engine's own `CostEngineError` tree; the
simulator lets those through unchanged.
"""

from __future__ import annotations


class SimError(ValueError):
    """A fleet that cannot be built as described, or a question it cannot answer."""
