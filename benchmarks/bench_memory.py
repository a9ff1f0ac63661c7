"""Where a fine-tuning step's memory goes, and the largest batch that fits a memory budget.

Builds the ``RegressionTask`` of a fine-tuning config (``model.init_args``, no pretrained
weights: the memory is the same) for R ROIs and runs of T volumes, then, for each activation
checkpointing setting (``--checkpoint``):

- **kept for backward**: the distinct storages autograd saves during a training forward on
  ``crop_len`` windows, by component (encoder attention across ROIs, across time, MLP; RWMOE;
  SSM; ROI pooling; read-out; head). This is what grows with the batch.
- **phases**: peak memory added by the forward, the backward, the AdamW step, and the
  evaluation of ``batch`` whole runs in sliding windows (``eval_windows`` at a time), each
  measured on its own (see ``measure.PeakMemory``: CUDA max allocated, or the growth of the
  process's peak RSS on a CPU).
- **largest batch** within ``--memory-budget``: the process's peak (CPU: peak RSS; CUDA:
  max allocated) at batch ``b`` and ``2b`` gives a line; its crossing with the budget is then
  checked with one training step at that batch and stepped down until it fits.

    python benchmarks/bench_memory.py                          # Cam-CAN config, 400 ROIs, T 261
    python benchmarks/bench_memory.py --memory-budget 8GiB --checkpoint false true
    python benchmarks/bench_memory.py --quick                  # seconds: tiny sizes

Results go to ``<out>.json`` and ``<out>.md``. Never run as a test.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import math
import multiprocessing
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
import yaml

from brainlit.tasks import EncoderSpec, RegressionTask

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import PeakMemory, describe_device, markdown_table, proc_status, write_results  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
# module name pattern -> component; the innermost matching module wins
COMPONENTS = [
    (r"encoder\.patch_proj", "encoder: patch embedding"),
    (r"encoder\.transformer\.blocks\.\d+\.(attn|norm)_space", "encoder: attention across ROIs"),
    (r"encoder\.transformer\.blocks\.\d+\.(attn|norm)_time", "encoder: attention across time"),
    (r"encoder\.transformer\.blocks\.\d+\.(mlp|norm_mlp)", "encoder: MLP"),
    (r"encoder\.transformer\.blocks\.\d+", "encoder: residual dropout"),
    (r"moe\.experts", "RWMOE: experts"),
    (r"moe\.graph_embed", "RWMOE: graph encoding"),
    (r"moe", "RWMOE: walk, gate, norm"),
    (r"roi_pool", "ROI pooling"),
    (r"ssm\.\d+", "SSM"),
    (r"(head|norm)", "head"),
]
OTHER = "other (FC, loss)"
UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def parse_bytes(text: str) -> int:
    """``8GiB``, ``8G``, ``512MiB`` or a plain byte count -> bytes."""
    match = re.fullmatch(r"\s*([\d.]+)\s*([kmgt]?)(i?b)?\s*", text.lower())
    if not match:
        raise argparse.ArgumentTypeError(f"not a memory size: {text!r} (e.g. 8GiB, 512MiB)")
    return int(float(match.group(1)) * UNITS[match.group(2)])


def build_task(config: Path, rois: int, checkpoint: bool) -> RegressionTask:
    """The config's RegressionTask for ``rois`` ROIs, without pretrained weights."""
    settings = yaml.safe_load(config.read_text())
    args, data = dict(settings["model"]["init_args"]), settings.get("data", {})
    args.pop("pretrained", None)
    args["encoder"] = EncoderSpec(**{**args.get("encoder", {}), "checkpoint": checkpoint})
    return RegressionTask(n_rois=rois, target_names=list(data.get("targets", ["age"])),
                          crop_len=data.get("crop_len", 128), **args)


def isolated(fn: Callable, *args: object) -> object:
    """``fn(*args)`` in a fresh process: a peak RSS read after an earlier, larger step would only
    show the heap the allocator kept from it."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def precision_context(precision: str, device: torch.device) -> Callable[[], contextlib.AbstractContextManager]:
    """Autocast as Lightning's ``bf16-mixed`` does, or nothing for ``32-true``."""
    if precision.startswith("bf16"):
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext


@contextlib.contextmanager
def kept_by_component(model: torch.nn.Module) -> Iterator[Counter]:
    """Count the bytes of distinct storages autograd saves, by :data:`COMPONENTS` label."""
    stack, storages, handles = [], {}, []

    def leave(module: torch.nn.Module, inputs: tuple, output: object) -> None:
        stack.pop()

    for name, module in model.named_modules():
        label = next((lab for pattern, lab in COMPONENTS if re.fullmatch(pattern, name)), None)
        if label:
            handles.append(module.register_forward_pre_hook(lambda m, a, lab=label: stack.append(lab) and None))
            handles.append(module.register_forward_hook(leave))

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        if not isinstance(tensor, torch.nn.Parameter):
            storage = tensor.untyped_storage()
            storages.setdefault(storage.data_ptr(), (stack[-1] if stack else OTHER, storage.nbytes()))
        return tensor

    counts: Counter = Counter()
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            yield counts
    finally:
        for handle in handles:
            handle.remove()
        for label, nbytes in storages.values():
            counts[label] += nbytes


