"""The fleet simulator: real traces in, real exporter metrics and ground truth out."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from costengine.cost import usd_per_million_tokens
from costoperator.sim import (
    DCGM_MODEL_NAMES,
    Fleet,
    NodeSpec,
    PodSpec,
    PrefixCache,
    SimError,
    SimServer,
    Traffic,
    replica_pods,
)
from costoperator.sim.pod import Engine, one_two_five_buckets
from costoperator.traces import Request, read_trace

MOONCAKE = "mooncake_conversation.jsonl"
AZURE_CODE = "azure_llm_2023_code.csv"
AZURE_CONV = "azure_llm_2023_conv.csv"
MODEL, GPU = "llama-3.1-8b", "A100-80GB"
#: Trace seconds after the last arrival by which a fleet with spare capacity has drained.
DRAIN_S = 1800.0


@pytest.fixture(scope="module")
def traces(shared_data: Path) -> dict[str, list[Request]]:
    return {n: read_trace(shared_data / "traces" / n) for n in (MOONCAKE, AZURE_CODE, AZURE_CONV)}


def fleet_of(
    requests: list[Request],
    replicas: int,
    *,
    engine: Engine = "vllm",
    load_scale: float = 1.0,
    tp: int = 1,
) -> Fleet:
    pods, nodes = replica_pods("chat", replicas, model=MODEL, gpu=GPU, tp=tp, engine=engine)
    return Fleet(pods, [Traffic("chat", requests, load_scale)], nodes)


@pytest.fixture(scope="module")
def drained(traces: dict[str, list[Request]]) -> dict[str, Fleet]:
    """Ten vLLM pods, enough for each whole trace, run until every request finished."""
    fleets = {}
    for name, requests in traces.items():
        fleet = fleet_of(requests, 10)
        fleet.advance_to(fleet.trace_end_s + DRAIN_S)
        fleets[name] = fleet
    return fleets


def counter_sums(fleet: Fleet) -> dict[str, int]:
    stats = [p.stats() for p in fleet.pods]
    return {
        "prompt": sum(s.prompt_tokens for s in stats),
        "generation": sum(s.generation_tokens for s in stats),
        "hits": sum(s.prefix_cache_hits for s in stats),
        "queries": sum(s.prefix_cache_queries for s in stats),
        "finished": sum(s.decode_time.count for s in stats),
    }


# --- conservation -------------------------------------------------------------------------


@pytest.mark.parametrize("trace", [MOONCAKE, AZURE_CODE, AZURE_CONV])
def test_a_fleet_with_capacity_serves_every_token_of_the_trace(
    drained: dict[str, Fleet], traces: dict[str, list[Request]], trace: str
) -> None:
    fleet = drained[trace]
    truth = fleet.truth("chat", 0.0, fleet.now_s)
    requests = traces[trace]
    assert fleet.in_flight == 0
    assert truth.arrived_requests == truth.finished_requests == len(requests)
    assert truth.rejected_requests == 0
    assert (
        truth.prompt_tokens
        == truth.requested_prompt_tokens
        == sum(r.input_tokens for r in requests)
    )
    assert (
        truth.generation_tokens
        == truth.requested_generation_tokens
        == sum(r.output_tokens for r in requests)
    )


@pytest.mark.parametrize("trace", [MOONCAKE, AZURE_CONV])
def test_vllm_counters_equal_ground_truth_at_every_advance(
    traces: dict[str, list[Request]], trace: str
) -> None:
    fleet = fleet_of(traces[trace], 4)
    for t in (0.5, 61.0, 600.0, 1234.5, 1800.0):
        fleet.advance_to(t)
        truth = fleet.truth("chat", 0.0, t)
        sums = counter_sums(fleet)
        assert sums["prompt"] == truth.prompt_tokens == sums["queries"]
        assert sums["generation"] == truth.generation_tokens
        assert sums["hits"] == truth.cached_prompt_tokens
        assert sums["finished"] == truth.finished_requests


def test_sglang_counts_a_request_when_it_finishes(traces: dict[str, list[Request]]) -> None:
    fleet = fleet_of(traces[MOONCAKE], 10, engine="sglang")
    fleet.advance_to(900.0)
    mid, truth = counter_sums(fleet), fleet.truth("chat", 0.0, 900.0)
    assert 0 < mid["generation"] < truth.generation_tokens  # requests still decoding
    assert mid["prompt"] < truth.prompt_tokens
    fleet.advance_to(fleet.trace_end_s + DRAIN_S)
    end, truth = counter_sums(fleet), fleet.truth("chat", 0.0, fleet.now_s)
    assert fleet.in_flight == 0
    assert end["prompt"] == truth.prompt_tokens
    assert end["generation"] == truth.generation_tokens
    assert end["hits"] == truth.cached_prompt_tokens > 0


def test_an_overloaded_fleet_serves_no_more_than_was_asked(
    traces: dict[str, list[Request]],
) -> None:
    fleet = fleet_of(traces[MOONCAKE], 2)
    for t in (300.0, 1800.0, 3600.0):
        fleet.advance_to(t)
        truth = fleet.truth("chat", 0.0, t)
        assert truth.prompt_tokens <= truth.requested_prompt_tokens
        assert truth.generation_tokens <= truth.requested_generation_tokens
        assert truth.cached_prompt_tokens <= truth.prompt_tokens
    assert fleet.in_flight > 0
    assert truth.prompt_tokens < truth.requested_prompt_tokens
    assert all(p.waiting > 0 for p in fleet.pods)


def test_requests_beyond_the_model_context_are_rejected_not_served(
    traces: dict[str, list[Request]],
) -> None:
    # Llama-2 has a 4,096-token context; most Mooncake prompts are longer.
    pods, nodes = replica_pods("chat", 2, model="llama-2-7b", gpu=GPU)
    fleet = Fleet(pods, [Traffic("chat", traces[MOONCAKE])], nodes)
    fleet.advance_to(600.0)
    truth = fleet.truth("chat", 0.0, 600.0)
    assert 0 < truth.rejected_requests < truth.arrived_requests
    assert truth.prompt_tokens < truth.requested_prompt_tokens


def test_window_truth_adds_up_and_prices_allocated_gpus(drained: dict[str, Fleet]) -> None:
    fleet = drained[AZURE_CODE]
    whole = fleet.truth("chat", 600.0, 1800.0)
    parts = [fleet.truth("chat", a, b) for a, b in ((600.0, 1000.0), (1000.0, 1800.0))]
    assert whole.generation_tokens == pytest.approx(sum(p.generation_tokens for p in parts))
    assert whole.busy_gpu_s == pytest.approx(sum(p.busy_gpu_s for p in parts))
    assert whole.allocated_gpu_s == 10 * 1200.0
    per_pod = [fleet.pod_truth(p.name, 600.0, 1800.0) for p in fleet.pods]
    assert whole.prompt_tokens == pytest.approx(sum(p.prompt_tokens for p in per_pod))
    price = 2.21
    expected = usd_per_million_tokens(price * 10, whole.tokens / 1200.0)
    assert whole.usd_per_million_tokens(price) == pytest.approx(expected)
    assert whole.usd(price) == pytest.approx(price * 10 * 1200.0 / 3600.0)
    with pytest.raises(SimError, match="fleet is at"):
        fleet.truth("chat", 0.0, fleet.now_s + 1.0)


# --- GPU busy time ------------------------------------------------------------------------


def test_gpu_busy_fraction_is_a_ratio_and_grows_with_load(
    traces: dict[str, list[Request]],
) -> None:
    ratios = []
    for scale in (0.5, 1.0, 2.0):
        fleet = fleet_of(traces[AZURE_CODE], 4, load_scale=scale)
        fleet.advance_to(1800.0)
        ratios.append(fleet.truth("chat", 0.0, 1800.0).busy_ratio)
        for pod in fleet.pods:
            for a in range(0, 1800, 60):
                assert 0.0 <= pod.busy_ratio(a, a + 60) <= 1.0
    assert 0.0 < ratios[0] < ratios[1] < ratios[2] <= 1.0


def test_prefill_share_of_busy_time_is_reported(drained: dict[str, Fleet]) -> None:
    # Azure code prompts are long and answers short: prefill dominates; chat is the reverse.
    code = drained[AZURE_CODE].truth("chat", 0.0, 3600.0)
    conv = drained[AZURE_CONV].truth("chat", 0.0, 3600.0)
    assert code.prefill_time_ratio > conv.prefill_time_ratio
    assert 0.0 < conv.prefill_time_ratio < 1.0


# --- prefix cache -------------------------------------------------------------------------


def test_prefix_cache_hits_on_mooncake_never_on_azure(drained: dict[str, Fleet]) -> None:
    moon = counter_sums(drained[MOONCAKE])
    assert 0 < moon["hits"] < moon["queries"]
    for trace in (AZURE_CODE, AZURE_CONV):
        azure = counter_sums(drained[trace])
        assert azure["hits"] == 0
        assert azure["queries"] == azure["prompt"] > 0


def test_a_bigger_kv_cache_keeps_more_prefixes(traces: dict[str, list[Request]]) -> None:
    ratios = []
    for gpu in ("A100-40GB", "H200"):
        pods, nodes = replica_pods("chat", 10, model=MODEL, gpu=gpu)
        fleet = Fleet(pods, [Traffic("chat", traces[MOONCAKE])], nodes)
        fleet.advance_to(900.0)
        ratios.append(fleet.truth("chat", 0.0, 900.0).cache_hit_ratio)
    assert 0 < ratios[0] < ratios[1]


def test_prefix_cache_reuses_only_a_leading_run_and_evicts_the_oldest() -> None:
    cache = PrefixCache(capacity_blocks=4)
    assert cache.lookup_and_insert([1, 2, 3]) == 0
    assert cache.lookup_and_insert([1, 2, 9]) == 2
    assert cache.lookup_and_insert([7, 2, 3]) == 0  # a shared later block is no prefix
    assert len(cache) == 4  # 7 pushed out block 1, the least recently used
    assert cache.lookup_and_insert([2, 3]) == 2
    assert cache.lookup_and_insert([1]) == 0


# --- restarts -----------------------------------------------------------------------------


def test_restart_resets_counters_and_truth_keeps_counting(
    traces: dict[str, list[Request]],
) -> None:
    fleet = fleet_of(traces[MOONCAKE], 4)
    fleet.advance_to(600.0)
    pod = fleet.pods[0]
    before = pod.stats()
    assert before.prompt_tokens > 0
    assert before.generation_tokens > 0
    in_flight = pod.load
    assert in_flight > 0  # four pods are short of Mooncake's load: requests queue
    fleet.restart(pod.name)
    after = pod.stats()
    assert (after.prompt_tokens, after.generation_tokens, after.prefix_cache_hits) == (0, 0, 0)
    assert after.decode_time.count == 0
    assert after.started_s == 600.0
    assert pod.load == 0
    assert pod.aborted_requests == in_flight
    fleet.advance_to(900.0)
    since = fleet.pod_truth(pod.name, 600.0, 900.0)
    stats = pod.stats()
    assert stats.prompt_tokens == since.prompt_tokens > 0
    assert stats.generation_tokens == since.generation_tokens
    assert fleet.pod_truth(pod.name, 0.0, 900.0).prompt_tokens == (
        before.prompt_tokens + stats.prompt_tokens
    )


# --- determinism --------------------------------------------------------------------------


def test_same_inputs_same_fleet_however_it_is_advanced(
    traces: dict[str, list[Request]],
) -> None:
    one, two, sliced = (fleet_of(traces[MOONCAKE], 4) for _ in range(3))
    one.advance_to(1200.0)
    two.advance_to(1200.0)
    t = 0.0
    while t < 1200.0:
        t = min(1200.0, t + 0.7)
        sliced.advance_to(t)
    assert [p.stats() for p in one.pods] == [p.stats() for p in two.pods]
    assert one.truth("chat", 0.0, 1200.0) == two.truth("chat", 0.0, 1200.0)
    a, b = one.truth("chat", 0.0, 1200.0), sliced.truth("chat", 0.0, 1200.0)
    assert b.prompt_tokens == pytest.approx(a.prompt_tokens, rel=1e-3)
    assert b.generation_tokens == pytest.approx(a.generation_tokens, rel=1e-3)
    assert b.busy_gpu_s == pytest.approx(a.busy_gpu_s, rel=1e-3)


# --- building fleets ----------------------------------------------------------------------


def test_pods_pack_onto_nodes_and_own_their_gpus() -> None:
    pods, nodes = replica_pods("big", 3, model="llama-3.1-70b", gpu="H100-SXM", tp=4)
    fleet = Fleet(pods, [], nodes)
    assert [n.gpu_count for n in fleet.nodes] == [8, 8]
    first = fleet.node_gpus(nodes[0].name)
    assert [s.pod.name if s.pod else None for s in first] == [pods[0].name] * 4 + [pods[1].name] * 4
    second = fleet.node_gpus(nodes[1].name)
    assert [s.pod is None for s in second] == [False] * 4 + [True] * 4
    assert len({s.uuid for s in first + second}) == 16
    assert pods[0].served_model_name == "meta-llama/Llama-3.1-70B"
    assert len({p.name for p in pods}) == 3


def test_impossible_fleets_are_refused(traces: dict[str, list[Request]]) -> None:
    pods, nodes = replica_pods("a", 2, model=MODEL, gpu=GPU, gpus_per_node=1)
    with pytest.raises(SimError, match="duplicate pod"):
        Fleet([pods[0], pods[0]], [], nodes)
    with pytest.raises(SimError, match="1 GPUs, pods ask for more"):
        Fleet([pods[0], replace(pods[1], node=nodes[0].name)], [], nodes)
    with pytest.raises(SimError, match="needs A100-80GB, node"):
        Fleet(pods, [], [nodes[0], NodeSpec(nodes[1].name, "H100-SXM", 1)])
    with pytest.raises(SimError, match="no pods"):
        Fleet(pods, [Traffic("b", traces[AZURE_CODE])], nodes)
    with pytest.raises(SimError, match="NVIDIA"):
        NodeSpec("amd-0", "MI300X")
    with pytest.raises(SimError, match="engine"):
        PodSpec("ns", "p", "w", "n", "tgi", pods[0].deployment, "m")  # type: ignore[arg-type]
    fleet = Fleet(pods, [], nodes)
    fleet.advance_to(10.0)
    with pytest.raises(SimError, match="go back"):
        fleet.advance_to(5.0)


# --- HTTP: names and labels as the real exporters ----------------------------------------


class FakeTime:
    """A wall clock the test sets, so that scrapes land on known trace times."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Scraped:
    types: dict[str, str]
    samples: list[Sample]

    def values(self, name: str) -> list[float]:
        return [s.value for s in self.samples if s.name == name]


