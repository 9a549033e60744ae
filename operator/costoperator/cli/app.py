"""The `llmcost` commands. Each turns flags into engine calls and renders one result."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from costengine import breakeven as be
from costengine import caching, spot, stack, tenancy
from costengine.batching import batching_speedup, utilization_economics
from costengine.cost import cost_per_million_tokens, tokens_per_dollar
from costengine.errors import InvalidInputError
from costengine.gpus import GPUS
from costengine.models import MODELS
from costengine.pricing import PRICE_SHEETS, CapacityType, price_sheet
from costengine.quant import QUANTIZATIONS
from costengine.rightsize import Demand, rightsize
from costengine.spotplan import SCALE_DOWN_WINDOW_S
from costengine.throughput import ENGINES, Deployment, decode_throughput
from costoperator.cli.render import emit, grid_table, key_value_table, money, num, pct
from costoperator.traces import demand_series, read_trace


class Output(StrEnum):
    table = "table"
    json = "json"


OutputOpt = Annotated[
    Output, typer.Option("--output", "-o", help="table for people, json for scripts.")
]

app = typer.Typer(
    name="llmcost",
    help=(
        "Cost of self-hosted LLM inference: $ per 1M tokens, throughput, right-sizing, caching, "
        "spot and break-even calculators, and the llm-cost-operator.\n\n"
        "Every command takes --output table|json. Run `llmcost COMMAND --help` for examples."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

GPU_HELP = "GPU: " + ", ".join(GPUS)
MODEL_HELP = "Model: " + ", ".join(MODELS)
QUANT_HELP = "Quantization: " + ", ".join(QUANTIZATIONS)
# A taint key: a qualified name, an optional DNS-subdomain prefix and "/", then a name.
_TAINT_KEY = re.compile(
    r"(?:[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
)
ENGINE_HELP = "Serving engine whose efficiency to model: " + ", ".join(ENGINES)


# --- estimate -----------------------------------------------------------------------------


@app.command()
def estimate(
    gpu_hourly_usd: Annotated[float, typer.Option(help="Price of one GPU-hour in USD.")],
    tokens_per_second: Annotated[
        float, typer.Option(help="Throughput of the whole deployment at full load (tokens/s).")
    ],
    utilization: Annotated[
        float, typer.Option(help="Average busy fraction of that throughput, in (0, 1].")
    ] = 0.70,
    gpus: Annotated[int, typer.Option(help="GPUs the deployment uses.")] = 1,
    output: OutputOpt = Output.table,
) -> None:
    """$ per 1M tokens from $/GPU-hour, throughput, utilization and GPU count (the seed's
    equation).

    Example (the seed's Llama-2 70B on 4×A100 80GB → $1.46):

      llmcost estimate --gpu-hourly-usd 2.21 --tokens-per-second 2400 --utilization 0.7 --gpus 4
    """
    usd = cost_per_million_tokens(gpu_hourly_usd, tokens_per_second, utilization, gpus)
    hourly = gpu_hourly_usd * gpus
    effective = tokens_per_second * utilization
    per_dollar = tokens_per_dollar(hourly, effective) if hourly > 0 else None
    result = {
        "usd_per_million_tokens": usd,
        "usd_per_hour": hourly,
        "effective_tokens_per_second": effective,
        "tokens_per_dollar": per_dollar,
        "inputs": {
            "gpu_hourly_usd": gpu_hourly_usd,
            "tokens_per_second": tokens_per_second,
            "utilization": utilization,
            "gpus": gpus,
        },
    }
    emit(
        output,
        result,
        lambda: [
            key_value_table(
                "Cost per million tokens",
                [
                    ("$ / 1M tokens", money(usd, 4)),
                    ("fleet $ / hour", money(hourly)),
                    ("effective tokens/s", num(effective)),
                    ("tokens per $", num(per_dollar)),
                ],
            )
        ],
    )


# --- throughput ---------------------------------------------------------------------------


@app.command()
def throughput(
    model: Annotated[str, typer.Option(help=MODEL_HELP)],
    gpu: Annotated[str, typer.Option(help=GPU_HELP)],
    tp: Annotated[int, typer.Option(help="Tensor-parallel GPUs serving one replica.")] = 1,
    batch: Annotated[int, typer.Option(help="Concurrent sequences in a decode step.")] = 64,
    context: Annotated[
        int, typer.Option(help="Tokens each sequence holds in the KV cache (prompt + generated).")
    ] = 576,
    quant: Annotated[str, typer.Option(help=QUANT_HELP)] = "fp16",
    engine: Annotated[str, typer.Option(help=ENGINE_HELP)] = "vllm",
    output: OutputOpt = Output.table,
) -> None:
    """Modeled decode and prefill throughput of a model on a GPU group.

    Example (Llama-2 70B, 4×A100 80GB, batch 16, 576-token context):

      llmcost throughput --model llama-2-70b --gpu A100-80GB --tp 4 --batch 16 --context 576
    """
    dep = Deployment.of(model, gpu, tp, quant, engine)
    if not dep.fits():
        raise InvalidInputError(
            f"{dep.model.name} in {dep.quant.name} needs {dep.weight_bytes / tp / 1e9:.1f} GB of "
            f"weights per GPU; {dep.gpu.name} has {dep.gpu.memory_gb:g} GB (try a larger --tp "
            "or a smaller --quant)"
        )
    step = dep.decode_step(batch, context)
    decode_tps = batch / step.total_s
    prefill_tps = dep.prefill_tokens_per_second(batch, context)
    max_batch = dep.max_batch(context)
    seed_formula = decode_throughput(
        dep.weight_bytes / tp, dep.gpu.memory_bandwidth_tb_per_s * 1e12, batch
    )
    result = {
        "model": dep.model.name,
        "gpu": dep.gpu.name,
        "tp": tp,
        "quant": dep.quant.name,
        "engine": dep.engine.name,
        "batch": batch,
        "context": context,
        "decode_tokens_per_second": decode_tps,
        "prefill_tokens_per_second": prefill_tps,
        "decode_step_seconds": step.total_s,
        "decode_step_breakdown_seconds": {
            "weights_and_gemm": step.gemm_s,
            "attention_kv": step.attention_s,
            "allreduce": step.allreduce_s,
            "host": step.host_s,
        },
        "max_batch_at_context": max_batch,
        "fits_batch_in_memory": batch <= max_batch,
        "weight_gb_per_gpu": dep.weight_bytes / tp / 1e9,
        "kv_cache_gb_per_sequence": dep.kv_bytes_per_token * context / 1e9,
        "seed_formula_decode_tokens_per_second": seed_formula,
    }
    if batch > max_batch:
        result["warning"] = (
            f"batch {batch} needs more KV cache than fits; at most {max_batch} sequences of "
            f"{context} tokens"
        )
    emit(
        output,
        result,
        lambda: [
            key_value_table(
                f"{dep.model.name} on {tp}× {dep.gpu.name} ({dep.quant.name}, {dep.engine.name})",
                [
                    ("decode tokens/s", num(decode_tps)),
                    ("prefill tokens/s", num(prefill_tps)),
                    ("decode step", f"{step.total_s * 1e3:.2f} ms"),
                    ("  weights + GEMMs", f"{step.gemm_s * 1e3:.2f} ms"),
                    ("  attention (KV reads)", f"{step.attention_s * 1e3:.2f} ms"),
                    ("  all-reduce", f"{step.allreduce_s * 1e3:.2f} ms"),
                    ("  host / scheduler", f"{step.host_s * 1e3:.2f} ms"),
                    ("max batch at this context", num(max_batch)),
                    ("weights per GPU", f"{result['weight_gb_per_gpu']:.1f} GB"),
                    ("KV cache per sequence", f"{result['kv_cache_gb_per_sequence']:.2f} GB"),
                    ("seed formula (decode_throughput)", num(seed_formula)),
                    *([("warning", str(result["warning"]))] if "warning" in result else []),
                ],
            )
        ],
    )


# --- rightsize ----------------------------------------------------------------------------


@app.command(name="rightsize")
def rightsize_cmd(
    model: Annotated[str, typer.Option(help=MODEL_HELP)],
    tokens_per_second: Annotated[
        float, typer.Option(help="Demand: generated (output) tokens per second to serve.")
    ],
    input_tokens: Annotated[int, typer.Option(help="Prompt tokens per request.")] = 512,
    output_tokens: Annotated[int, typer.Option(help="Generated tokens per request.")] = 256,
    prices: Annotated[str, typer.Option(help="Price sheet: " + ", ".join(PRICE_SHEETS))] = "seed",
    capacity: Annotated[
        list[CapacityType] | None,
        typer.Option(help="Capacity types to consider (repeat the flag); default on_demand."),
    ] = None,
    gpu: Annotated[
        list[str] | None, typer.Option(help="Only these GPUs (repeat); default: all priced.")
    ] = None,
    quant: Annotated[
        list[str] | None, typer.Option(help="Only these quantizations (repeat).")
    ] = None,
    engine: Annotated[str, typer.Option(help=ENGINE_HELP)] = "vllm",
    max_itl_ms: Annotated[
        float, typer.Option(help="Latency bound: most milliseconds between two tokens.")
    ] = 100.0,
    target_utilization: Annotated[
        float, typer.Option(help="Highest share of capacity to plan for, in (0, 1].")
    ] = 0.7,
    top: Annotated[int, typer.Option(help="Rows to show (JSON has all).")] = 10,
    include_infeasible: Annotated[
        bool, typer.Option("--all", help="Also list configurations that do not fit, with why.")
    ] = False,
    output: OutputOpt = Output.table,
) -> None:
    """Rank GPU × count × quantization × capacity type by $/1M tokens for a model and demand.

    Drops what does not fit in memory or misses the latency bound.

    Examples:

      llmcost rightsize --model llama-2-70b --tokens-per-second 2000

      llmcost rightsize --model llama-3.1-8b --tokens-per-second 500 --prices aws-us-east-1
      --capacity on_demand --capacity spot
    """
    sheet = price_sheet(prices)
    demand = Demand(tokens_per_second, input_tokens, output_tokens)
    candidates = rightsize(
        model,
        demand,
        sheet,
        gpus=gpu,
        quants=quant or ("fp16", "fp8", "int8", "int4"),
        capacity_types=capacity or (CapacityType.ON_DEMAND,),
        engine=engine,
        max_inter_token_latency_s=max_itl_ms / 1000,
        target_utilization=target_utilization,
        include_infeasible=include_infeasible,
    )
    result = {
        "model": model,
        "price_sheet": sheet.name,
        "demand": {
            "output_tokens_per_second": demand.output_tokens_per_second,
            "total_tokens_per_second": demand.total_tokens_per_second,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
        },
        "candidates": candidates,
    }

    def rows() -> list[list[str]]:
        out = []
        for i, c in enumerate(candidates[:top], start=1):
            if not c.feasible:
                out.append(
                    [
                        f"{i}. {c.gpu}",
                        str(c.tp),
                        c.quant,
                        c.capacity_type.value,
                        "—",
                        "—",
                        "—",
                        "—",
                        "—",
                        "—",
                        c.reason,
                    ]
                )
                continue
            out.append(
                [
                    f"{i}. {c.gpu}",
                    str(c.tp),
                    c.quant,
                    c.capacity_type.value,
                    str(c.replicas),
                    str(c.batch),
                    f"{c.inter_token_latency_s * 1e3:.0f}",
                    money(c.usd_per_hour),
                    money(c.usd_per_million_tokens, 3),
                    money(c.usd_per_million_tokens_at_capacity, 3),
                    pct(c.utilization_ratio, 0),
                ]
            )
        return out

    emit(
        output,
        result,
        lambda: [
            grid_table(
                f"Right-sizing {model} for {tokens_per_second:g} output tok/s "
                f"({input_tokens} in / {output_tokens} out per request, {sheet.name} prices)",
                [
                    "GPU",
                    "TP",
                    "quant",
                    "capacity",
                    "replicas",
                    "batch",
                    "ITL ms",
                    "$/h",
                    "$/1M",
                    "$/1M at capacity",
                    "util",
                ],
                rows(),
            )
        ],
    )


# --- batching -----------------------------------------------------------------------------


@app.command()
def batching(
    model: Annotated[str, typer.Option(help=MODEL_HELP)],
    gpu: Annotated[str, typer.Option(help=GPU_HELP)],
    gpu_hourly_usd: Annotated[
        float | None, typer.Option(help="Price of one GPU-hour; default: the seed sheet's.")
    ] = None,
    tp: Annotated[int, typer.Option(help="Tensor-parallel GPUs per replica.")] = 1,
    context: Annotated[int, typer.Option(help="Tokens per sequence in the KV cache.")] = 576,
    quant: Annotated[str, typer.Option(help=QUANT_HELP)] = "fp16",
    engine: Annotated[str, typer.Option(help=ENGINE_HELP)] = "vllm",
    output: OutputOpt = Output.table,
) -> None:
    """Batching economics: the batch a load level needs and the $/1M tokens it costs.

    Example (the seed's low/high utilization cards are an H100 at $4.50):

      llmcost batching --model llama-2-7b --gpu H100-SXM
    """
    dep = Deployment.of(model, gpu, tp, quant, engine)
    price = (
        gpu_hourly_usd
        if gpu_hourly_usd is not None
        else price_sheet("seed").usd_per_gpu_hour(dep.gpu.name)
    )
    points = utilization_economics(dep, price * tp, context)
    result = {
        "model": dep.model.name,
        "gpu": dep.gpu.name,
        "tp": tp,
        "usd_per_hour": price * tp,
        "context": context,
        "speedup_batch_64_vs_1": batching_speedup(dep, min(64, dep.max_batch(context)), context),
        "load_levels": points,
    }
    emit(
        output,
        result,
        lambda: [
            grid_table(
                f"Batching economics: {dep.model.name} on {tp}× {dep.gpu.name} at "
                f"{money(price * tp)}/h",
                ["load", "tokens/s", "batch needed", "$/1M tokens"],
                [
                    [
                        pct(p.utilization_ratio, 0),
                        num(p.tokens_per_second),
                        str(p.batch),
                        money(p.usd_per_million_tokens, 3),
                    ]
                    for p in points
                ],
            )
        ],
    )


# --- caching ------------------------------------------------------------------------------

caching_app = typer.Typer(
    help="Caching ROI: prefix (KV reuse), semantic (whole responses), prompt templates.",
    no_args_is_help=True,
)
app.add_typer(caching_app, name="caching")


def _prefix_tables(title: str, r: caching.PrefixCacheROI) -> list[Table]:
    return [
        key_value_table(
            title,
            [
                ("prefill tokens/h without cache", num(r.total_prefill_tokens_per_hour)),
                ("  computed for hits", num(r.cached_prefill_tokens_per_hour)),
                ("  computed for misses", num(r.uncached_prefill_tokens_per_hour)),
                ("prefill tokens/h with cache", num(r.prefill_tokens_with_cache_per_hour)),
                ("prefill reduction", pct(r.prefill_reduction_ratio)),
                ("saved per hour", money(r.usd_saved_per_hour)),
            ],
        )
    ]


@caching_app.command()
def prefix(
    shared_tokens: Annotated[
        float, typer.Option(help="Shared prefix (system prompt) tokens.")
    ] = 2048,
    unique_tokens: Annotated[
        float, typer.Option(help="Per-request tokens after the prefix.")
    ] = 256,
    requests_per_hour: Annotated[float, typer.Option(help="Requests per hour.")] = 10_000,
    hit_ratio: Annotated[float, typer.Option(help="Share of requests that hit the cache.")] = 0.85,
    usd_per_million_prefill: Annotated[
        float, typer.Option(help="What 1M prefill tokens cost to compute.")
    ] = 0.50,
    output: OutputOpt = Output.table,
) -> None:
    """Prefix caching ROI (defaults: the seed's example → 75.6%, $8.70/h)."""
    r = caching.prefix_cache_roi(
        shared_tokens, unique_tokens, requests_per_hour, hit_ratio, usd_per_million_prefill
    )
    emit(output, {"prefix": r}, lambda: _prefix_tables("Prefix caching", r))


@caching_app.command()
def template(
    template_tokens: Annotated[float, typer.Option(help="Fixed template tokens.")],
    dynamic_tokens: Annotated[float, typer.Option(help="Per-request dynamic tokens.")],
    requests_per_hour: Annotated[float, typer.Option(help="Requests per hour.")],
    usd_per_million_prefill: Annotated[
        float, typer.Option(help="What 1M prefill tokens cost to compute.")
    ] = 0.50,
    output: OutputOpt = Output.table,
) -> None:
    """Prompt-template compilation: every request reuses the template's precomputed KV state.

    llmcost caching template --template-tokens 1500 --dynamic-tokens 600 --requests-per-hour 5000
    """
    r = caching.template_cache_roi(
        template_tokens, dynamic_tokens, requests_per_hour, usd_per_million_prefill
    )
    emit(output, {"template": r}, lambda: _prefix_tables("Template caching", r))


@caching_app.command()
def semantic(
    requests_per_hour: Annotated[float, typer.Option(help="Requests per hour.")],
    hit_ratio: Annotated[
        float, typer.Option(help="Share answered from the cache (seed: 0.1-0.3).")
    ],
    input_tokens: Annotated[float, typer.Option(help="Prompt tokens per request.")] = 512,
    output_tokens: Annotated[float, typer.Option(help="Generated tokens per request.")] = 256,
    usd_per_million_input: Annotated[float, typer.Option(help="$ per 1M input tokens.")] = 1.46,
    usd_per_million_output: Annotated[float, typer.Option(help="$ per 1M output tokens.")] = 1.46,
    cache_usd_per_hour: Annotated[
        float, typer.Option(help="What the vector store and embeddings cost per hour.")
    ] = 0.0,
    output: OutputOpt = Output.table,
) -> None:
    """Semantic caching: whole responses reused for similar queries (saves prefill and decode).

    llmcost caching semantic --requests-per-hour 10000 --hit-ratio 0.2
    """
    r = caching.semantic_cache_roi(
        requests_per_hour,
        hit_ratio,
        input_tokens,
        output_tokens,
        usd_per_million_input,
        usd_per_million_output,
        cache_usd_per_hour,
    )
    emit(
        output,
        {"semantic": r},
        lambda: [
            key_value_table(
                "Semantic caching",
                [
                    ("requests served from cache/h", num(r.requests_served_from_cache_per_hour)),
                    ("input tokens avoided/h", num(r.input_tokens_avoided_per_hour)),
                    ("output tokens avoided/h", num(r.output_tokens_avoided_per_hour)),
                    ("gross saved per hour", money(r.gross_usd_saved_per_hour)),
                    ("cache cost per hour", money(r.cache_usd_per_hour)),
                    ("net saved per hour", money(r.net_usd_saved_per_hour)),
                ],
            )
        ],
    )


# --- spot ---------------------------------------------------------------------------------


@app.command(name="spot")
def spot_cmd(
    base_gpus: Annotated[float, typer.Option(help="On-demand GPUs kept all month.")] = 4,
    spot_gpus: Annotated[float, typer.Option(help="Spot GPUs added for bursts.")] = 4,
    spot_duty: Annotated[float, typer.Option(help="Share of the month spot GPUs run.")] = 0.6,
    compare_gpus: Annotated[
        float, typer.Option(help="GPUs of the all-on-demand fleet compared against.")
    ] = 6,
    on_demand_usd: Annotated[float, typer.Option(help="On-demand $ per GPU-hour.")] = 2.21,
    spot_usd: Annotated[float, typer.Option(help="Spot $ per GPU-hour.")] = 0.73,
    interruptions_per_hour: Annotated[
        float, typer.Option(help="Spot interruptions per spot GPU-hour.")
    ] = 0.0,
    cold_start_s: Annotated[
        float, typer.Option(help="Seconds a replacement takes to serve (covered on demand).")
    ] = 0.0,
    output: OutputOpt = Output.table,
) -> None:
    """Hybrid spot/on-demand monthly cost (defaults: the seed's example → $7,731 vs $9,680).

    llmcost spot --interruptions-per-hour 0.05 --cold-start-s 300
    """
    r = spot.hybrid_spot_cost(
        base_gpus,
        spot_gpus,
        on_demand_usd,
        spot_usd,
        spot_duty,
        compare_gpus,
        interruptions_per_hour,
        cold_start_s,
    )
    emit(
        output,
        {"hybrid": r, "spot_discount_ratio": spot.spot_discount_ratio(on_demand_usd, spot_usd)},
        lambda: [
            key_value_table(
                "Hybrid spot / on-demand (per month)",
                [
                    ("on-demand base", money(r.monthly_base_usd, 0)),
                    ("spot burst", money(r.monthly_spot_usd, 0)),
                    ("interruptions", money(r.monthly_interruption_usd, 0)),
                    ("hybrid total", money(r.monthly_hybrid_usd, 0)),
                    (
                        f"all on demand ({compare_gpus:g} GPUs)",
                        money(r.monthly_all_on_demand_usd, 0),
                    ),
                    ("saved", f"{money(r.monthly_savings_usd, 0)} ({pct(r.savings_ratio)})"),
                ],
            )
        ],
    )


# --- breakeven ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VolumeRow:
    tokens_per_month: float
    api_usd: float
    self_hosted: be.SelfHostedMonthly


@app.command()
def breakeven(
    tokens_per_month: Annotated[
        list[float] | None, typer.Option(help="Volumes to compare (repeat); default 1B and 10B.")
    ] = None,
    api_name: Annotated[str, typer.Option(help="API to compare with.")] = "gpt-4o",
    api_input_usd: Annotated[float, typer.Option(help="API $ per 1M input tokens.")] = 2.50,
    api_output_usd: Annotated[float, typer.Option(help="API $ per 1M output tokens.")] = 10.00,
    input_ratio: Annotated[float, typer.Option(help="Share of tokens that are input.")] = 0.5,
    gpu_hourly_usd: Annotated[float, typer.Option(help="$ per GPU-hour.")] = 2.21,
    gpus_per_replica: Annotated[int, typer.Option(help="GPUs per replica.")] = 4,
    replica_tokens_per_second: Annotated[
        float, typer.Option(help="A replica's full-load throughput (tokens/s).")
    ] = 2400,
    max_utilization: Annotated[
        float, typer.Option(help="Highest share of a replica's throughput to plan for.")
    ] = 0.7,
    engineers: Annotated[float, typer.Option(help="Engineers running the fleet.")] = 0.0,
    usd_per_engineer_year: Annotated[
        float, typer.Option(help="Cost of an engineer-year (seed: $150-250K).")
    ] = 200_000,
    output: OutputOpt = Output.table,
) -> None:
    """Self-hosted vs API: monthly cost at each volume and the break-even volume.

    Defaults: the seed's Llama-70B on 4×A100 ($2.21, 2,400 tok/s) vs GPT-4o.

      llmcost breakeven --engineers 1 --tokens-per-month 1e9 --tokens-per-month 1e10
    """
    api = be.ApiPrice(api_name, api_input_usd, api_output_usd)
    fleet = be.SelfHostedFleet(
        gpu_hourly_usd,
        gpus_per_replica,
        replica_tokens_per_second,
        max_utilization,
        engineers,
        usd_per_engineer_year,
    )
    rows = [
        VolumeRow(v, be.api_monthly_cost_usd(api, v, input_ratio), fleet.monthly_cost(v))
        for v in tokens_per_month or [1e9, 1e10]
    ]
    point = fleet.breakeven_tokens_per_month(api, input_ratio)
    result = {"api": api, "volumes": rows, "breakeven_tokens_per_month": point}
    emit(
        output,
        result,
        lambda: [
            grid_table(
                f"Self-hosted vs {api.name} per month",
                ["tokens/month", "API", "self-hosted", "GPUs", "fleet utilization"],
                [
                    [
                        num(r.tokens_per_month),
                        money(r.api_usd, 0),
                        money(r.self_hosted.total_usd, 0),
                        str(r.self_hosted.gpus),
                        pct(r.self_hosted.utilization_ratio),
                    ]
                    for r in rows
                ],
            ),
            key_value_table(
                "Break-even",
                [("tokens/month", num(point) if point is not None else "never")],
            ),
        ],
    )


# --- tenancy ------------------------------------------------------------------------------

tenancy_app = typer.Typer(
    help="Multi-tenancy: LoRA multiplexing and statistical multiplexing of tenants.",
    no_args_is_help=True,
)
app.add_typer(tenancy_app, name="tenancy")


@tenancy_app.command()
def lora(
    adapters: Annotated[int, typer.Option(help="Fine-tuned models served as LoRA adapters.")] = 50,
    base_usd_per_hour: Annotated[
        float, typer.Option(help="$ per hour of one base-model replica.")
    ] = 8.84,
    overhead: Annotated[
        float, typer.Option(help="Throughput lost to adapter switching (seed: 0.01-0.03).")
    ] = 0.02,
    output: OutputOpt = Output.table,
) -> None:
    """Shared base + LoRA adapters vs one dedicated deployment per fine-tune (seed: 50 → 50×)."""
    r = tenancy.lora_multiplexing(adapters, base_usd_per_hour, overhead)
    emit(
        output,
        {"lora": r},
        lambda: [
            key_value_table(
                f"LoRA multiplexing of {adapters} fine-tunes",
                [
                    ("shared $/h", money(r.shared_usd_per_hour)),
                    ("dedicated $/h", money(r.dedicated_usd_per_hour)),
                    ("dedicated ÷ shared", f"{r.cost_ratio:.1f}×"),
                ],
            )
        ],
    )


@tenancy_app.command()
def multiplex(
    tenants: Annotated[int, typer.Option(help="Independent tenants (normal approximation).")] = 10,
    utilization: Annotated[
        float, typer.Option(help="Each tenant's utilization on dedicated capacity.")
    ] = 0.4,
    trace: Annotated[
        list[Path] | None,
        typer.Option(
            help="Measure instead: one real trace per tenant (repeat the flag; Azure or "
            "BurstGPT .csv, Mooncake .jsonl, either may be .gz)."
        ),
    ] = None,
    quantile: Annotated[float, typer.Option(help="Provisioning quantile for --trace.")] = 0.99,
    bin_seconds: Annotated[float, typer.Option(help="Demand bin for --trace (s).")] = 60.0,
    output: OutputOpt = Output.table,
) -> None:
    """Statistical multiplexing: capacity for the quantile of summed demand vs the sum of each
    tenant's own.

      llmcost tenancy multiplex --tenants 10 --utilization 0.4

      llmcost tenancy multiplex --trace azure_code.csv --trace azure_conv.csv --trace mooncake.jsonl
    """
    if trace:
        series = []
        for path in trace:
            inputs, outputs = demand_series(read_trace(path), bin_seconds)
            series.append([i + o for i, o in zip(inputs, outputs, strict=True)])
        length = min(len(s) for s in series)
        r = tenancy.statistical_multiplexing_from_series([s[:length] for s in series], quantile)
        title = f"Statistical multiplexing of {len(series)} measured tenants (tokens/s)"
    else:
        r = tenancy.statistical_multiplexing_normal(tenants, utilization)
        title = f"Statistical multiplexing of {tenants} independent tenants"
    emit(
        output,
        {"multiplexing": r},
        lambda: [
            key_value_table(
                title,
                [
                    ("dedicated capacity (sum of peaks)", num(r.dedicated_capacity, 1)),
                    ("shared capacity (peak of sum)", num(r.shared_capacity, 1)),
                    ("dedicated utilization", pct(r.dedicated_utilization_ratio)),
                    ("shared utilization", pct(r.shared_utilization_ratio)),
                    ("capacity saved", pct(r.cost_reduction_ratio)),
                ],
            )
        ],
    )


# --- stack --------------------------------------------------------------------------------


@app.command(name="stack")
def stack_cmd(
    baseline: Annotated[
        float, typer.Option(help="Starting $/1M tokens (seed: naive serving at $3.00).")
    ] = stack.SEED_BASELINE_USD_PER_MILLION,
    lever: Annotated[
        list[str] | None,
        typer.Option(help="NAME=REDUCTION (e.g. quantization=0.5), repeat; default: the seed's."),
    ] = None,
    output: OutputOpt = Output.table,
) -> None:
    """The optimization stack: levers composed one after another from a baseline $/1M."""
    levers = list(stack.SEED_LEVERS)
    if lever:
        levers = []
        for item in lever:
            name, sep, value = item.partition("=")
            try:
                levers.append(stack.Lever(name.strip(), float(value)))
            except ValueError:
                raise InvalidInputError(f"--lever wants NAME=REDUCTION, got {item!r}") from None
            if not sep or not name.strip():
                raise InvalidInputError(f"--lever wants NAME=REDUCTION, got {item!r}")
    r = stack.optimization_stack(levers, baseline)
    emit(
        output,
        {
            "stack": r,
            "final_usd_per_million": r.final_usd_per_million,
            "total_reduction_ratio": r.total_reduction_ratio,
        },
        lambda: [
            grid_table(
                f"Optimization stack from {money(baseline)}/1M",
                ["lever", "reduction", "$/1M after", "cumulative"],
                [
                    [
                        s.lever,
                        pct(s.reduction_ratio),
                        money(s.usd_per_million_after, 3),
                        pct(s.cumulative_reduction_ratio),
                    ]
                    for s in r.steps
                ],
            )
        ],
    )


# --- catalog ------------------------------------------------------------------------------


class CatalogKind(StrEnum):
    gpus = "gpus"
    models = "models"
    prices = "prices"
    engines = "engines"
    quantizations = "quantizations"


@app.command()
def catalog(
    kind: Annotated[CatalogKind, typer.Argument(help="What to list.")] = CatalogKind.gpus,
    prices: Annotated[
        str, typer.Option(help="Price sheet for `prices`: " + ", ".join(PRICE_SHEETS))
    ] = "seed",
    output: OutputOpt = Output.table,
) -> None:
    """List the built-in GPUs, models, price sheets, serving engines or quantizations."""
    if kind is CatalogKind.gpus:
        items: list[object] = list(GPUS.values())
        headers = ["GPU", "memory GB", "TB/s", "FP16 TFLOPS", "FP8 TFLOPS", "link GB/s"]
        rows = [
            [
                g.name,
                num(g.memory_gb),
                num(g.memory_bandwidth_tb_per_s, 2),
                num(g.fp16_dense_tflops),
                num(g.fp8_dense_tflops),
                num(g.interconnect_gb_per_s),
            ]
            for g in GPUS.values()
        ]
    elif kind is CatalogKind.models:
        items = list(MODELS.values())
        headers = ["model", "params B", "active B", "layers", "hidden", "heads/KV", "context"]
        rows = [
            [
                m.name,
                num(m.total_params_b, 2),
                num(m.active_params_b, 2),
                str(m.num_layers),
                str(m.hidden_size),
                f"{m.num_attention_heads}/{m.num_kv_heads}",
                num(m.max_context),
            ]
            for m in MODELS.values()
        ]
    elif kind is CatalogKind.prices:
        sheet = price_sheet(prices)
        items = list(sheet)
        headers = ["GPU", "capacity", "$/GPU-hour", "source"]
        rows = [
            [e.gpu, e.capacity_type.value, money(e.usd_per_gpu_hour, 4), e.source]
            for e in sorted(sheet, key=lambda e: (e.gpu, e.capacity_type.value))
        ]
    elif kind is CatalogKind.engines:
        items = list(ENGINES.values())
        headers = ["engine", "memory eff.", "compute eff.", "GEMM half rows", "host ms", "source"]
        rows = [
            [
                e.name,
                pct(e.memory_efficiency, 0),
                pct(e.compute_efficiency, 0),
                num(e.gemm_half_efficiency_tokens),
                num(e.step_overhead_s * 1e3, 2),
                e.source,
            ]
            for e in ENGINES.values()
        ]
    else:
        items = list(QUANTIZATIONS.values())
        headers = ["quantization", "bytes/param", "math", "description"]
        rows = [
            [q.name, num(q.weight_bytes_per_param, 3), q.math.value, q.description]
            for q in QUANTIZATIONS.values()
        ]
    emit(output, {kind.value: items}, lambda: [grid_table(kind.value, headers, rows)])


# --- demo ---------------------------------------------------------------------------------


@app.command()
def demo(
    duration: Annotated[
        float | None, typer.Option(help="Stop after this many seconds (default: until Ctrl-C).")
    ] = None,
    speedup: Annotated[
        float, typer.Option(help="Replay the traces this many times faster than real time.")
    ] = 1.0,
    window: Annotated[str, typer.Option(help="The policies' rate window (at least 1m).")] = "1m",
    traces: Annotated[
        Path | None, typer.Option(help="Folder of the shared traces (default: ../shared/data).")
    ] = None,
    output: OutputOpt = Output.table,
) -> None:
    """The embedded default, live: a real Prometheus scraping a simulated fleet driven by real
    traces, an in-memory Kubernetes API with the example policies, and the operator pricing it.

      llmcost demo                      # until Ctrl-C

      llmcost demo --duration 60 --output json
    """
    from costoperator.cli.livedemo import run_live_demo

    run_live_demo(traces, duration, speedup, window, output.value)


@app.command()
def tour(
    trace: Annotated[
        Path | None,
        typer.Option(
            help="Request trace to price (Azure or BurstGPT CSV, Mooncake JSONL; .gz too); "
            "default: the "
            "three shared traces."
        ),
    ] = None,
    output: OutputOpt = Output.table,
) -> None:
    """A tour of the cost engine on real data, no cluster needed: the seed's numbers, real
    traces' demand priced on the cheapest GPUs, and the hybrid spot plan at real AWS prices."""
    from costoperator.cli.tour import run_tour

    run_tour(trace, output.value)


# --- backtest -----------------------------------------------------------------------------


class BacktestPolicy(StrEnum):
    on_demand_peak = "on_demand_peak"
    seed_hybrid = "seed_hybrid"
    reactive = "reactive"
    planner = "planner"
    oracle = "oracle"


class SpotTraceValues(StrEnum):
    preempted = "preempted"
    available = "available"


class PlannerBaseRule(StrEnum):
    p50 = "p50"
    market = "market"
    fraction = "fraction"
    operator = "operator"
    operator_p50 = "operator-p50"
    operator_fraction = "operator-fraction"


@app.command()
def backtest(
    trace: Annotated[
        Path,
        typer.Option(
            help="Request trace: Azure LLM or BurstGPT CSV (.csv, by its header) or Mooncake "
            "JSONL (.jsonl); gzipped (.gz) too."
        ),
    ],
    model: Annotated[str, typer.Option(help=MODEL_HELP)] = "llama-2-70b",
    gpu: Annotated[str, typer.Option(help=GPU_HELP)] = "A100-80GB",
    tp: Annotated[int, typer.Option(help="Tensor-parallel GPUs per replica.")] = 4,
    quant: Annotated[str, typer.Option(help=QUANT_HELP)] = "fp16",
    engine: Annotated[str, typer.Option(help=ENGINE_HELP)] = "vllm",
    prices: Annotated[
        str, typer.Option(help="Price sheet (on-demand and spot): " + ", ".join(PRICE_SHEETS))
    ] = "seed",
    preemption_trace: Annotated[
        Path | None,
        typer.Option(
            help="Spot trace (skypilot spot-traces JSON); default: the shared 4-node AWS "
            "us-east-1f V100 preemption trace."
        ),
    ] = None,
    spot_always_available: Annotated[
        bool, typer.Option(help="No spot trace: the market always gives spot.")
    ] = False,
    preemption_values: Annotated[
        SpotTraceValues,
        typer.Option(
            help="What a spot-trace value counts: preempted instances (the trace authors' "
            "simulator reads 1 as preempted) or available ones (their README)."
        ),
    ] = SpotTraceValues.preempted,
    preemption_speedup: Annotated[
        float,
        typer.Option(
            help="Spot-trace seconds per backtest second: 1 replays the market in real time; "
            "24 puts a day of it into an hour of requests (a stress test)."
        ),
    ] = 1.0,
    preemption_offset_s: Annotated[
        float, typer.Option(help="Where in the spot trace the backtest starts, s.")
    ] = 0.0,
    spot_pool: Annotated[
        int | None,
        typer.Option(
            help="Spot replicas the whole trace pool stands for (the available share scales "
            "to it); default: the on-demand peak fleet."
        ),
    ] = None,
    policy: Annotated[
        list[BacktestPolicy] | None,
        typer.Option(help="Policies to run (repeat); default all. on_demand_peak always runs."),
    ] = None,
    step_s: Annotated[float, typer.Option(help="Simulation step, s.")] = 10.0,
    control_period_s: Annotated[
        float, typer.Option(help="Policies decide every this many s (the operator's tick).")
    ] = 30.0,
    latency_bound_s: Annotated[
        float, typer.Option(help="Work queued longer than this is shortfall (dropped), s.")
    ] = 30.0,
    cold_start_s: Annotated[
        float,
        typer.Option(help="From asking for a replica to its serving, s (an assumption)."),
    ] = 120.0,
    preemption_notice_s: Annotated[
        float,
        typer.Option(
            help="The market announces a spot preemption this long ahead and the replica "
            "serves until then; the planner starts on-demand cover at the notice, s (AWS: 120; "
            "GCP and Azure: 30; 0: none)."
        ),
    ] = 120.0,
    billing_granularity_s: Annotated[
        float,
        typer.Option(
            help="Billed time per replica rounds up to this, s (60: per started minute; EC2 "
            "bills per second: 1)."
        ),
    ] = 60.0,
    billing_minimum_s: Annotated[
        float, typer.Option(help="Least billed time per replica, s (EC2: 60).")
    ] = 60.0,
    target_utilization: Annotated[
        float, typer.Option(help="Share of a replica's throughput sizing plans for, (0, 1].")
    ] = 0.7,
    max_spot_fraction: Annotated[
        float, typer.Option(help="The planner's and the oracle's bound on spot ÷ replicas.")
    ] = 0.7,
    warmup_s: Annotated[
        float,
        typer.Option(
            help="Simulate but do not score the trace's first seconds (whole control periods)."
        ),
    ] = 300.0,
    rate_window_s: Annotated[
        float,
        typer.Option(help="Policies observe the arrival rate over this trailing window, s."),
    ] = 60.0,
    planner_headroom: Annotated[
        float,
        typer.Option(
            help="The planner's margin over current demand at the target utilization "
            "(SpotLimits.headroom), ≥ 0."
        ),
    ] = 0.0,
    planner_burst_quantile: Annotated[
        float,
        typer.Option(
            help="The planner's burst margin: this quantile, in [0, 1], of the rises in demand "
            "seen within a control period and a cold start (the planner's reaction time), "
            "carried at full throughput until new replicas serve."
        ),
    ] = 0.9,
    planner_recent_peak: Annotated[
        bool,
        typer.Option(
            help="Size the planner for the peak of the last cold start instead of the burst "
            "margin (the earlier rule)."
        ),
    ] = False,
    planner_base_utilization: Annotated[
        float,
        typer.Option(
            help="Share of a replica's throughput the planner's on-demand P50 base is sized at "
            "(1: the base carries typical traffic, spot the margin; the operator's plan uses "
            "--target-utilization)."
        ),
    ] = 1.0,
    planner_level: Annotated[
        bool,
        typer.Option(
            help="Size the planner's steady serving for the sustained level, the median rate "
            f"over its {SCALE_DOWN_WINDOW_S:g} s scale-down window (a rate past that level's "
            "slack counts as it is; a fall counts once the median of the latest three rates "
            "shows it), as the operator does; --no-planner-level sizes each "
            "tick's rate at the target utilization (the earlier rule).",
        ),
    ] = True,
    planner_queue: Annotated[
        bool,
        typer.Option(
            help="Size the planner's burst term on the queue-aware burst signal, as the "
            "operator does: the peak 30, 60 and 120 s rates of each tick, as the least "
            "throughput that serves them within --latency-bound-s (the demand rate while spot "
            "is missing or under notice); --no-planner-queue sizes it on the rate over "
            "--rate-window-s (the earlier rule).",
        ),
    ] = True,
    planner_base: Annotated[
        PlannerBaseRule | None,
        typer.Option(
            help="The planner's on-demand base. p50: on demand for the P50 of the demand seen "
            "(the seed's hybrid), spot for the rest; market: that base scaled by the "
            "interruptions seen so far (it falls while spot runs without preemptions, back at "
            "the first one); fraction: no P50 base, on demand only as --max-spot-fraction "
            "requires (the on-demand cover asked for at a preemption notice guards typical "
            "traffic); operator: the live operator's shape, which scales only the spot "
            "workload: on demand fixed at seed_hybrid's base, spot planned beside it with a "
            "spot replacement for each replica under notice; operator-p50 and "
            "operator-fraction: the live operator with spec.spot.onDemandTargetRef "
            "(onDemandBase P50 or Fraction), both halves planned each tick. Default: fraction "
            "when --preemption-notice-s plus --latency-bound-s is at least --cold-start-s (the "
            "cover serves before the work a preempted replica leaves has waited past the "
            "bound), else p50; without such a notice market and fraction are cheaper in a "
            "calm market and short of tokens when a storm follows one.",
            show_default="fraction when the notice and the latency bound span the cold start, "
            "else p50",
        ),
    ] = None,
    oracle_utilization: Annotated[
        float | None,
        typer.Option(
            help="Share of a replica's throughput the oracle may plan on, (0, 1] (default: "
            "--target-utilization, as every policy is sized; 1: a fleet run 100% busy)."
        ),
    ] = None,
    oracle_time_limit_s: Annotated[
        float,
        typer.Option(help="Stop the oracle's solver after this long and keep its best plan, s."),
    ] = 20.0,
    peak_replicas: Annotated[
        int,
        typer.Option(help="Scale the load so the on-demand peak fleet is this many replicas."),
    ] = 8,
    load_scale: Annotated[
        float | None,
        typer.Option(help="Multiply the trace's tokens by this instead (overrides the above)."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Write summary.json, capacity.png and cumulative_cost.png here."),
    ] = None,
    quiet: Annotated[bool, typer.Option(help="No progress lines on stderr.")] = False,
    output: OutputOpt = Output.table,
) -> None:
    """Replay a real request trace and a real spot market through five scaling policies.

    Compares, on the same demand and spot market: on_demand_peak (all on demand, sized for the
    peak), seed_hybrid (the seed's on-demand P50 base + spot for the peak), reactive
    (KEDA/HPA-style queue scaling, on demand only), planner (ours: costengine.spotplan each
    tick, past data only) and oracle (perfect foresight: a mixed-integer program, the lower
    bound for a fleet at the target utilization). Reports cost, $/1M tokens, shortfall (work
    not served within --latency-bound-s), scale actions, spot preemptions and savings against
    on_demand_peak.

    The model is a capacity-level simulation in --step-s steps; a replica serves the throughput
    model's tokens/s at the trace's mean request shape. Defaults: a 120 s cold start (an
    assumption), billing per started minute, the seed's prices ($2.21 and $0.73 per A100-80GB
    hour), the load scaled so on_demand_peak needs 8 replicas, the spot trace replayed in real
    time. The module docstrings of costengine.backtest and costoperator.backtest have the
    details.

      llmcost backtest --trace ../shared/data/traces/azure_llm_2023_conv.csv

      llmcost backtest --trace conv.csv --preemption-speedup 24 --out backtest-out --output json
    """
    from costoperator.backtest import BacktestOptions, SpotValues, backtest_command

    backtest_command(
        BacktestOptions(
            trace=trace,
            model=model,
            gpu=gpu,
            tp=tp,
            quant=quant,
            engine=engine,
            prices=prices,
            spot_trace=preemption_trace,
            spot_always_available=spot_always_available,
            spot_values=SpotValues(preemption_values.value),
            spot_speedup=preemption_speedup,
            spot_offset_s=preemption_offset_s,
            spot_pool_replicas=spot_pool,
            policies=tuple(p.value for p in policy or BacktestPolicy),
            step_s=step_s,
            control_period_s=control_period_s,
            latency_bound_s=latency_bound_s,
            cold_start_s=cold_start_s,
            preemption_notice_s=preemption_notice_s,
            billing_granularity_s=billing_granularity_s,
            billing_minimum_s=billing_minimum_s,
            target_utilization=target_utilization,
            max_spot_fraction=max_spot_fraction,
            warmup_s=warmup_s,
            rate_window_s=rate_window_s,
            planner_headroom=planner_headroom,
            planner_burst_quantile=None if planner_recent_peak else planner_burst_quantile,
            planner_base_utilization=planner_base_utilization,
            planner_level=planner_level,
            planner_queue=planner_queue,
            planner_base=None if planner_base is None else planner_base.value,
            oracle_utilization=oracle_utilization,
            oracle_time_limit_s=oracle_time_limit_s,
            peak_replicas=peak_replicas,
            load_scale=load_scale,
            out=out,
            progress=not quiet,
        ),
        output.value,
    )


# --- run ----------------------------------------------------------------------------------


@app.command()
def run(
    prometheus_url: Annotated[
        str, typer.Option(envvar="LLMCOST_PROMETHEUS_URL", help="Prometheus (or Thanos/Mimir) URL.")
    ],
    namespace: Annotated[
        list[str] | None, typer.Option("--namespace", "-n", help="Namespace to watch (repeat).")
    ] = None,
    all_namespaces: Annotated[
        bool, typer.Option("--all-namespaces", "-A", help="Watch every namespace.")
    ] = False,
    metrics_port: Annotated[int, typer.Option(help="Port of /metrics (0: off).")] = 9090,
    standalone: Annotated[
        bool, typer.Option(help="Run without peering (one instance only).")
    ] = True,
    peering: Annotated[
        str | None, typer.Option(help="kopf peering name: only the highest priority acts.")
    ] = None,
    priority: Annotated[int, typer.Option(help="Peering priority of this instance.")] = 0,
    leader_election: Annotated[
        bool,
        typer.Option(
            help="Scale and write status only while holding a coordination.k8s.io Lease, so "
            "that of several instances exactly one acts (the others price and export only)."
        ),
    ] = True,
    lease_name: Annotated[str, typer.Option(help="Name of the leader Lease.")] = (
        "llm-cost-operator"
    ),
    lease_namespace: Annotated[
        str,
        typer.Option(
            envvar="POD_NAMESPACE", help="Namespace of the leader Lease (the operator's own)."
        ),
    ] = "default",
    status_writes_per_second: Annotated[
        float,
        typer.Option(
            min=0.1,
            help="Policy status writes per second in all (each policy at most every 30 s; with "
            "many policies each one's interval stretches so the total stays here). /metrics is "
            "the live channel; status is the summary.",
        ),
    ] = 10.0,
    lease_duration: Annotated[
        float,
        typer.Option(
            min=3.0,
            help="Seconds a silent leader keeps the Lease; it stops acting after 2/3 of it, "
            "and instances retry every 2/15 of it (client-go's 15 s / 10 s / 2 s).",
        ),
    ] = 15.0,
    bearer_token_file: Annotated[
        Path | None, typer.Option(help="File with a bearer token for Prometheus (re-read).")
    ] = None,
    basic_auth_user: Annotated[str | None, typer.Option(help="Basic-auth user.")] = None,
    basic_auth_password_file: Annotated[
        Path | None, typer.Option(help="File with the basic-auth password.")
    ] = None,
    ca_file: Annotated[Path | None, typer.Option(help="CA bundle for Prometheus TLS.")] = None,
    insecure_skip_verify: Annotated[
        bool, typer.Option(help="Do not verify Prometheus' TLS certificate.")
    ] = False,
    tenant_header: Annotated[
        str | None, typer.Option(help="Tenant header, e.g. X-Scope-OrgID (Mimir).")
    ] = None,
    tenant: Annotated[str | None, typer.Option(help="Tenant id sent in --tenant-header.")] = None,
    prometheus_gzip: Annotated[
        bool,
        typer.Option(
            help="Ask Prometheus for gzip-compressed answers: less bandwidth, more CPU on both "
            "ends. Off suits an in-cluster Prometheus; turn it on across a WAN.",
        ),
    ] = False,
    opencost_compat: Annotated[
        bool, typer.Option(help="Also export OpenCost's inference-cost metric names.")
    ] = False,
    spot_global_cap: Annotated[
        int | None,
        typer.Option(
            min=0,
            metavar="N",
            help="Most spot replicas the planner recommends, and Auto mode scales to, for any "
            "one workload, whatever a policy's maxReplicas says (default: no cap beyond "
            "each policy's own).",
        ),
    ] = None,
    notice_taint: Annotated[
        list[str] | None,
        typer.Option(
            metavar="KEY",
            help="A node taint key that gives notice of a node's end (repeat for more), on "
            "top of the defaults: aws-node-termination-handler/spot-itn, "
            "cloud.google.com/impending-node-termination, karpenter.sh/disrupted and "
            "karpenter.sh/disruption. Spot pods on such a node get replacements in the "
            "recommendation, which start during the notice.",
        ),
    ] = None,
    default_notice_taints: Annotated[
        bool,
        typer.Option(help="Count the default notice taints (off: only --notice-taint's)."),
    ] = True,
    liveness: Annotated[
        str | None, typer.Option(help="kopf liveness endpoint, e.g. http://0.0.0.0:8080/healthz")
    ] = None,
    verbose: Annotated[bool, typer.Option(help="Debug logging.")] = False,
) -> None:
    """Run the operator: watch policies and workloads, price them, export /metrics.

    Finds the cluster as kubectl does (in-cluster service account, else KUBECONFIG).

      llmcost run --prometheus-url http://prometheus.monitoring:9090 --all-namespaces
    """
    import kopf

    import costoperator.handlers  # noqa: F401 - registers the handlers
    from costoperator.cluster import DEFAULT_NOTICE_TAINTS
    from costoperator.config import OperatorConfig
    from costoperator.promclient import PromAuth

    if namespace and all_namespaces:
        raise InvalidInputError("use --namespace or --all-namespaces, not both")
    if not namespace and not all_namespaces:
        raise InvalidInputError("say which namespaces to watch: --namespace NS or --all-namespaces")
    if (basic_auth_user is None) != (basic_auth_password_file is None):
        raise InvalidInputError("--basic-auth-user and --basic-auth-password-file go together")
    for path in (bearer_token_file, basic_auth_password_file, ca_file):
        if path is not None and not path.is_file():
            raise InvalidInputError(f"file not found: {path}")
    taints = [*(DEFAULT_NOTICE_TAINTS if default_notice_taints else ()), *(notice_taint or ())]
    for key in taints:
        if not _TAINT_KEY.fullmatch(key):
            raise InvalidInputError(
                f"--notice-taint {key!r} is not a taint key (an optional DNS-subdomain prefix "
                "and '/', then a name of letters, digits, '-', '_' or '.', 63 at most)"
            )
    config = OperatorConfig(
        prometheus_url=prometheus_url,
        prometheus_auth=PromAuth(
            bearer_token_file=bearer_token_file,
            basic_username=basic_auth_user,
            basic_password_file=basic_auth_password_file,
            ca_file=ca_file,
            insecure_skip_verify=insecure_skip_verify,
            tenant_header=tenant_header,
            tenant=tenant,
        ),
        metrics_port=metrics_port,
        prometheus_gzip=prometheus_gzip,
        opencost_compat=opencost_compat,
        leader_election=leader_election,
        lease_name=lease_name,
        lease_namespace=lease_namespace,
        lease_duration_s=lease_duration,
        status_writes_per_s=status_writes_per_second,
        spot_global_cap=spot_global_cap,
        notice_taints=tuple(dict.fromkeys(taints)),
        lease_renew_deadline_s=lease_duration * 2 / 3,
        lease_retry_period_s=lease_duration * 2 / 15,
    )
    kopf.configure(verbose=verbose)
    kopf.run(
        standalone=standalone and peering is None,
        peering_name=peering,
        priority=priority,
        namespaces=namespace or [],
        clusterwide=all_namespaces,
        liveness_endpoint=liveness,
        memo=kopf.Memo(config=config),
    )
