"""Quantization modes: bytes per weight and which tensor-core path does the math.

Sources:
- FP16/BF16: 2 bytes per parameter.
- FP8 (W8A8, E4M3) and INT8 (W8A8, SmoothQuant): 1 byte per parameter; the GEMMs run on the
  FP8/INT8 tensor cores where the GPU has them (FP8: Ada, Hopper, Blackwell, CDNA3), else on the
  FP16 path after dequantization (weight-only, e.g. vLLM's Marlin FP8 kernels on Ampere).
- INT4 (AWQ / GPTQ, W4A16): 4-bit weights plus one FP16 scale and one 4-bit zero point per group
  of 128 weights (AWQ paper, Lin et al. 2023, §4 "group size 128") = 4 + (16 + 4) / 128 bits
  ≈ 4.16 bits ≈ 0.52 bytes per parameter; math in FP16 after dequantization.
- Embedding and LM-head matrices stay in 16 bits in all common AWQ/GPTQ/FP8 checkpoints.
- The KV cache stays FP16 (2 bytes per element) unless an FP8 KV cache is asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from costengine.errors import lookup


class MathPath(StrEnum):
    FP16 = "fp16"
    FP8 = "fp8"
    INT8 = "int8"


@dataclass(frozen=True, slots=True)
class Quantization:
    name: str
    weight_bytes_per_param: float
    math: MathPath
    description: str


QUANTIZATIONS: dict[str, Quantization] = {
    "fp16": Quantization("fp16", 2.0, MathPath.FP16, "16-bit floating point weights (FP16/BF16)"),
    "bf16": Quantization("bf16", 2.0, MathPath.FP16, "bfloat16 weights, same cost as FP16"),
    "fp8": Quantization("fp8", 1.0, MathPath.FP8, "FP8 E4M3 weights and activations (W8A8)"),
    "int8": Quantization("int8", 1.0, MathPath.INT8, "INT8 weights and activations (W8A8)"),
    "int4": Quantization(
        "int4", (4 + (16 + 4) / 128) / 8, MathPath.FP16, "4-bit AWQ/GPTQ, group 128 (W4A16)"
    ),
}


def quantization(name: str) -> Quantization:
    return lookup("quantization", QUANTIZATIONS, name.lower())