def scrape(url: str) -> Scraped:
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    families = list(text_string_to_metric_families(text))
    return Scraped({f.name: f.type for f in families}, [s for f in families for s in f.samples])


@pytest.fixture
def served(traces: dict[str, list[Request]]) -> Iterator[tuple[SimServer, FakeTime]]:
    """One vLLM pod on Mooncake, one SGLang pod (tp 2) on Azure code, 20× speed."""
    chat, chat_nodes = replica_pods("chat", 1, model=MODEL, gpu=GPU, gpus_per_node=2)
    code, code_nodes = replica_pods(
        "code", 1, model=MODEL, gpu="H100-SXM", tp=2, engine="sglang", namespace="ml"
    )
    fleet = Fleet(
        chat + code,
        [Traffic("chat", traces[MOONCAKE]), Traffic("code", traces[AZURE_CODE])],
        chat_nodes + code_nodes,
    )
    clock = FakeTime(1_700_000_000.0)
    server = SimServer(fleet, speedup=20.0, start_trace_s=60.0, time_source=clock)
    with server:
        yield server, clock


VLLM_FAMILIES = {
    "vllm:prompt_tokens": "counter",
    "vllm:generation_tokens": "counter",
    "vllm:prefix_cache_queries": "counter",
    "vllm:prefix_cache_hits": "counter",
    "vllm:num_requests_running": "gauge",
    "vllm:num_requests_waiting": "gauge",
    "vllm:request_prefill_time_seconds": "histogram",
    "vllm:request_decode_time_seconds": "histogram",
    "vllm:request_success": "counter",
    "vllm:request_prompt_tokens": "histogram",
}
SGLANG_FAMILIES = {
    "sglang:prompt_tokens": "counter",
    "sglang:generation_tokens": "counter",
    "sglang:cached_tokens": "counter",
    "sglang:num_requests": "counter",
    "sglang:num_running_reqs": "gauge",
    "sglang:num_queue_reqs": "gauge",
}
DCGM_FAMILIES = {"DCGM_FI_PROF_GR_ENGINE_ACTIVE": "gauge", "DCGM_FI_DEV_GPU_UTIL": "gauge"}


