"""Reading the real request traces of the shared data folder."""

from __future__ import annotations

import csv
import gzip
import random
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from costoperator.traces import Request, TraceError, demand_series, read_trace

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


def _azure_slice(shared_data: Path, rows: int = 400) -> list[list[str]]:
    """The first rows of the real code trace, as CSV fields."""
    with (shared_data / "traces" / "azure_llm_2023_code.csv").open(newline="") as f:
        reader = csv.reader(f)
        next(reader)
        return [row for _, row in zip(range(rows), reader, strict=False)]


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _fields(requests: list[Request]) -> list[tuple[float, int, int]]:
    return [(r.arrival_s, r.input_tokens, r.output_tokens) for r in requests]


def test_azure_timestamps_read_in_every_spelling_of_the_same_instant(
    shared_data: Path, tmp_path: Path
) -> None:
    """The 2024 releases and tools that re-save the traces write the same instants with a
    ``T``, a UTC offset or ``Z``: the arrivals must not move."""
    rows = _azure_slice(shared_data)
    header = ["TIMESTAMP", "ContextTokens", "GeneratedTokens"]
    plain = read_trace(_write_csv(tmp_path / "plain.csv", header, rows))
    assert len(plain) == len(rows)
    assert plain[-1].arrival_s > 60

    def shifted(stamp: str, hours: int) -> str:
        t = datetime.strptime(stamp[:19], "%Y-%m-%d %H:%M:%S") + timedelta(hours=hours)
        return t.strftime("%Y-%m-%dT%H:%M:%S") + stamp[19:] + f"{hours:+03d}:00"

    spellings = {
        "iso_z": [[r[0].replace(" ", "T") + "Z", *r[1:]] for r in rows],
        "utc_offset": [[r[0] + "+00:00", *r[1:]] for r in rows],
        # Local time two hours east of UTC with its offset: the same instant.
        "east": [[shifted(r[0], 2), *r[1:]] for r in rows],
    }
    for name, spelled in spellings.items():
        assert _fields(read_trace(_write_csv(tmp_path / f"{name}.csv", header, spelled))) == (
            _fields(plain)
        ), name


def test_an_azure_trace_with_more_columns_reads_its_own(shared_data: Path, tmp_path: Path) -> None:
    """The multimodal release adds `NumImages`; columns are read by name, not position."""
    rows = _azure_slice(shared_data)
    plain = read_trace(
        _write_csv(tmp_path / "plain.csv", ["TIMESTAMP", "ContextTokens", "GeneratedTokens"], rows)
    )
    wider = [[r[0], "1", r[1], r[2]] for r in rows]
    header = ["TIMESTAMP", "NumImages", "ContextTokens", "GeneratedTokens"]
    assert _fields(read_trace(_write_csv(tmp_path / "mm.csv", header, wider))) == _fields(plain)


def test_a_burstgpt_trace_reads_by_its_header(shared_data: Path, tmp_path: Path) -> None:
    """BurstGPT's v2 layout (seconds, eight columns), here carrying the real code trace's rows
    from an offset: the same requests, the first at 0 s."""
    rows = _azure_slice(shared_data)
    azure = read_trace(
        _write_csv(tmp_path / "a.csv", ["TIMESTAMP", "ContextTokens", "GeneratedTokens"], rows)
    )
    header = [
        "Timestamp",
        "Session ID",
        "Elapsed time",
        "Model",
        "Request tokens",
        "Response tokens",
        "Total tokens",
        "Log Type",
    ]
    burst = [
        [f"{3600 + r.arrival_s:.6f}", str(i), "1.0", "ChatGPT", str(r.input_tokens),
         str(r.output_tokens), str(r.input_tokens + r.output_tokens), "Conversation log"]
        for i, r in enumerate(azure)
    ]  # fmt: skip
    read = read_trace(_write_csv(tmp_path / "burstgpt.csv", header, burst))
    assert read[0].arrival_s == 0
    assert [(i, o) for _, i, o in _fields(read)] == [(i, o) for _, i, o in _fields(azure)]
    assert [a for a, _, _ in _fields(read)] == pytest.approx([a for a, _, _ in _fields(azure)])


def test_a_gzipped_or_unsorted_trace_reads_as_the_original(
    shared_data: Path, tmp_path: Path
) -> None:
    original = shared_data / "traces" / "mooncake_conversation.jsonl"
    expected = read_trace(original)
    zipped = tmp_path / "mooncake.jsonl.gz"
    zipped.write_bytes(gzip.compress(original.read_bytes()))
    assert read_trace(zipped) == expected
    lines = original.read_text().splitlines()
    shuffled = tmp_path / "shuffled.jsonl"
    shuffled.write_text("\n".join(random.Random(7).sample(lines, len(lines))) + "\n")
    # Requests at the same millisecond keep their file order: compare as sorted rows.
    assert sorted(_fields(read_trace(shuffled))) == sorted(_fields(expected))
    # A cut from later in the trace starts at 0, not at its offset in the original.
    cut = tmp_path / "cut.jsonl"
    cut.write_text("\n".join(lines[6000:]) + "\n")
    later = read_trace(cut)
    assert later[0].arrival_s == 0
    offset = expected[6000].arrival_s
    assert [r.arrival_s + offset for r in later] == pytest.approx(
        [r.arrival_s for r in expected[6000:]]
    )


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (["2023-11-16 18:15:46.6805900", "-3", "10"], "ContextTokens is negative"),
        (["2023-11-16 18:15:46.6805900", "", "10"], "no ContextTokens"),
        (["2023-11-16 18:15:46.6805900", "374", "4.5"], "invalid literal"),
        (["16/11/2023 18:15:46", "374", "44"], "not a timestamp"),
    ],
)
def test_a_bad_row_is_named_by_its_line(
    shared_data: Path, tmp_path: Path, row: list[str], message: str
) -> None:
    rows = _azure_slice(shared_data, 5)
    rows.insert(3, row)
    path = _write_csv(tmp_path / "bad.csv", ["TIMESTAMP", "ContextTokens", "GeneratedTokens"], rows)
    with pytest.raises(TraceError, match=rf"bad\.csv:5: .*{message}"):
        read_trace(path)


def test_an_unknown_csv_names_both_formats(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "x.csv", ["time", "prompt", "completion"], [["0", "1", "2"]])
    with pytest.raises(TraceError, match=r"Azure LLM trace .* nor a BurstGPT .*completion, prompt"):
        read_trace(path)


@pytest.mark.parametrize(
    "header",
    [
        ["TIMESTAMP", "ContextTokens", "GeneratedTokens"],
        ["Timestamp", "Request tokens", "Response tokens"],
    ],
)
def test_a_header_without_rows_is_no_requests(tmp_path: Path, header: list[str]) -> None:
    path = _write_csv(tmp_path / "header.csv", header, [])
    with pytest.raises(TraceError, match=r"header\.csv: no requests"):
        read_trace(path)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(TraceError, match=r"empty\.csv: not an Azure .*its columns: empty"):
        read_trace(empty)
