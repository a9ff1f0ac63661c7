"""Training-step speed and memory of the brainlit models, the selective scans and data loading.

Sections (``--sections``, all by default):

- ``models``: one optimiser step (forward, backward, AdamW) of ``LocalMaskedAutoencoder`` and
  ``BrainRegressor`` at default sizes, for every R (``--rois``), window length T
  (``--lengths``: the time points the model sees; ``fit`` trains and evaluates on
  ``crop_len``-point windows, 128 in the shipped configs), encoder attention and precision.
  Reports ms/step, subjects/s and peak memory (see the table's note for what is measured).
  On a CPU the batch is reduced where a step would exceed ``--cpu-gflop`` (the table says so);
  ``--cpu-gflop 0`` keeps the requested batch. On CUDA with mamba-ssm the regressor also
  runs with its kernels (column ``scan``).
- ``scan``: the pure-PyTorch chunked scan against the sequential loop and, when installed
  and on CUDA, mamba-ssm's fused kernel.
- ``loader``: the data-loading share of a training step (Lightning's SimpleProfiler) on a
  small simulated, cached cohort.

Results go to ``<out>.json`` and ``<out>.md``; the table is printed. Never run as a test::

    python benchmarks/bench_models.py                    # everything, default sizes
    python benchmarks/bench_models.py --quick            # seconds: tiny sizes (CI smoke run)
    python benchmarks/bench_models.py --sections models --models regressor --rois 400 \\
        --lengths 128 --cpu-gflop 0 --iters 1            # the factorised-vs-joint comparison
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import os
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from brainlit.models import BrainRegressor, LocalMaskedAutoencoder, PatchEncoder
from brainlit.models.ssm import cuda_selective_scan

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scan import bench_scans  # noqa: E402
from measure import PeakMemory, describe_device, seconds_per_call, write_results  # noqa: E402
from tables import render, speedups  # noqa: E402

QUICK = {  # tiny sizes: the whole run takes seconds on a CPU
    "rois": [16, 32], "lengths": [32], "batch": 2, "iters": 1, "warmup": 1, "d_model": 16,
    "depth": 1, "scan_lengths": [64], "loader_subjects": 8, "loader_rois": 8,
    "loader_volumes": 40, "loader_crop": 32, "loader_batch": 2, "loader_batches": 3,
    "loader_workers": [0], "loader_encoder": {"d_model": 16, "depth": 1, "n_heads": 2},
    "threads": 1,  # tiny steps: a second thread on a busy machine only waits
}  # fmt: skip


def build_model(
    name: str, rois: int, attention: str, scan: str, args: argparse.Namespace
) -> torch.nn.Module:
    """LMAE or regressor at default sizes (``--d-model``/``--depth`` override for quick runs)."""
    sizes = {"d_model": args.d_model, "depth": args.depth, "attention": attention}
    if args.d_model < 64:
        sizes["n_heads"] = 2
    if name == "lmae":
        return LocalMaskedAutoencoder(PatchEncoder(rois, **sizes))
    return BrainRegressor(PatchEncoder(rois, **sizes), 1, ssm_backend=scan)


def step_loss(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The training loss of either model (the regressor regresses zeros plus the balance loss)."""
    if isinstance(model, LocalMaskedAutoencoder):
        return model(x)["loss"]
    pred, aux = model(x)
    return pred.float().pow(2).mean() + 0.01 * aux["balance_loss"]


def optimiser_step(
    model: torch.nn.Module,
    optimiser: torch.optim.Optimizer,
    x: torch.Tensor,
    autocast: Callable[[], contextlib.AbstractContextManager],
) -> None:
    """Forward, backward and one AdamW step."""
    optimiser.zero_grad(set_to_none=True)
    with autocast():
        loss = step_loss(model, x)
    loss.backward()
    optimiser.step()


