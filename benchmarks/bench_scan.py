"""Selective scans: the pure-PyTorch chunked scan, the sequential loop and mamba-ssm's kernel.

Forward and forward + backward milliseconds at each length; mamba-ssm only where it is
installed and the device is CUDA. Run through ``bench_models.py --sections scan``.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable

import torch
from measure import seconds_per_call

from brainlit.models import selective_scan, selective_scan_ref
from brainlit.models.ssm import cuda_selective_scan


def scan_inputs(
    batch: int, d: int, n: int, length: int, device: torch.device
) -> dict[str, torch.Tensor]:
    """Selective-scan arguments in mamba-ssm's layout (``u, delta, z: [B, D, L]`` ...)."""
    return {
        "u": torch.randn(batch, d, length, device=device),
        "delta": torch.randn(batch, d, length, device=device) - 2.0,
        "A": -torch.arange(1.0, n + 1, device=device).repeat(d, 1),
        "B": torch.randn(batch, n, length, device=device),
        "C": torch.randn(batch, n, length, device=device),
        "D": torch.ones(d, device=device),
        "z": torch.randn(batch, d, length, device=device),
    }


def scan_forward_backward(scan: Callable, inputs: dict[str, torch.Tensor]) -> None:
    leaves = {k: v.detach().requires_grad_(k != "A") for k, v in inputs.items()}
    scan(**leaves, delta_softplus=True).sum().backward()


def bench_scans(args: argparse.Namespace, device: torch.device) -> list[dict]:
    """fwd and fwd+bwd ms of each scan implementation at each length."""
    scans = {"torch_chunked": selective_scan, "torch_loop": selective_scan_ref}
    if device.type == "cuda" and cuda_selective_scan():
        scans["mamba_ssm"] = cuda_selective_scan()
    rows = []
    for length in args.scan_lengths:
        inputs = scan_inputs(args.scan_batch, args.d_inner, args.d_state, length, device)
        for name, scan in scans.items():
            iters = 1 if name == "torch_loop" else args.iters
            with torch.no_grad():
                forward = seconds_per_call(
                    functools.partial(scan, **inputs, delta_softplus=True), iters, 1, device
                )
            backward = None
            if name != "torch_loop" or length <= args.loop_backward_max:
                backward = seconds_per_call(
                    functools.partial(scan_forward_backward, scan, inputs), iters, 1, device
                )
            rows.append(
                {
                    "section": "scan",
                    "scan": name,
                    "length": length,
                    "batch": args.scan_batch,
                    "d_inner": args.d_inner,
                    "d_state": args.d_state,
                    "fwd_ms": 1e3 * forward,
                    "fwd_bwd_ms": None if backward is None else 1e3 * backward,
                    "status": "ok",
                }
            )
            print(f"scan {name:13s} L={length:5d}: fwd {rows[-1]['fwd_ms']:8.2f} ms", flush=True)
    return rows
