"""Timing, peak memory and result files shared by the benchmarks (no brainlit imports)."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch

CPU_MEMORY = (
    "growth of the process's peak resident set size (Linux VmHWM, reset through "
    "/proc/self/clear_refs) over the RSS before the first step: activations, gradients, "
    "optimiser state and allocator slack of a step, on top of the model and the batch"
)
CUDA_MEMORY = (
    "torch.cuda.max_memory_allocated during the steps minus the memory allocated before the "
    "first step: activations, gradients and optimiser state, on top of the model and the batch"
)


def proc_status(field: str) -> int | None:
    """A ``kB`` field of /proc/self/status in bytes, or None where there is no procfs."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class PeakMemory:
    """Peak memory a block adds: CUDA max allocated on a GPU, peak-RSS growth on a CPU.

    ``mib`` is None where the figure cannot be read (a CPU without Linux procfs).
    """

    def __init__(self, device: torch.device) -> None:
        self.device, self.mib = device, None

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
            return self
        self.base = proc_status("VmRSS")
        try:
            Path("/proc/self/clear_refs").write_text("5")  # peak RSS := current RSS
        except OSError:
            self.base = None
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.mib = (torch.cuda.max_memory_allocated(self.device) - self.base) / 2**20
        elif self.base is not None:
            peak = proc_status("VmHWM")
            self.mib = None if peak is None else max(0, peak - self.base) / 2**20


def seconds_per_call(
    fn: Callable[[], object], iters: int, warmup: int, device: torch.device
) -> float:
    """Mean wall time of ``fn()`` over ``iters`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / iters


def cpu_name() -> str:
    """The processor's model name (Linux /proc/cpuinfo), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    except OSError:
        pass
    return platform.processor() or "cpu"


def describe_device(device: torch.device) -> dict:
    """Name, torch version and thread count, stored with every result file."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    return {
        "device": str(device),
        "name": name,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "memory": CUDA_MEMORY if device.type == "cuda" else CPU_MEMORY,
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def markdown_table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    """A markdown table of ``rows`` with ``(key, header)`` columns; floats get 2-3 digits."""

    def cell(value: object) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
        return str(value)

    lines = ["| " + " | ".join(h for _, h in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(k)) for k, _ in columns) + " |" for row in rows]
    return "\n".join(lines)


def write_results(stem: Path, payload: dict, markdown: str) -> tuple[Path, Path]:
    """``<stem>.json`` and ``<stem>.md``; returns both paths."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    json_path, md_path = stem.with_suffix(".json"), stem.with_suffix(".md")
    json_path.write_text(json.dumps(payload, indent=2) + "\n")
    md_path.write_text(markdown + "\n")
    return json_path, md_path