def process_peak(device: torch.device) -> float | None:
    """Peak of the whole process in MiB: CUDA max allocated, or the peak RSS (Linux)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak = proc_status("VmHWM")
    return None if peak is None else peak / 2**20


def reset_peak(device: torch.device) -> None:
    """Start a new peak: CUDA peak stats, or peak RSS := current RSS."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        return
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def loss_of(task: RegressionTask, x: torch.Tensor) -> torch.Tensor:
    """The training loss on zero targets: task loss, balance loss and, with one, the direct head's."""
    pred, aux = task.model(x)
    loss = pred.float().pow(2).mean() + task.hparams.aux_weight * aux["balance_loss"]
    direct = aux.get("direct")
    return loss if direct is None else loss + direct.float().pow(2).mean()


def phases(args: argparse.Namespace, checkpoint: bool) -> dict:
    """Kept-for-backward bytes by component and each phase's peak, after one warm-up step."""
    task, device = setup(args, checkpoint)
    batch, rois, length, precision = args.batch, args.rois, args.length, args.precision
    autocast = precision_context(precision, device)
    optimiser = torch.optim.AdamW([p for p in task.parameters() if p.requires_grad], lr=1e-4)
    x = torch.randn(batch, rois, task.hparams.crop_len, device=device)
    task.train()
    for _ in range(2):  # the first step allocates the optimiser state
        optimiser.zero_grad(set_to_none=True)
        with PeakMemory(device) as forward, kept_by_component(task.model) as kept, autocast():
            loss = loss_of(task, x)
        with PeakMemory(device) as backward:
            loss.backward()
        with PeakMemory(device) as step:
            optimiser.step()
        del loss
    optimiser.zero_grad(set_to_none=True)
    task.eval()
    runs = torch.randn(batch, rois, length, device=device)
    with PeakMemory(device) as evaluation, torch.no_grad(), autocast():
        task.predict_runs(runs)
    return {"eval_windows": task.hparams.eval_windows, "crop_len": task.hparams.crop_len, "kept": dict(kept), "forward": forward.mib, "backward": backward.mib,
            "optimiser": step.mib, "evaluation": evaluation.mib}


def setup(args: argparse.Namespace, checkpoint: bool) -> tuple[RegressionTask, torch.device]:
    """Threads, seed and the task on its device."""
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    task = build_task(args.config, args.rois, checkpoint).to(device)
    if args.eval_windows is not None:
        task.hparams.eval_windows = args.eval_windows
    return task, device


def step_peak(args: argparse.Namespace, checkpoint: bool, batch: int) -> float | None:
    """The process's peak MiB during one training step at ``batch`` (optimiser state included)."""
    task, device = setup(args, checkpoint)
    rois, precision = args.rois, args.precision
    autocast = precision_context(precision, device)
    optimiser = torch.optim.AdamW([p for p in task.parameters() if p.requires_grad], lr=1e-4)
    task.train()
    x = torch.randn(batch, rois, task.hparams.crop_len, device=device)
    reset_peak(device)
    with autocast():
        loss = loss_of(task, x)
    loss.backward()
    optimiser.step()
    return process_peak(device)


def largest_batch(args: argparse.Namespace, checkpoint: bool, start: int = 2, most: int = 256) -> dict:
    """The largest training batch (up to ``most``) whose step peak stays within the budget.

    Peaks at ``start`` and ``2 * start`` give a line; each batch it predicts is checked with
    one step, and the line is redrawn through the two largest batches measured (secant steps:
    the allocator's share per subject shrinks as batches grow, so a first line undershoots).
    """
    budget_mib = args.memory_budget / 2**20
    points = {b: isolated(step_peak, args, checkpoint, b) for b in (start, 2 * start)}
    if None in points.values():
        return {"status": "no memory figures on this platform"}
    for _ in range(5):
        fit = sorted(b for b, p in points.items() if p <= budget_mib)
        over = sorted(b for b, p in points.items() if p > budget_mib)
        b1, b2 = (fit[-1], over[0]) if fit and over else sorted(points)[-2:]
        p1, p2 = points[b1], points[b2]
        per_subject = max((p2 - p1) / (b2 - b1), 1e-6)
        guess = min(most, max(1, b1 + math.floor((budget_mib - p1) / per_subject)))
        if fit and over:
            guess = min(max(guess, b1 + 1), b2 - 1)
        if guess in points or guess < 1:
            break
        points[guess] = isolated(step_peak, args, checkpoint, guess)
    batch = max((b for b, p in points.items() if p <= budget_mib), default=0)
    return {"batch": batch, "checked_peak_mib": points.get(batch), "mib_per_subject": per_subject,
            "steps_measured": len(points)}


def measure(args: argparse.Namespace) -> list[dict]:
    """One row per checkpointing setting, each phase and step in a process of its own."""
    rows = []
    for checkpoint in args.checkpoint:
        row = {"checkpoint": checkpoint, "rois": args.rois, "length": args.length, "batch": args.batch,
               "precision": args.precision, **isolated(phases, args, checkpoint)}
        if args.memory_budget:
            row["budget"] = largest_batch(args, checkpoint)
        rows.append(row)
        print(render_row(row), flush=True)
    return rows


