"""CPU timing: median and spread of repeated calls, the machine they ran on, and whether it was quiet enough
to trust them (for bench.py, loadtest.py, peers.py and the notebook's results rows)."""

from __future__ import annotations

import gc
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch

import utils

BATCH = 64  # the batched setting (and the distillation batch size)
SPREAD_WARNING_PCT = 10.0  # a timing whose repeats differ by more than this is flagged in the tables


def available_cpus() -> int:
    """The CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def machine_info(threads: int) -> dict:
    """CPU, threads, load and library versions: what the timings depend on."""
    import onnxruntime
    import tokenizers
    import transformers

    return {
        "cpu": utils.cpu_name(),
        "cpus": os.cpu_count(),
        "cpus_available": available_cpus(),
        "threads": threads,
        "torch_threads": torch.get_num_threads(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "onnxruntime": onnxruntime.__version__,
        "tokenizers": tokenizers.__version__,
    }


def time_calls(call: Callable[[list], object], items: list, latency_items: int, repeats: int) -> dict:
    """Batch-1 latency (call per item) and batch-64 throughput (call per 64 items) over the same items.

    Each figure is the median over `repeats` passes, with its spread ((max - min) / median over the passes,
    in percent): a spread of more than a few percent means the machine was not quiet enough to trust it.
    """
    call(items[:BATCH])
    call(items[:1])
    gc.collect()
    latencies, pass_medians = [], []
    for _ in range(repeats):
        current = []
        for item in items[:latency_items]:
            start = time.perf_counter()
            call([item])
            current.append(time.perf_counter() - start)
        latencies += current
        pass_medians.append(statistics.median(current))
    throughputs = []
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(0, len(items), BATCH):
            call(items[i : i + BATCH])
        throughputs.append(len(items) / (time.perf_counter() - start))
    return {
        "batch1_median_ms": 1e3 * statistics.median(latencies),
        "batch1_median_ms_spread_pct": spread_pct(pass_medians),
        "batch1_p90_ms": 1e3 * float(np.percentile(latencies, 90)),
        "batch1_per_s": len(latencies) / sum(latencies),
        "batch64_per_s": statistics.median(throughputs),
        "batch64_per_s_spread_pct": spread_pct(throughputs),
    }


def spread_pct(values: Sequence[float]) -> float:
    """(max - min) / median of repeated measurements, in percent (0 for a single one)."""
    return 100 * (max(values) - min(values)) / statistics.median(values) if len(values) > 1 else 0.0


def machine_busy(load: float, cpus: int, own_processes: int = 0) -> bool:
    """Whether other processes keep the machine busy: the 1-minute load average beyond the ``own_processes``
    that the measurement itself keeps running (a load test's server workers and load generator) is above half
    the CPUs."""
    return load - own_processes > cpus / 2


def timing_warning(
    load_before: float, load_after: float, spreads: Sequence[float], own_processes: int = 0
) -> str:
    """'' for a trustworthy timing, else why not: the machine was busy (``machine_busy`` before or after) or
    the repeats disagree by more than SPREAD_WARNING_PCT."""
    cpus = available_cpus()
    reasons = []
    if machine_busy(max(load_before, load_after), cpus, own_processes):
        ours = f", {own_processes} of it our own" if own_processes else ""
        reasons.append(f"BUSY: load {load_before:.1f} -> {load_after:.1f} on {cpus} CPUs{ours}")
    if spreads and max(spreads) > SPREAD_WARNING_PCT:
        reasons.append(f"UNSTABLE: repeats differ by {max(spreads):.0f}%")
    return "; ".join(reasons)


def cycle(items: list, n: int) -> list:
    """The first n items, repeating the list if it is shorter."""
    return [items[i % len(items)] for i in range(n)]


def mean_seconds(step: Callable[[np.ndarray], object], batches: list[np.ndarray]) -> float:
    """Mean wall time of step over batches, after one untimed warm-up step."""
    step(batches[0])
    start = time.perf_counter()
    for idx in batches:
        step(idx)
    return (time.perf_counter() - start) / len(batches)