def test_engines_expose_their_real_names_and_labels_without_pod_labels(
    served: tuple[SimServer, FakeTime],
) -> None:
    server, clock = served
    clock.now += 30.0  # 600 trace seconds later
    vllm_pod, sglang_pod = server.fleet.pods
    vllm = scrape(server.endpoint(vllm_pod.name).url)
    assert {n: t for n, t in vllm.types.items() if not n.endswith("_created")} == VLLM_FAMILIES
    for sample in vllm.samples:
        extra = {"le"} if sample.name.endswith("_bucket") else set()
        if sample.name.startswith("vllm:request_success"):
            extra = {"finished_reason"}
        assert set(sample.labels) == {"model_name", "engine"} | extra
        assert sample.labels["engine"] == "0"
        assert sample.labels["model_name"] == "meta-llama/Llama-3.1-8B"
    names = {s.name for s in vllm.samples}
    for counter in ("prompt_tokens", "generation_tokens", "prefix_cache_queries"):
        assert f"vllm:{counter}_total" in names
    for hist in (
        "request_prefill_time_seconds",
        "request_decode_time_seconds",
        "request_prompt_tokens",
    ):
        assert {f"vllm:{hist}_{s}" for s in ("sum", "count", "bucket")} <= names

    sglang = scrape(server.endpoint(sglang_pod.name).url)
    assert {n: t for n, t in sglang.types.items() if not n.endswith("_created")} == (
        SGLANG_FAMILIES
    )
    assert all(set(s.labels) == {"model_name"} for s in sglang.samples)
    assert "sglang:cached_tokens_total" in {s.name for s in sglang.samples}


