"""Model catalog: architecture figures from each model's published config.json, with sources.

Parameter counts: where a figure is given as an exact count, it was summed from the config.json
shapes (embeddings + untied lm_head + per-layer attention/MLP/RMSNorm weights + final norm,
plus QKV biases for Qwen2.5) and checked against the figure the model card publishes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ModelSpec:
    name: str  # lower-case with dashes, e.g. "llama-2-70b"
    hf_repo: str  # e.g. "meta-llama/Llama-2-70b-hf"
    num_layers: int  # num_hidden_layers
    hidden_size: int
    num_attention_heads: int
    num_kv_heads: int  # num_key_value_heads (== heads for MHA)
    head_dim: int  # hidden_size // num_attention_heads unless config says otherwise
    intermediate_size: int  # FFN size (per expert for MoE)
    vocab_size: int
    total_params_b: float  # total parameters, billions (from the model card / exact count)
    active_params_b: float  # parameters used per token, billions (== total for dense)
    num_experts: int  # 1 for dense
    experts_per_token: int  # 1 for dense, 2 for Mixtral
    max_context: int  # max_position_embeddings
    source: str  # URL of config.json / model card


MODELS: dict[str, ModelSpec] = {
    # config.json: 32 layers, hidden 4096, 32 heads, 32 KV heads (MHA), intermediate 11008,
    # vocab 32000, max_position_embeddings 4096. Exact count 6,738,415,616.
    "llama-2-7b": ModelSpec(
        name="llama-2-7b",
        hf_repo="meta-llama/Llama-2-7b-hf",
        num_layers=32,
        hidden_size=4096,
        num_attention_heads=32,
        num_kv_heads=32,
        head_dim=128,
        intermediate_size=11008,
        vocab_size=32000,
        total_params_b=6.74,
        active_params_b=6.74,
        num_experts=1,
        experts_per_token=1,
        max_context=4096,
        source="https://huggingface.co/meta-llama/Llama-2-7b-hf/blob/main/config.json",
    ),
    # config.json: 40 layers, hidden 5120, 40 heads, 40 KV heads (MHA), intermediate 13824,
    # vocab 32000, max_position_embeddings 4096. Exact count 13,015,864,320 (13.0B).
    "llama-2-13b": ModelSpec(
        name="llama-2-13b",
        hf_repo="meta-llama/Llama-2-13b-hf",
        num_layers=40,
        hidden_size=5120,
        num_attention_heads=40,
        num_kv_heads=40,
        head_dim=128,
        intermediate_size=13824,
        vocab_size=32000,
        total_params_b=13.0,
        active_params_b=13.0,
        num_experts=1,
        experts_per_token=1,
        max_context=4096,
        source="https://huggingface.co/meta-llama/Llama-2-13b-hf/blob/main/config.json",
    ),
    # config.json: 80 layers, hidden 8192, 64 heads, 8 KV heads (GQA), intermediate 28672,
    # vocab 32000, max_position_embeddings 4096. Exact count 68,976,648,192.
    "llama-2-70b": ModelSpec(
        name="llama-2-70b",
        hf_repo="meta-llama/Llama-2-70b-hf",
        num_layers=80,
        hidden_size=8192,
        num_attention_heads=64,
        num_kv_heads=8,
        head_dim=128,
        intermediate_size=28672,
        vocab_size=32000,
        total_params_b=68.98,
        active_params_b=68.98,
        num_experts=1,
        experts_per_token=1,
        max_context=4096,
        source="https://huggingface.co/meta-llama/Llama-2-70b-hf/blob/main/config.json",
    ),
    # config.json (repo formerly meta-llama/Meta-Llama-3.1-8B): 32 layers, hidden 4096,
    # 32 heads, 8 KV heads, intermediate 14336, vocab 128256, max_position_embeddings 131072
    # (llama3 RoPE scaling, factor 8 over 8192). Exact count 8,030,261,248; card says "8B".
    "llama-3.1-8b": ModelSpec(
        name="llama-3.1-8b",
        hf_repo="meta-llama/Llama-3.1-8B",
        num_layers=32,
        hidden_size=4096,
        num_attention_heads=32,
        num_kv_heads=8,
        head_dim=128,
        intermediate_size=14336,
        vocab_size=128256,
        total_params_b=8.03,
        active_params_b=8.03,
        num_experts=1,
        experts_per_token=1,
        max_context=131072,
        source="https://huggingface.co/meta-llama/Llama-3.1-8B/blob/main/config.json",
    ),
    # config.json (formerly meta-llama/Meta-Llama-3.1-70B): 80 layers, hidden 8192, 64 heads,
    # 8 KV heads, intermediate 28672, vocab 128256, max_position_embeddings 131072.
    # Exact count 70,553,706,496; card says "70B".
    "llama-3.1-70b": ModelSpec(
        name="llama-3.1-70b",
        hf_repo="meta-llama/Llama-3.1-70B",
        num_layers=80,
        hidden_size=8192,
        num_attention_heads=64,
        num_kv_heads=8,
        head_dim=128,
        intermediate_size=28672,
        vocab_size=128256,
        total_params_b=70.55,
        active_params_b=70.55,
        num_experts=1,
        experts_per_token=1,
        max_context=131072,
        source="https://huggingface.co/meta-llama/Llama-3.1-70B/blob/main/config.json",
    ),
    # Mistral-7B-v0.1 config.json: 32 layers, hidden 4096, 32 heads, 8 KV heads,
    # intermediate 14336, vocab 32000, max_position_embeddings 32768, sliding_window 4096
    # (attention only looks back 4096 tokens per layer). Exact count 7,241,732,096.
    "mistral-7b": ModelSpec(
        name="mistral-7b",
        hf_repo="mistralai/Mistral-7B-v0.1",
        num_layers=32,
        hidden_size=4096,
        num_attention_heads=32,
        num_kv_heads=8,
        head_dim=128,
        intermediate_size=14336,
        vocab_size=32000,
        total_params_b=7.24,
        active_params_b=7.24,
        num_experts=1,
        experts_per_token=1,
        max_context=32768,
        source="https://huggingface.co/mistralai/Mistral-7B-v0.1/blob/main/config.json",
    ),
    # Mixtral-8x7B-v0.1 config.json: 32 layers, hidden 4096, 32 heads, 8 KV heads,
    # intermediate 14336 per expert, num_local_experts 8, num_experts_per_tok 2, vocab 32000,
    # max_position_embeddings 32768. Mistral AI: "46.7B total parameters but only uses 12.9B
    # parameters per token" (exact: 46,702,792,704 total, 12,879,925,248 active).
    "mixtral-8x7b": ModelSpec(
        name="mixtral-8x7b",
        hf_repo="mistralai/Mixtral-8x7B-v0.1",
        num_layers=32,
        hidden_size=4096,
        num_attention_heads=32,
        num_kv_heads=8,
        head_dim=128,
        intermediate_size=14336,
        vocab_size=32000,
        total_params_b=46.7,
        active_params_b=12.9,
        num_experts=8,
        experts_per_token=2,
        max_context=32768,
        source=(
            "https://huggingface.co/mistralai/Mixtral-8x7B-v0.1/blob/main/config.json "
            "https://mistral.ai/news/mixtral-of-experts/"
        ),
    ),
    # Qwen/Qwen2.5-7B (base) config.json: 28 layers, hidden 3584, 28 heads, 4 KV heads,
    # intermediate 18944, vocab 152064, max_position_embeddings 131072 (the -Instruct config
    # says 32768). Model card: "Number of Parameters: 7.61B" (exact 7,615,616,512).
    "qwen2.5-7b": ModelSpec(
        name="qwen2.5-7b",
        hf_repo="Qwen/Qwen2.5-7B",
        num_layers=28,
        hidden_size=3584,
        num_attention_heads=28,
        num_kv_heads=4,
        head_dim=128,
        intermediate_size=18944,
        vocab_size=152064,
        total_params_b=7.61,
        active_params_b=7.61,
        num_experts=1,
        experts_per_token=1,
        max_context=131072,
        source=(
            "https://huggingface.co/Qwen/Qwen2.5-7B/blob/main/config.json "
            "https://huggingface.co/Qwen/Qwen2.5-7B"
        ),
    ),
    # Qwen/Qwen2.5-72B (base) config.json: 80 layers, hidden 8192, 64 heads, 8 KV heads,
    # intermediate 29568, vocab 152064, max_position_embeddings 131072.
    # Model card: 72.7B parameters, 70.0B non-embedding (exact 72,706,203,648).
    "qwen2.5-72b": ModelSpec(
        name="qwen2.5-72b",
        hf_repo="Qwen/Qwen2.5-72B",
        num_layers=80,
        hidden_size=8192,
        num_attention_heads=64,
        num_kv_heads=8,
        head_dim=128,
        intermediate_size=29568,
        vocab_size=152064,
        total_params_b=72.7,
        active_params_b=72.7,
        num_experts=1,
        experts_per_token=1,
        max_context=131072,
        source=(
            "https://huggingface.co/Qwen/Qwen2.5-72B/blob/main/config.json "
            "https://huggingface.co/Qwen/Qwen2.5-72B"
        ),
    ),
}
