"""How NVIDIA's DCGM exporter names the GPUs the simulator places on its nodes.

`modelName` is the product name the driver reports (`nvidia-smi --query-gpu=name`), which is
what dcgm-exporter copies into the label; the Kubernetes GPU feature discovery label
`nvidia.com/gpu.product` is the same name with spaces replaced by dashes. SXM parts are assumed
where a GPU comes in both forms and the catalog name does not say (A100: the 8-GPU HGX servers
cloud GPU instances use, such as AWS p4d/p4de).

AMD GPUs are not in the table: DCGM is NVIDIA-only (AMD's exporter has its own metric names).
"""

from __future__ import annotations

import uuid

from costoperator.sim.errors import SimError

#: Catalog GPU name → the driver's product name, as dcgm-exporter puts it in `modelName`.
DCGM_MODEL_NAMES: dict[str, str] = {
    "T4": "Tesla T4",
    "L4": "NVIDIA L4",
    "A10G": "NVIDIA A10G",
    "L40S": "NVIDIA L40S",
    "A100-40GB": "NVIDIA A100-SXM4-40GB",
    "A100-80GB": "NVIDIA A100-SXM4-80GB",
    "H100-PCIe": "NVIDIA H100 PCIe",
    "H100-SXM": "NVIDIA H100 80GB HBM3",
    "H200": "NVIDIA H200",
    "B200": "NVIDIA B200",
}

#: The simulator's own namespace for deterministic GPU UUIDs (uuid5 of node and index).
_UUID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_DNS, "sim.llmcost.io")


def dcgm_model_name(gpu: str) -> str:
    """The `modelName` label DCGM reports for catalog GPU `gpu`."""
    try:
        return DCGM_MODEL_NAMES[gpu]
    except KeyError:
        raise SimError(
            f"no DCGM model name for GPU {gpu!r}: the DCGM exporter covers NVIDIA GPUs "
            f"({', '.join(DCGM_MODEL_NAMES)})"
        ) from None


def gpu_product_label(gpu: str) -> str:
    """The node label `nvidia.com/gpu.product` GPU feature discovery sets for `gpu`."""
    return dcgm_model_name(gpu).replace(" ", "-")


def gpu_uuid(node: str, index: int) -> str:
    """A stable, unique `UUID` label in the driver's `GPU-xxxxxxxx-...` form."""
    return f"GPU-{uuid.uuid5(_UUID_NAMESPACE, f'{node}/{index}')}"