def test_scraped_counters_equal_ground_truth_at_the_scrape_instant(
    served: tuple[SimServer, FakeTime],
) -> None:
    server, clock = served
    start_wall = clock.now
    clock.now += 45.0
    assert server.clock.trace_s(clock.now) == 60.0 + 45.0 * 20.0
    vllm_pod = server.fleet.pods[0]
    got = scrape(server.endpoint(vllm_pod.name).url)
    truth = server.truth("chat", server.clock.unix_s(0.0), clock.now)
    assert got.values("vllm:prompt_tokens_total") == [truth.prompt_tokens]
    assert got.values("vllm:generation_tokens_total") == [truth.generation_tokens]
    assert got.values("vllm:prefix_cache_hits_total") == [truth.cached_prompt_tokens]
    assert got.values("vllm:request_decode_time_seconds_count") == [truth.finished_requests]
    assert got.values("vllm:request_success_total") == [truth.finished_requests]
    # The operator's vLLM request rate: one observation per finished request, as in vLLM.
    assert got.values("vllm:request_prompt_tokens_count") == [truth.finished_requests]
    buckets = [s for s in got.samples if s.name == "vllm:request_prompt_tokens_bucket"]
    bounds = [s.labels["le"] for s in buckets]
    assert bounds == [repr(b) for b in one_two_five_buckets(131072)] + ["+Inf"]
    assert buckets[-1].value == truth.finished_requests
    (prompt_sum,) = got.values("vllm:request_prompt_tokens_sum")
    assert 0 < prompt_sum <= truth.prompt_tokens  # finished requests' prompts only
    # Only the part after the wall clock started, through the clock mapping.
    window = server.truth("chat", start_wall, clock.now)
    assert window.start_s == 60.0
    assert window.end_s == 960.0
    assert 0 < window.generation_tokens < truth.generation_tokens