def render_row(row: dict) -> str:
    """One line per setting for the console."""
    line = (f"checkpoint={row['checkpoint']}: kept {sum(row['kept'].values()) / 2**20:.0f} MiB; "
            f"forward +{row['forward'] or 0:.0f}, backward +{row['backward'] or 0:.0f}, "
            f"AdamW +{row['optimiser'] or 0:.0f}, evaluation +{row['evaluation'] or 0:.0f} MiB")
    budget = row.get("budget", {})
    return line + (f"; largest batch {budget['batch']}" if "batch" in budget else "")


def render(meta: dict, rows: list[dict], args: argparse.Namespace) -> str:
    """The markdown report: the breakdown, the phases and the budget."""
    labels = [label for _, label in COMPONENTS] + [OTHER]
    kept = [{"component": label, **{f"c{r['checkpoint']}": r["kept"].get(label, 0) / 2**20 for r in rows}}
            for label in labels if any(r["kept"].get(label) for r in rows)]
    kept.append({"component": "**total**", **{f"c{r['checkpoint']}": sum(r["kept"].values()) / 2**20 for r in rows}})
    setting = [(f"c{r['checkpoint']}", f"checkpoint {str(r['checkpoint']).lower()} (MiB)") for r in rows]
    phase_rows = [{"phase": name, **{f"c{r['checkpoint']}": r[key] for r in rows}} for name, key in (
        ("forward (training)", "forward"), ("backward", "backward"), ("AdamW step", "optimiser"),
        (f"evaluation: {args.batch} whole runs, {rows[0]['eval_windows'] or 'all'} windows per pass", "evaluation"))]
    first = rows[0]
    parts = [
        f"# Memory of a fine-tuning step: {meta['name']} ({meta['device']}, {meta['threads']} threads, torch {meta['torch']})",
        "", f"`{args.config.relative_to(REPO) if args.config.is_relative_to(REPO) else args.config}`, R = {first['rois']}, runs of T = {first['length']}, training windows of "
        f"{first['crop_len']}, batch {first['batch']}, {first['precision']}. Peak memory: {meta['memory']}.", "",
        "## Kept for backward, by component", "", markdown_table(kept, [("component", "component"), *setting]), "",
        "## Peak added by each phase", "", markdown_table(phase_rows, [("phase", "phase"), *setting]), "",
    ]
    budgeted = [r for r in rows if "batch" in r.get("budget", {})]
    if budgeted:
        table = [{"checkpoint": r["checkpoint"], **r["budget"]} for r in budgeted]
        parts += [f"## Largest training batch within {args.memory_budget / 2**30:.3g} GiB", "",
                  "Process peak (model, optimiser state and one step) at batch b and 2b gives MiB per subject; "
                  "each batch that line predicts is checked with one step and the line redrawn through the "
                  "two largest batches measured.", "",
                  markdown_table(table, [("checkpoint", "checkpoint"), ("batch", "largest batch"),
                                         ("checked_peak_mib", "its peak MiB"), ("mib_per_subject", "MiB per subject"),
                                         ("steps_measured", "steps measured")]), ""]
    return "\n".join(parts)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--config", type=Path, default=REPO / "configs/camcan/finetune_age.yaml")
    add("--rois", type=int, default=400)
    add("--length", type=int, default=261, help="volumes per whole run (evaluation)")
    add("--batch", type=int, default=16)
    add("--precision", default=None, help="bf16-mixed or 32-true; default: the config's trainer.precision")
    add("--checkpoint", nargs="+", type=lambda s: s.lower() == "true", default=[False, True],
        help="activation checkpointing settings to measure (true / false)")
    add("--eval-windows", type=int, default=None, help="override the config's eval_windows")
    add("--memory-budget", type=parse_bytes, default=None, help="e.g. 8GiB: find the largest batch within it")
    add("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    add("--threads", type=int, default=None)
    add("--quick", action="store_true", help="tiny sizes: a smoke run of seconds")
    add("--out", type=Path, default=Path("benchmarks/results/memory"))
    args = parser.parse_args(argv)
    if args.quick:
        args.config, args.rois, args.length, args.batch = REPO / "configs/demo/finetune.yaml", 12, 160, 2
    if args.precision is None:
        trainer = yaml.safe_load(args.config.read_text()).get("trainer", {})
        args.precision = str(trainer.get("precision", "32-true"))
    return args


def main(argv: list[str] | None = None) -> list[dict]:
    """Measure, print and write ``<out>.json`` / ``<out>.md``."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    meta = describe_device(torch.device(args.device))
    rows = measure(args)
    markdown = render(meta, rows, args)
    payload = {"meta": meta, "args": {k: str(v) for k, v in vars(args).items()}, "results": rows}
    json_path, md_path = write_results(args.out, payload, markdown)
    print("\n" + markdown + f"\nWritten: {json_path} {md_path}")
    return rows


if __name__ == "__main__":
    main()