def cpu_batch(
    requested: int, rois: int, length: int, attention: str, args: argparse.Namespace
) -> int:
    """The batch whose estimated step cost stays within ``--cpu-gflop`` (at least 1)."""
    if args.cpu_gflop <= 0:
        return requested
    tokens, patches = rois * (length // 8), length // 8
    pairs = tokens * tokens if attention == "joint" else tokens * (rois + patches)
    gflop_per_subject = (
        6 * args.depth * (tokens * 16 * args.d_model**2 + 4 * pairs * args.d_model) / 1e9
    )
    return max(1, min(requested, int(args.cpu_gflop // gflop_per_subject)))


def precisions(device: torch.device, names: list[str]) -> dict[str, Callable]:
    """Autocast context factories by name: fp32 (none) and bf16."""
    table = {
        "fp32": contextlib.nullcontext,
        "bf16": functools.partial(torch.autocast, device.type, dtype=torch.bfloat16),
    }
    return {name: table[name] for name in names}


def run_case(case: dict, args: argparse.Namespace, device: torch.device) -> dict:
    """Time one (model, attention, R, T, precision, scan) case; errors become the row's status."""
    model = x = optimiser = None
    row = dict(case, section="models", tokens=case["rois"] * (case["length"] // 8), status="ok")
    try:
        torch.manual_seed(0)
        model = build_model(case["model"], case["rois"], case["attention"], case["scan"], args)
        model = model.to(device)
        optimiser = torch.optim.AdamW(model.parameters(), lr=1e-4)
        x = torch.randn(case["batch"], case["rois"], case["length"], device=device)
        autocast = precisions(device, [case["precision"]])[case["precision"]]
        step = functools.partial(optimiser_step, model, optimiser, x, autocast)
        with PeakMemory(device) as memory:
            seconds = seconds_per_call(step, args.iters, args.warmup, device)
        row.update(
            ms_per_step=1e3 * seconds, subjects_per_s=case["batch"] / seconds, peak_mib=memory.mib
        )
    except (RuntimeError, ValueError) as error:  # out of memory, a missing kernel, ...
        status = "oom" if "out of memory" in str(error) else "error"
        row.update(status=status, note=f"{status}: {str(error).splitlines()[0][:120]}")
    finally:
        del model, x, optimiser
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return row


def model_cases(args: argparse.Namespace, device: torch.device) -> list[dict]:
    """Every combination asked for, with the batch each one gets."""
    scans = ["torch"] + (["cuda"] if device.type == "cuda" and cuda_selective_scan() else [])
    cases = []
    for name in args.models:
        for rois in args.rois:
            for length in args.lengths:
                for attention in args.attention:
                    batch = (
                        args.batch
                        if device.type == "cuda"
                        else cpu_batch(args.batch, rois, length, attention, args)
                    )
                    note = (
                        f"CPU: batch {batch} instead of {args.batch}" if batch != args.batch else ""
                    )
                    for precision in args.precisions:
                        for scan in scans if name == "regressor" else ["-"]:
                            cases.append(
                                {
                                    "model": name,
                                    "attention": attention,
                                    "rois": rois,
                                    "length": length,
                                    "batch": batch,
                                    "precision": precision,
                                    "scan": scan,
                                    "note": note,
                                }
                            )
    return cases


def bench_models(
    args: argparse.Namespace, device: torch.device, rows: list[dict], save: Callable[[], None]
) -> None:
    """Run every model case, printing and saving each row as it finishes."""
    for case in model_cases(args, device):
        row = run_case(case, args, device)
        rows.append(row)
        save()
        print(
            f"{row['model']:9s} {row['attention']:10s} R={row['rois']:3d} T={row['length']:3d} "
            f"B={row['batch']:2d} {row['precision']} scan={row['scan']}: "
            + (
                f"{row['ms_per_step']:9.1f} ms/step {row['subjects_per_s']:7.2f} subjects/s"
                if row["status"] == "ok"
                else row["status"] + " " + row.get("note", "")
            ),
            flush=True,
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--quick", action="store_true", help="tiny sizes, one step each: a smoke run of seconds")
    add(
        "--sections",
        nargs="+",
        default=["models", "scan", "loader"],
        choices=["models", "scan", "loader"],
    )
    add("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    add("--threads", type=int, default=os.cpu_count(), help="CPU threads (torch.set_num_threads)")
    add("--models", nargs="+", default=["lmae", "regressor"], choices=["lmae", "regressor"])
    add("--rois", type=int, nargs="+", default=[100, 200, 400])
    add(
        "--lengths",
        type=int,
        nargs="+",
        default=[128, 261],
        help="time points per window the model sees",
    )
    add("--attention", nargs="+", default=["factorized", "joint"], choices=["factorized", "joint"])
    add(
        "--precisions",
        nargs="+",
        choices=["fp32", "bf16"],
        help="default: fp32 bf16 on CUDA, fp32 on a CPU",
    )
    add("--batch", type=int, default=16)
    add(
        "--cpu-gflop",
        type=float,
        default=500.0,
        help="CPU: reduce the batch above this estimated step cost (0: never)",
    )
    add("--d-model", type=int, default=128)
    add("--depth", type=int, default=4)
    add("--iters", type=int, default=2)
    add("--warmup", type=int, default=1)
    add("--scan-lengths", type=int, nargs="+", default=[256, 1024, 4096])
    add("--scan-batch", type=int, default=2)
    add("--d-inner", type=int, default=256)
    add("--d-state", type=int, default=16)
    add("--loop-backward-max", type=int, default=1024, help="longest L for the loop's fwd+bwd")
    add("--loader-subjects", type=int, default=24)
    add("--loader-rois", type=int, default=100)
    add("--loader-volumes", type=int, default=150)
    add("--loader-crop", type=int, default=128)
    add("--loader-batch", type=int, default=8)
    add("--loader-batches", type=int, default=6)
    add("--loader-workers", type=int, nargs="+", default=[0, 2])
    add(
        "--out",
        type=Path,
        default=Path("benchmarks/results/models"),
        help="writes OUT.json and OUT.md",
    )
    args = parser.parse_args(argv)
    args.loader_encoder = {}
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    if args.precisions is None:
        args.precisions = ["fp32", "bf16"] if args.device.startswith("cuda") else ["fp32"]
    return args


def main(argv: list[str] | None = None) -> dict:
    """Run the sections asked for; the JSON and markdown are rewritten after every result."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.set_float32_matmul_precision("high")  # as `python -m brainlit` sets it: TF32 on GPUs
    device = torch.device(args.device)
    meta = describe_device(device)
    print(
        f"device={device} ({meta['name']}) threads={meta['threads']} torch={meta['torch']}",
        flush=True,
    )
    scan_note = (
        "mamba-ssm: compared."
        if device.type == "cuda" and cuda_selective_scan()
        else "mamba-ssm: skipped ("
        + ("not installed" if cuda_selective_scan() is None else "needs CUDA")
        + ")."
    )
    rows: list[dict] = []
    payload = {
        "meta": meta,
        "args": {k: v for k, v in vars(args).items() if k != "out"},
        "scan_note": scan_note,
        "results": rows,
    }

    def save() -> tuple[Path, Path]:
        payload["speedups"] = speedups(rows)
        return write_results(args.out, payload, render(meta, rows, scan_note))

    if "models" in args.sections:
        bench_models(args, device, rows, save)
    if "scan" in args.sections:
        rows += bench_scans(args, device)
        save()
    if "loader" in args.sections:
        from bench_loader import profile_loading

        rows += profile_loading(args, device)
    json_path, md_path = save()
    print("\n" + md_path.read_text() + f"\nWritten: {json_path} {md_path}")
    return payload


if __name__ == "__main__":
    main()
