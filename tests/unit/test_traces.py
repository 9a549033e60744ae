"""Reading the real request traces of the shared data folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from costoperator.traces import TraceError, demand_series, read_trace

TRACES = [  # file, rows, span in minutes (data README)
    ("azure_llm_2023_code.csv", 8_819, 57),
    ("azure_llm_2023_conv.csv", 19_366, 58),
    ("mooncake_conversation.jsonl", 12_031, 59),
]


@pytest.mark.parametrize(("name", "rows", "minutes"), TRACES)
def test_real_traces_read_whole(shared_data: Path, name: str, rows: int, minutes: int) -> None:
    requests = read_trace(shared_data / "traces" / name)
    assert len(requests) == rows
    assert requests[0].arrival_s == 0
    assert round((requests[-1].arrival_s - requests[0].arrival_s) / 60) == minutes
    assert all(r.input_tokens > 0 and r.output_tokens >= 0 for r in requests)
    inputs, outputs = demand_series(requests, 60)
    assert sum(inputs) * 60 == pytest.approx(sum(r.input_tokens for r in requests))
    assert sum(outputs) * 60 == pytest.approx(sum(r.output_tokens for r in requests))


def test_mooncake_prefix_blocks_repeat(shared_data: Path) -> None:
    requests = read_trace(shared_data / "traces" / "mooncake_conversation.jsonl")
    blocks = [b for r in requests for b in r.prefix_blocks]
    repeated = 1 - len(set(blocks)) / len(blocks)
    assert 0.3 < repeated < 0.45  # "about 37% of blocks repeat"


def test_bad_traces_are_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(TraceError, match="not an Azure LLM trace"):
        read_trace(bad)
    worse = tmp_path / "bad.jsonl"
    worse.write_text('{"timestamp": 0}\n')
    with pytest.raises(TraceError, match=r"bad\.jsonl:1"):
        read_trace(worse)
    text = tmp_path / "trace.txt"
    text.write_text("x")
    with pytest.raises(TraceError, match="unknown trace format"):
        read_trace(text)
