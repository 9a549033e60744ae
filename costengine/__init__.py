"""costengine: the pure cost model of self-hosted LLM inference.

No cluster, metrics or network access lives here (an import-linter contract enforces it): every
function takes numbers and catalog entries and returns numbers, so the CLI, the operator and the
benchmarks share one implementation of the seed's equations.
"""

from costengine.cost import (
    HOURS_PER_MONTH,
    InputOutputCost,
    cost_per_million_tokens,
    hourly_cost_usd,
    monthly_cost_usd,
    split_input_output,
    tokens_per_dollar,
    usd_per_million_tokens,
)
from costengine.errors import CostEngineError, InvalidInputError, UnknownNameError
from costengine.gpus import GPU, GPUS
from costengine.models import MODELS, ModelSpec
from costengine.pricing import (
    CapacityType,
    PriceEntry,
    PriceSheet,
    aws_us_east_1_price_sheet,
    price_sheet,
    seed_price_sheet,
)
from costengine.quant import QUANTIZATIONS, Quantization, quantization
from costengine.throughput import ENGINES, Deployment, EngineProfile, decode_throughput

__all__ = [
    "ENGINES",
    "GPU",
    "GPUS",
    "HOURS_PER_MONTH",
    "MODELS",
    "QUANTIZATIONS",
    "CapacityType",
    "CostEngineError",
    "Deployment",
    "EngineProfile",
    "InputOutputCost",
    "InvalidInputError",
    "ModelSpec",
    "PriceEntry",
    "PriceSheet",
    "Quantization",
    "UnknownNameError",
    "aws_us_east_1_price_sheet",
    "cost_per_million_tokens",
    "decode_throughput",
    "hourly_cost_usd",
    "monthly_cost_usd",
    "price_sheet",
    "quantization",
    "seed_price_sheet",
    "split_input_output",
    "tokens_per_dollar",
    "usd_per_million_tokens",
]