def test_each_read_is_logged_with_its_instant_and_counters(
    served: tuple[SimServer, FakeTime],
) -> None:
    """A test matches a stored sample to the read that produced it: each scrape of a pod logs
    the wall-clock instant the fleet was brought up to and the counters it showed."""
    server, clock = served
    pod = server.fleet.pods[0].name
    url = server.endpoint(pod).url
    assert server.reads(pod) == []
    shown = []
    for step in (10.0, 0.5, 7.25):
        clock.now += step
        got = scrape(url)
        (prompt,) = got.values("vllm:prompt_tokens_total")
        (generation,) = got.values("vllm:generation_tokens_total")
        shown.append((clock.now, prompt, generation))
    reads = server.reads(pod)
    assert [(r.unix_s, r.prompt_tokens, r.generation_tokens) for r in reads] == [
        (pytest.approx(t), p, g) for t, p, g in shown
    ]
    assert reads[0].generation_tokens < reads[-1].generation_tokens
    assert server.reads(server.fleet.pods[1].name) == []  # the other pod was not scraped
    # Between two reads, the pod's truth is the counters' difference.
    truth = server.pod_truth(pod, reads[0].unix_s, reads[-1].unix_s)
    assert truth.generation_tokens == reads[-1].generation_tokens - reads[0].generation_tokens
    assert truth.prompt_tokens == reads[-1].prompt_tokens - reads[0].prompt_tokens


def test_prompt_length_buckets_are_vllms_1_2_5_series() -> None:
    assert one_two_five_buckets(100) == (1, 2, 5, 10, 20, 50, 100)  # vLLM's docstring example
    assert one_two_five_buckets(4096)[-3:] == (500, 1000, 2000)  # 5000 > max_model_len


