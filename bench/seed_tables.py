"""The seed's throughput figures next to the calibrated model's; prints JSON.

    python bench/seed_tables.py [--context 576] [--engine vllm]

The seed states the batch for some figures (64 for its headline vLLM numbers, 1-128 for its
decode sweep) and never the sequence length; every figure is modeled as steady decode at the
stated batch (64 where unstated, fewer if the KV cache cannot hold it) with `--context` tokens
per sequence, FP16 unless the row says INT4, on the named engine (vLLM by default, as the seed).
"""

from __future__ import annotations

import argparse
import json
import sys

from costengine.throughput import Deployment

# section, label, model, gpu, tp, quant, batch, seed tokens/s
SEED_FIGURES = (
    ("GPU table", "Llama-2 7B on H100 SXM", "llama-2-7b", "H100-SXM", 1, "fp16", 64, 4800),
    ("GPU table", "Llama-2 7B on A100 80GB", "llama-2-7b", "A100-80GB", 1, "fp16", 64, 2900),
    ("GPU table", "Llama-2 7B on A10G", "llama-2-7b", "A10G", 1, "fp16", 64, 850),
    ("GPU table", "Llama-2 7B on L4", "llama-2-7b", "L4", 1, "fp16", 64, 620),
    ("GPU table", "Llama-2 7B on T4", "llama-2-7b", "T4", 1, "fp16", 64, 350),
    ("multi-GPU table", "Llama-2 70B FP16 4xA100", "llama-2-70b", "A100-80GB", 4, "fp16", 64, 2400),
    ("multi-GPU table", "Llama-2 70B FP16 4xH100", "llama-2-70b", "H100-SXM", 4, "fp16", 64, 6200),
    ("multi-GPU table", "Llama-2 70B INT4 2xA100", "llama-2-70b", "A100-80GB", 2, "int4", 64, 1800),
    ("multi-GPU table", "Llama-2 70B INT4 1xH100", "llama-2-70b", "H100-SXM", 1, "int4", 64, 1500),
    (
        "multi-GPU table",
        "Mixtral 8x7B FP16 2xA100",
        "mixtral-8x7b",
        "A100-80GB",
        2,
        "fp16",
        64,
        3200,
    ),
    ("batching text", "7B on H100, no batching", "llama-2-7b", "H100-SXM", 1, "fp16", 1, 90),
    ("decode_throughput comments", "batch 1", "llama-2-7b", "H100-SXM", 1, "fp16", 1, 200),
    ("decode_throughput comments", "batch 32", "llama-2-7b", "H100-SXM", 1, "fp16", 32, 3800),
    ("decode_throughput comments", "batch 64", "llama-2-7b", "H100-SXM", 1, "fp16", 64, 4800),
    ("decode_throughput comments", "batch 128", "llama-2-7b", "H100-SXM", 1, "fp16", 128, 5100),
    ("utilization cards", "20%: batch 2-4", "llama-2-7b", "H100-SXM", 1, "fp16", 3, 400),
    ("utilization cards", "80%: batch 32-64", "llama-2-7b", "H100-SXM", 1, "fp16", 48, 3800),
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--context", type=int, default=576, help="tokens per sequence in KV")
    parser.add_argument("--engine", default="vllm")
    args = parser.parse_args()
    rows = []
    for section, label, model, gpu, tp, quant, batch, seed_tps in SEED_FIGURES:
        dep = Deployment.of(model, gpu, tp, quant, args.engine)
        fits = dep.max_batch(args.context)
        used = min(batch, fits)
        modeled = dep.decode_tokens_per_second(used, args.context) if used >= 1 else 0.0
        rows.append(
            {
                "section": section,
                "figure": label,
                "batch": batch,
                "batch_modeled": used,
                "seed_tokens_per_second": seed_tps,
                "model_tokens_per_second": round(modeled),
                "seed_over_model": round(seed_tps / modeled, 2) if modeled else None,
            }
        )
    json.dump(
        {"context": args.context, "engine": args.engine, "figures": rows}, sys.stdout, indent=2
    )
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
