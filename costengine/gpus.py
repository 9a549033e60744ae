"""GPU catalog: memory, bandwidth and dense tensor throughput per GPU, with sources.

Units are in the names: GB are decimal (1e9 bytes) as vendors market them, TB/s is 1e12 bytes/s,
TFLOPS/TOPS are dense (no 2:4 sparsity) tensor-core figures.

NVIDIA datasheets from Ampere onward mostly quote tensor throughput *with* 2:4 sparsity (marked
"*"); the dense figure is half of it ("one-half lower without sparsity"). Where a datasheet
gives only the sparse number, the entry below says so and stores sparse / 2.

interconnect_gb_per_s is one direction per GPU: vendors quote NVLink / Infinity Fabric / PCIe
as bidirectional totals (NVLink 4 "900 GB/s" = 450 GB/s each way; PCIe Gen4 x16 "64 GB/s" =
32 GB/s each way), so those totals are halved here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class GPU:
    name: str  # canonical name, e.g. "A100-80GB"
    vendor: str  # "nvidia" | "amd"
    memory_gb: float  # device memory, decimal GB as marketed (80 for A100 80GB)
    memory_bandwidth_tb_per_s: float  # peak DRAM/HBM bandwidth
    fp16_dense_tflops: float  # dense FP16/BF16 tensor throughput
    fp8_dense_tflops: float | None  # dense FP8 tensor throughput; None where unsupported
    int8_dense_tops: float  # dense INT8 tensor throughput
    interconnect_gb_per_s: float  # per-GPU GPU-to-GPU bandwidth, one direction
    nvlink: bool  # True if the usual multi-GPU server form uses NVLink/xGMI
    tdp_watts: float
    source: str  # URL(s) of datasheet(s) the figures come from


GPUS: dict[str, GPU] = {
    # NVIDIA T4 (Turing) datasheet / product page: 16 GB GDDR6, "320+ GB/s", mixed-precision
    # FP16/FP32 65 TFLOPS, INT8 130 TOPS, 70 W, x16 PCIe Gen3 (32 GB/s bidirectional).
    # Turing has no 2:4 sparsity, so 65/130 are already dense. No FP8 on Turing.
    # Bandwidth caveat: the product page says "320+ GB/s" but a later datasheet table prints
    # "300 GB/sec"; 256-bit GDDR6 at 10 Gbps is 320 GB/s, so 0.32 is used.
    "T4": GPU(
        name="T4",
        vendor="nvidia",
        memory_gb=16.0,
        memory_bandwidth_tb_per_s=0.32,
        fp16_dense_tflops=65.0,
        fp8_dense_tflops=None,
        int8_dense_tops=130.0,
        interconnect_gb_per_s=16.0,
        nvlink=False,
        tdp_watts=70.0,
        source="https://www.nvidia.com/en-us/data-center/tesla-t4/",
    ),
    # NVIDIA L4 (Ada) datasheet / product page: 24 GB, 300 GB/s, 72 W, PCIe Gen4 x16 64 GB/s.
    # The datasheet gives only sparse figures: FP16/BF16 242*, FP8 485*, INT8 485* TOPS
    # ("*with sparsity"); stored here as sparse / 2.
    "L4": GPU(
        name="L4",
        vendor="nvidia",
        memory_gb=24.0,
        memory_bandwidth_tb_per_s=0.3,
        fp16_dense_tflops=121.0,
        fp8_dense_tflops=242.5,
        int8_dense_tops=242.5,
        interconnect_gb_per_s=32.0,
        nvlink=False,
        tdp_watts=72.0,
        source="https://www.nvidia.com/en-us/data-center/l4/",
    ),
    # NVIDIA A10G, the AWS-only GA102 variant used in EC2 G5 (not the same card as the A10).
    # NVIDIA/AWS "A10G Tensor Core GPU" datasheet (17 Feb 2022): 24 GB GDDR6, 600 GB/s,
    # BF16/FP16 tensor 70 TFLOPS dense (140* with sparsity), INT8 140 TOPS dense. The A10's
    # 125 TFLOPS / 250 TOPS do NOT apply. No FP8 on Ampere.
    # WEAK: the AWS PDF could not be read here; 70/140 come from several independent tables
    # that quote it, and a public A10G FP16 GEMM measurement peaking at ~69.5 TFLOPS fits.
    # TDP: AWS's own G5 table reports 300 W from nvidia-smi (the A10 card is 150 W); AWS does
    # not publish a TDP for the A10G. Interconnect: no NVLink on G5; AWS does not publish the
    # host link, so PCIe Gen4 x16 (32 GB/s each way, as on the A10 board) is assumed.
    "A10G": GPU(
        name="A10G",
        vendor="nvidia",
        memory_gb=24.0,
        memory_bandwidth_tb_per_s=0.6,
        fp16_dense_tflops=70.0,
        fp8_dense_tflops=None,
        int8_dense_tops=140.0,
        interconnect_gb_per_s=32.0,
        nvlink=False,
        tdp_watts=300.0,
        source=(
            "https://d1.awsstatic.com/product-marketing/ec2/"
            "NVIDIA_AWS_A10G_DataSheet_FINAL_02_17_2022.pdf "
            "https://aws.amazon.com/ec2/instance-types/g5/"
        ),
    ),
    # NVIDIA L40S (Ada) datasheet: 48 GB GDDR6, 864 GB/s, BF16/FP16 362.05 | 733*,
    # FP8 733 | 1,466*, INT8 733 | 1,466* TOPS (dense | *sparse), 350 W max,
    # PCIe Gen4 x16 64 GB/s bidirectional, no NVLink.
    "L40S": GPU(
        name="L40S",
        vendor="nvidia",
        memory_gb=48.0,
        memory_bandwidth_tb_per_s=0.864,
        fp16_dense_tflops=362.05,
        fp8_dense_tflops=733.0,
        int8_dense_tops=733.0,
        interconnect_gb_per_s=32.0,
        nvlink=False,
        tdp_watts=350.0,
        source=(
            "https://www.nvidia.com/en-us/data-center/l40s/ "
            "https://resources.nvidia.com/en-us-l40s/l40s-datasheet-28413"
        ),
    ),
    # NVIDIA A100 datasheet (r4), A100 40GB SXM column: 40 GB HBM2, 1,555 GB/s,
    # BF16/FP16 312 | 624*, INT8 624 | 1,248* TOPS, 400 W, NVLink 600 GB/s (bidirectional).
    # No FP8 on Ampere.
    "A100-40GB": GPU(
        name="A100-40GB",
        vendor="nvidia",
        memory_gb=40.0,
        memory_bandwidth_tb_per_s=1.555,
        fp16_dense_tflops=312.0,
        fp8_dense_tflops=None,
        int8_dense_tops=624.0,
        interconnect_gb_per_s=300.0,
        nvlink=True,
        tdp_watts=400.0,
        source=(
            "https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/pdf/"
            "nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf"
        ),
    ),
    # Same datasheet, A100 80GB SXM column: 80 GB HBM2e, 2,039 GB/s; compute, power and NVLink
    # as the 40GB SXM part.
    "A100-80GB": GPU(
        name="A100-80GB",
        vendor="nvidia",
        memory_gb=80.0,
        memory_bandwidth_tb_per_s=2.039,
        fp16_dense_tflops=312.0,
        fp8_dense_tflops=None,
        int8_dense_tops=624.0,
        interconnect_gb_per_s=300.0,
        nvlink=True,
        tdp_watts=400.0,
        source=(
            "https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/pdf/"
            "nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf"
        ),
    ),
    # NVIDIA H100 datasheet (2022 edition, H100 PCIe column) and H100 PCIe product brief
    # PB-11133-001_v02: 80 GB HBM2e, 2 TB/s ("greater than 2,000 GB/s"), BF16/FP16 1,513*,
    # FP8 3,026*, INT8 3,026* TOPS (sparse only; stored / 2), 300-350 W (350 W unconstrained
    # TDP per the product brief), PCIe Gen5 128 GB/s bidirectional. An optional 2-card NVLink
    # bridge exists, but the usual server form is plain PCIe, so nvlink=False.
    "H100-PCIe": GPU(
        name="H100-PCIe",
        vendor="nvidia",
        memory_gb=80.0,
        memory_bandwidth_tb_per_s=2.0,
        fp16_dense_tflops=756.0,
        fp8_dense_tflops=1513.0,
        int8_dense_tops=1513.0,
        interconnect_gb_per_s=64.0,
        nvlink=False,
        tdp_watts=350.0,
        source=(
            "https://resources.nvidia.com/en-us-tensor-core/nvidia-tensor-core-gpu-datasheet "
            "https://www.nvidia.com/en-us/data-center/h100/"
        ),
    ),
    # NVIDIA H100 datasheet, H100 SXM column: 80 GB HBM3, 3.35 TB/s, BF16/FP16 1,979*,
    # FP8 3,958*, INT8 3,958* TOPS (sparse; stored / 2 -> 989 / 1,979), up to 700 W,
    # NVLink 900 GB/s (bidirectional).
    "H100-SXM": GPU(
        name="H100-SXM",
        vendor="nvidia",
        memory_gb=80.0,
        memory_bandwidth_tb_per_s=3.35,
        fp16_dense_tflops=989.0,
        fp8_dense_tflops=1979.0,
        int8_dense_tops=1979.0,
        interconnect_gb_per_s=450.0,
        nvlink=True,
        tdp_watts=700.0,
        source="https://resources.nvidia.com/en-us-tensor-core/nvidia-tensor-core-gpu-datasheet",
    ),
    # NVIDIA H200 datasheet, H200 SXM column: 141 GB HBM3e, 4.8 TB/s, same Hopper tensor rates
    # as H100 SXM (BF16 1,979*, FP8 3,958*, INT8 3,958* sparse), up to 700 W, NVLink 900 GB/s.
    "H200": GPU(
        name="H200",
        vendor="nvidia",
        memory_gb=141.0,
        memory_bandwidth_tb_per_s=4.8,
        fp16_dense_tflops=989.0,
        fp8_dense_tflops=1979.0,
        int8_dense_tops=1979.0,
        interconnect_gb_per_s=450.0,
        nvlink=True,
        tdp_watts=700.0,
        source=(
            "https://www.nvidia.com/en-us/data-center/h200/ "
            "https://resources.nvidia.com/en-us-data-center-overview-mc/"
            "en-us-data-center-overview/hpc-datasheet-sc23-h200"
        ),
    ),
    # NVIDIA B200 as shipped on the 8-GPU HGX B200 board (air-cooled, 1,000 W), per-GPU column
    # of NVIDIA's "GB200 NVL72 | HGX B200" spec table: 180 GB HBM3e, 7.7 TB/s,
    # FP16/BF16 4.5 PFLOPS*, FP8 9 PFLOPS*, INT8 9 POPS* (sparse; stored / 2), configurable up
    # to 1,000 W, 5th-gen NVLink 1.8 TB/s (bidirectional).
    # Caveats: the B200 chip is marketed with 192 GB, but HGX/DGX B200 expose 180 GB per GPU
    # (DGX B200: 1,440 GB total for 8 GPUs). The earlier DGX B200 datasheet quotes 64 TB/s
    # total HBM bandwidth (8 TB/s per GPU); the later HGX table says 7.7 TB/s, used here.
    # The GB200 NVL72 variant (1,200 W) is faster (FP16 5 PFLOPS*) and is NOT this entry.
    "B200": GPU(
        name="B200",
        vendor="nvidia",
        memory_gb=180.0,
        memory_bandwidth_tb_per_s=7.7,
        fp16_dense_tflops=2250.0,
        fp8_dense_tflops=4500.0,
        int8_dense_tops=4500.0,
        interconnect_gb_per_s=900.0,
        nvlink=True,
        tdp_watts=1000.0,
        source=(
            "https://www.nvidia.com/en-us/data-center/hgx/ "
            "https://resources.nvidia.com/en-us-dgx-systems/dgx-b200-datasheet"
        ),
    ),
    # AMD Instinct MI300X (OAM). ROCm "MI300 series microarchitecture" peak table (dense; AMD
    # lists sparse separately): matrix FP16/BF16 1,307.4 TFLOPS, FP8 2,614.9, INT8 2,614.9
    # TOPS; aggregate HBM3 bandwidth 5.3 TB/s. 192 GB HBM3 and 750 W per AMD's product page
    # (also AMD's MLPerf system name "MI300X-...-192GB-750W").
    # Interconnect: 7 Infinity Fabric (xGMI) links per GPU in a fully connected 8-GPU board,
    # 128 GB/s bidirectional each -> 896 GB/s total, 448 GB/s each way (derived).
    "MI300X": GPU(
        name="MI300X",
        vendor="amd",
        memory_gb=192.0,
        memory_bandwidth_tb_per_s=5.3,
        fp16_dense_tflops=1307.4,
        fp8_dense_tflops=2614.9,
        int8_dense_tops=2614.9,
        interconnect_gb_per_s=448.0,
        nvlink=True,
        tdp_watts=750.0,
        source=(
            "https://www.amd.com/en/products/accelerators/instinct/mi300/mi300x.html "
            "https://rocm.docs.amd.com/en/latest/conceptual/gpu-arch/mi300.html"
        ),
    ),
}
