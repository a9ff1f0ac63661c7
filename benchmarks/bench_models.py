"""Throughput of the brainlit models: LMAE, BrainRegressor and the selective scans.

Forward + backward throughput (subjects/s) of the LMAE on training crops and of the full
BrainRegressor, at default model sizes, then the pure-PyTorch chunked scan against the
sequential reference loop. On CUDA it also compares fp32 with bf16 autocast and the torch
scan with mamba-ssm's kernels (when installed). Never run as a test::

    python benchmarks/bench_models.py                # CPU, 2 threads, default sizes
    python benchmarks/bench_models.py --iters 2 --scan-lengths 256 1024
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import time
from collections.abc import Callable

import torch

from brainlit.models import (
    BrainRegressor,
    LocalMaskedAutoencoder,
    selective_scan,
    selective_scan_ref,
)
from brainlit.models.ssm import cuda_selective_scan


def seconds_per_call(
    fn: Callable[[], object], iters: int, warmup: int, device: torch.device
) -> float:
    """Mean wall time of ``fn()`` over ``iters`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / iters


def precision_contexts(device: torch.device) -> dict[str, Callable]:
    """fp32 everywhere; bf16 autocast additionally on CUDA."""
    contexts = {"fp32": contextlib.nullcontext}
    if device.type == "cuda":
        contexts["bf16"] = lambda: torch.autocast("cuda", dtype=torch.bfloat16)
    return contexts


def lmae_loss(out: dict) -> torch.Tensor:
    return out["loss"]


def regressor_loss(out: tuple) -> torch.Tensor:
    pred, aux = out
    return pred.float().sum() + aux["balance_loss"]


def train_step(
    model: torch.nn.Module, x: torch.Tensor, context: Callable, loss_of: Callable
) -> None:
    """One forward + backward pass (no optimiser step)."""
    model.zero_grad(set_to_none=True)
    with context():
        loss = loss_of(model(x))
    loss.backward()


def report_throughput(
    label: str,
    model: torch.nn.Module,
    x: torch.Tensor,
    loss_of: Callable,
    args: argparse.Namespace,
    device: torch.device,
) -> None:
    """Print forward + backward subjects/s of ``model`` on ``x`` at each precision."""
    for precision, context in precision_contexts(device).items():
        step = functools.partial(train_step, model, x, context, loss_of)
        seconds = seconds_per_call(step, args.iters, args.warmup, device)
        print(
            f"{label} B={len(x)} {precision:4s}: {len(x) / seconds:8.2f} subjects/s "
            f"({seconds * 1e3:8.1f} ms/step)"
        )


def bench_lmae(args: argparse.Namespace, device: torch.device) -> None:
    model = LocalMaskedAutoencoder(args.rois).to(device)
    x = torch.randn(args.batch, args.rois, args.lmae_len, device=device)
    report_throughput(f"LMAE R={args.rois} T={args.lmae_len}", model, x, lmae_loss, args, device)


def bench_regressor(args: argparse.Namespace, device: torch.device) -> None:
    backends = ["torch"] + (["cuda"] if device.type == "cuda" and cuda_selective_scan() else [])
    for length in args.regressor_lengths:
        x = torch.randn(args.batch, args.rois, length, device=device)
        for backend in backends:
            model = BrainRegressor(args.rois, 1, ssm_backend=backend).to(device)
            label = f"BrainRegressor R={args.rois} T={length} scan={backend}"
            report_throughput(label, model, x, regressor_loss, args, device)


def scan_forward_backward(scan: Callable, inputs: dict[str, torch.Tensor]) -> None:
    leaves = {k: v.detach().requires_grad_(k != "A") for k, v in inputs.items()}
    scan(**leaves, delta_softplus=True).sum().backward()


def bench_scans(args: argparse.Namespace, device: torch.device) -> None:
    scans = {"chunked": selective_scan, "loop": selective_scan_ref}
    if device.type == "cuda" and cuda_selective_scan():
        scans["mamba_ssm"] = cuda_selective_scan()
    b, d, n = args.scan_batch, args.d_inner, args.d_state
    for length in args.scan_lengths:
        inputs = {
            "u": torch.randn(b, d, length, device=device),
            "delta": torch.randn(b, d, length, device=device) - 2.0,
            "A": -torch.arange(1.0, n + 1, device=device).repeat(d, 1),
            "B": torch.randn(b, n, length, device=device),
            "C": torch.randn(b, n, length, device=device),
            "D": torch.ones(d, device=device),
            "z": torch.randn(b, d, length, device=device),
        }
        forward, backward = [], []
        for name, scan in scans.items():
            iters = 1 if name == "loop" else args.iters
            with torch.no_grad():
                call = functools.partial(scan, **inputs, delta_softplus=True)
                forward.append(f"{name} {seconds_per_call(call, iters, 1, device) * 1e3:8.1f} ms")
            if name != "loop" or length <= args.loop_backward_max:
                call = functools.partial(scan_forward_backward, scan, inputs)
                backward.append(f"{name} {seconds_per_call(call, iters, 1, device) * 1e3:8.1f} ms")
        shape = f"B={b} D={d} N={n} L={length:5d}"
        print(f"scan fwd     {shape}: " + " | ".join(forward))
        print(f"scan fwd+bwd {shape}: " + " | ".join(backward))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)"
    )
    parser.add_argument("--rois", type=int, default=100)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lmae-len", type=int, default=128, help="LMAE window (training crop)")
    parser.add_argument("--regressor-lengths", type=int, nargs="+", default=[128, 261])
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--scan-lengths", type=int, nargs="+", default=[256, 1024, 4096])
    parser.add_argument("--scan-batch", type=int, default=2)
    parser.add_argument("--d-inner", type=int, default=256)
    parser.add_argument("--d-state", type=int, default=16)
    parser.add_argument(
        "--loop-backward-max", type=int, default=1024, help="longest L for the loop's fwd+bwd"
    )
    parser.add_argument("--skip", nargs="*", default=[], choices=["lmae", "regressor", "scan"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    print(f"device={device} threads={torch.get_num_threads()} torch={torch.__version__}")
    for name, bench in {
        "lmae": bench_lmae,
        "regressor": bench_regressor,
        "scan": bench_scans,
    }.items():
        if name not in args.skip:
            bench(args, device)


if __name__ == "__main__":
    main()