def test_dcgm_series_per_gpu_attributed_to_pods(served: tuple[SimServer, FakeTime]) -> None:
    server, clock = served
    clock.now += 20.0
    sglang_pod = server.fleet.pods[1]
    for node in server.fleet.nodes:
        got = scrape(server.endpoint(node.name).url)
        assert got.types == DCGM_FAMILIES
        active = [s for s in got.samples if s.name == "DCGM_FI_PROF_GR_ENGINE_ACTIVE"]
        util = [s for s in got.samples if s.name == "DCGM_FI_DEV_GPU_UTIL"]
        assert [s.labels["gpu"] for s in active] == [str(i) for i in range(node.gpu_count)]
        for a, u in zip(active, util, strict=True):
            assert set(a.labels) == {
                "gpu", "UUID", "device", "modelName", "Hostname", "pod", "namespace", "container"
            }  # fmt: skip
            assert a.labels == u.labels
            assert a.labels["modelName"] == DCGM_MODEL_NAMES[node.gpu]
            assert a.labels["Hostname"] == node.name
            assert a.labels["device"] == f"nvidia{a.labels['gpu']}"
            assert a.labels["UUID"].startswith("GPU-")
            assert 0.0 <= a.value <= 1.0
            assert 0.0 <= u.value <= 100.0
            assert u.value == round(a.value * 100)
            if not a.labels["pod"]:  # an unallocated GPU: no pod, idle
                assert a.labels["namespace"] == a.labels["container"] == ""
                assert a.value == 0.0
                continue
            pod = server.fleet.pod(a.labels["pod"])
            assert a.labels["namespace"] == pod.namespace
            assert a.labels["container"] == pod.engine
            # Busy over the last DCGM interval (1 wall second = `speedup` trace seconds).
            now = server.clock.trace_s(clock.now)
            assert a.value == pytest.approx(pod.busy_ratio(now - server.speedup, now))
    code_node = server.fleet.node_gpus(sglang_pod.node)
    assert [s.pod.name if s.pod else "" for s in code_node] == [sglang_pod.name] * 2 + [""] * 6


def test_scrape_targets_label_pods_and_exporters(served: tuple[SimServer, FakeTime]) -> None:
    server, _ = served
    targets = server.scrape_targets()
    fleet = server.fleet
    assert len(targets) == len(fleet.pods) + len(fleet.nodes)
    for group, pod in zip(targets, fleet.pods, strict=False):
        assert group["labels"]["job"] == pod.engine
        assert (group["labels"]["namespace"], group["labels"]["pod"]) == (pod.namespace, pod.name)
    dcgm = [g for g in targets if g["labels"]["job"] == "dcgm"]
    assert [g["labels"]["node"] for g in dcgm] == [n.name for n in fleet.nodes]
    addresses = [address for g in targets for address in g["targets"]]
    assert all(a.startswith("127.0.0.1:") for a in addresses)
    assert len(set(addresses)) == len(targets)


def test_endpoints_answer_in_the_text_format_whatever_is_asked(
    served: tuple[SimServer, FakeTime],
) -> None:
    # prometheus_client's OpenMetrics output turns ':' into '_' in sample names only
    # (prometheus/client_python#1177); the text format keeps the exporters' names intact.
    server, _ = served
    accept = "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4"
    request = urllib.request.Request(
        server.endpoint(server.fleet.pods[0].name).url, headers={"Accept": accept}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    names = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
    assert "vllm:prompt_tokens_total" in names
    assert not any(n.startswith("vllm_") for n in names)


def test_a_restart_shows_as_a_counter_reset(served: tuple[SimServer, FakeTime]) -> None:
    server, clock = served
    clock.now += 30.0
    url = server.endpoint(server.fleet.pods[0].name).url
    before = scrape(url).values("vllm:generation_tokens_total")[0]
    server.restart(server.fleet.pods[0].name)
    clock.now += 1.0
    after = scrape(url)
    assert 0 <= after.values("vllm:generation_tokens_total")[0] < before
    created = after.values("vllm:generation_tokens_created")[0]
    assert created == pytest.approx(clock.now - 1.0)


def test_server_closes_its_ports(traces: dict[str, list[Request]]) -> None:
    fleet = fleet_of(traces[AZURE_CODE], 1)
    with SimServer(fleet, speedup=50.0) as server:
        url = server.endpoints[0].url
        assert scrape(url).types
    with pytest.raises(urllib.error.URLError, match="refused"):
        urllib.request.urlopen(url, timeout=2)
    server.close()  # twice is fine
