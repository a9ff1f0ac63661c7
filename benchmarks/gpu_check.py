"""The GPU check: one command for a GPU machine without internet, done in under 8 minutes.

    make gpu-check                  # on the GPU machine (wheels from .whl/, see make gpu-wheels)
    make gpu-check DRY_RUN=1        # rehearsal on a CPU: tiny sizes, GPU-only steps skipped

Steps, each in its own process with a time limit, so one failure or hang does not stop the
others; all share one overall budget (``--budget``, 480 s):

1. ``install_wheels``: ``pip install --no-index --no-deps --target SITE .whl/*.whl``.
2. ``environment``: GPU, torch, CUDA, nvcc, and which of brainlit's dependencies import.
3. ``build_mamba`` (in the background): mamba-ssm's selective-scan kernels from the sdist
   in ``.whl/src``, compiled with nvcc for this GPU's architecture only, given what is left of
   the budget once the other steps are planned; reported as timed out when it does not fit.
4. ``bench``: ``bench_models.py`` at R = 100 and 400, T = 128 and 261, fp32 and bf16, both
   attentions, the scans and the data-loading share.
5. ``memory``: ``bench_memory.py`` at R = 400 with and without activation checkpointing: what a
   Cam-CAN fine-tuning step keeps, by component, and each phase's peak.
6. ``demo_fit``: one epoch of the demo regression in bf16-mixed on a small simulated cohort.
7. ``bench_mamba``: the regressor and scans again with mamba-ssm, when it was built.
8. ``gpu_tests``: ``pytest -m gpu`` (mamba-ssm vs torch-scan parity among them).

The summary (``gpu_check.json``: each step's status, seconds and figures), the benchmark
(``bench.json``/``bench.md``) and every step's output (``gpu_check.log``) go to ``--out``:
``$OUT`` when that variable is set, else ``runs/gpu-check``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TINY_MODEL = [
    '--model.init_args.encoder={"d_model": 16, "depth": 1, "n_heads": 2}',
    '--model.init_args.moe={"n_experts": 2, "expert_hidden": 8, "graph_topk": 4}',
    '--model.init_args.ssm={"layers": 1, "d_state": 4}',
]


class Check:
    """Runs steps as subprocesses within one budget and records what each did."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args, self.start = args, time.monotonic()
        self.out: Path = args.out
        self.out.mkdir(parents=True, exist_ok=True)
        self.work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
        self.log = (self.out / "gpu_check.log").open("w")
        self.steps: list[dict] = []
        paths = [str(args.site), str(args.site_mamba), str(REPO), os.environ.get("PYTHONPATH", "")]
        self.env = dict(
            os.environ, PYTHONPATH=os.pathsep.join(p for p in paths if p), PYTHONUNBUFFERED="1"
        )

    def left(self) -> float:
        """Seconds of the budget still unspent."""
        return self.args.budget - (time.monotonic() - self.start)

    def record(self, name: str, status: str, seconds: float = 0.0, **figures: object) -> dict:
        step = {"name": name, "status": status, "seconds": round(seconds, 1), **figures}
        self.steps.append(step)
        print(
            f"[gpu-check {time.monotonic() - self.start:5.0f} s] {name}: {status} ({seconds:.0f} s)"
            + (f" {figures}" if figures else ""),
            flush=True,
        )
        self.write_summary()
        return step

    def skip(self, name: str, reason: str) -> dict:
        return self.record(name, "skipped", reason=reason)

    def run(self, name: str, command: list[str], limit: float, **popen: object) -> tuple[dict, str]:
        """Run ``command`` with at most ``limit`` seconds (and no more than the budget left)."""
        limit = min(limit, self.left() - self.args.reserve)
        if limit < 5:
            return self.skip(name, "no time left in the budget"), ""
        self.log.write(f"\n===== {name}: {' '.join(command)}\n")
        self.log.flush()
        begin = time.monotonic()
        try:
            done = subprocess.run(
                command,
                cwd=REPO,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=limit,
                **popen,
            )
            output, status = done.stdout + done.stderr, "ok" if done.returncode == 0 else "failed"
            returncode = done.returncode
        except subprocess.TimeoutExpired as error:
            output = _text(error.stdout) + _text(error.stderr)
            status, returncode = "timeout", None
        self.log.write(output)
        self.log.flush()
        figures = {"returncode": returncode}
        if status != "ok":
            figures["tail"] = output.strip().splitlines()[-8:]
        return self.record(name, status, time.monotonic() - begin, **figures), output

    def write_summary(self) -> None:
        summary = {
            "dry_run": self.args.dry_run,
            "budget_s": self.args.budget,
            "elapsed_s": round(time.monotonic() - self.start, 1),
            "steps": self.steps,
            "ok": all(s["status"] in ("ok", "skipped") for s in self.steps),
        }
        (self.out / "gpu_check.json").write_text(json.dumps(summary, indent=2) + "\n")


def _text(raw: bytes | str | None) -> str:
    return raw.decode(errors="replace") if isinstance(raw, bytes) else raw or ""


def environment(check: Check) -> None:
    step, output = check.run("environment", [sys.executable, "benchmarks/gpu_env.py"], 120)
    match = re.search(r"^ENV(\{.*\})$", output, re.MULTILINE)
    if match:
        step.update(json.loads(match.group(1)))
        check.write_summary()


def install_wheels(check: Check) -> None:
    wheels = sorted((REPO / ".whl").glob("*.whl"))
    if check.args.dry_run:
        return check.skip("install_wheels", "dry run: the packages of this environment are used")
    if not wheels:
        return check.skip(
            "install_wheels", "no .whl/*.whl (run make gpu-wheels where there is internet)"
        )
    pip = "-m pip install -q --no-index --no-deps --no-compile --upgrade --target".split()
    command = [sys.executable, *pip, str(check.args.site), *map(str, wheels)]
    step, _ = check.run("install_wheels", command, 120)
    step["wheels"] = [w.name for w in wheels]


def start_mamba_build(check: Check, capability: str | None) -> subprocess.Popen | None:
    """Compile mamba-ssm's kernels in the background; returns the process, or None if skipped."""
    sdists = sorted((REPO / ".whl" / "src").glob("mamba_ssm-*.tar.gz"))
    if check.args.dry_run or not capability:
        check.skip("build_mamba", "dry run" if check.args.dry_run else "no GPU")
        return None
    if not sdists or not shutil.which("nvcc"):
        check.skip("build_mamba", "no mamba-ssm sdist in .whl/src" if not sdists else "no nvcc")
        return None
    source = check.work / "mamba"
    shutil.unpack_archive(sdists[-1], source)
    setup = next(source.glob("*/setup.py"))
    arch = capability.replace(".", "")
    text = setup.read_text().replace(  # build for this GPU only: minutes instead of an hour
        "    # HACK: The compiler flag",
        f'    cc_flag = ["-gencode", "arch=compute_{arch},code=sm_{arch}"]\n'
        "    # HACK: The compiler flag",
        1,
    )
    setup.write_text(text)
    jobs = str(max(1, (os.cpu_count() or 4) - 2))  # two cores stay with the benchmark
    env = dict(check.env, MAMBA_FORCE_BUILD="TRUE", MAX_JOBS=jobs, NVCC_THREADS="2")
    command = (
        f"{sys.executable} setup.py build_ext --inplace && "
        f"cp -r mamba_ssm selective_scan_cuda*.so {check.args.site_mamba}/"
    )
    check.args.site_mamba.mkdir(parents=True, exist_ok=True)
    check.log.write(f"\n===== build_mamba (background): {command}\n")
    check.mamba_started = time.monotonic()
    output = (check.work / "mamba.log").open("w")
    return subprocess.Popen(
        command,
        shell=True,
        cwd=setup.parent,
        env=env,
        stdout=output,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def finish_mamba_build(check: Check, build: subprocess.Popen | None, wait: float) -> bool:
    """Wait up to ``wait`` seconds for the build; True when mamba-ssm is ready to import."""
    if build is None:
        return False
    try:
        status = "ok" if build.wait(timeout=max(1.0, wait)) == 0 else "failed"
    except subprocess.TimeoutExpired:
        os.killpg(build.pid, signal.SIGKILL)  # the compilers too, not only the shell
        build.wait()
        status = "timeout"
    output = (check.work / "mamba.log").read_text(errors="replace")
    check.log.write(output)
    figures: dict = {}
    if status == "timeout":
        figures["note"] = "did not fit in the budget: mamba-ssm parity not run"
    if status == "failed":
        figures["tail"] = output.strip().splitlines()[-8:]
    check.record("build_mamba", status, time.monotonic() - check.mamba_started, **figures)
    return status == "ok"


def bench(check: Check, name: str, extra: list[str], limit: float) -> None:
    stem = check.out / name
    sizes = (
        ["--quick", "--threads", "1"]
        if check.args.dry_run
        else ["--rois", "100", "400", "--iters", "3"]
    )
    step, output = check.run(
        name,
        [sys.executable, "benchmarks/bench_models.py", *sizes, *extra, "--out", str(stem)],
        limit,
    )
    if stem.with_suffix(".json").is_file():
        results = json.loads(stem.with_suffix(".json").read_text())
        step["figures"] = {
            "rows": len(results["results"]),
            "failed_rows": sum(r["status"] != "ok" for r in results["results"]),
            "speedups": results["speedups"],
            "loading_share": [
                round(r["load_share"], 3) for r in results["results"] if r["section"] == "loader"
            ],
        }
        check.write_summary()


def memory(check: Check, limit: float) -> None:
    stem = check.out / "memory"
    sizes = ["--quick", "--checkpoint", "false", "--threads", "1"] if check.args.dry_run else []
    step, _ = check.run(
        "memory", [sys.executable, "benchmarks/bench_memory.py", *sizes, "--out", str(stem)], limit
    )
    if stem.with_suffix(".json").is_file():
        rows = json.loads(stem.with_suffix(".json").read_text())["results"]
        step["figures"] = {
            f"checkpoint_{str(r['checkpoint']).lower()}": {
                "kept_mib": round(sum(r["kept"].values()) / 2**20),
                **{k: r[k] and round(r[k]) for k in ("forward", "backward", "evaluation")},
            }
            for r in rows
        }
        check.write_summary()


def demo_fit(check: Check) -> None:
    dry = check.args.dry_run
    cohort = check.work / "cohort"
    n_subjects, n_rois, n_volumes, crop = (16, 8, 80, 64) if dry else (96, 32, 150, 144)
    jobs = "1" if dry else "8"  # starting 8 workers costs more than it saves on a small CPU
    simulate = (
        f"from brainlit.data.simulate import simulate_cohort; simulate_cohort({str(cohort)!r}, "
        f"n_subjects={n_subjects}, n_rois={n_rois}, n_volumes={n_volumes}, n_jobs={jobs})"
    )
    step, _ = check.run("simulate_cohort", [sys.executable, "-c", simulate], 90)
    if step["status"] != "ok":
        return check.skip("demo_fit", "no cohort")
    command = [
        sys.executable,
        "-m",
        "brainlit",
        "fit",
        "--config",
        "configs/demo/finetune.yaml",
        "--model.init_args.encoder_lr_scale",
        "1.0",  # no pretrained encoder here: it must train
        "--data.root",
        str(cohort),
        "--data.atlas",
        str(cohort / "atlas.nii.gz"),
        "--data.cache_path",
        str(check.work / "cache.h5"),
        "--data.crop_len",
        str(crop),
        "--data.min_timepoints",
        str(crop),
        "--data.n_jobs",
        jobs,
        "--trainer.max_epochs",
        "1",
        "--trainer.check_val_every_n_epoch",
        "1",
        "--trainer.log_every_n_steps",
        "1",
        "--trainer.precision",
        "bf16-mixed",
        "--trainer.accelerator",
        "cpu" if dry else "gpu",
        "--trainer.devices",
        "1",
        "--trainer.logger",
        "lightning.pytorch.loggers.CSVLogger",
        "--trainer.logger.save_dir",
        str(check.work / "fit"),
        "--trainer.default_root_dir",
        str(check.work / "fit"),
        "--trainer.enable_progress_bar",
        "false",
        *(TINY_MODEL if dry else []),
    ]
    step, output = check.run("demo_fit", command, 240)
    metrics = sorted((check.work / "fit").rglob("metrics.csv"))
    if metrics:
        import csv

        rows = list(csv.DictReader(metrics[-1].open()))
        last = {k: v for row in rows for k, v in row.items() if v not in ("", None)}
        step["figures"] = {
            k: float(v)
            for k, v in last.items()
            if k.startswith(("val/", "train/loss", "epoch", "step"))
        }
        step["precision"] = "bf16-mixed"
        check.write_summary()


def gpu_tests(check: Check) -> None:
    if check.args.dry_run:
        return check.skip("gpu_tests", "dry run: the gpu-marked tests need CUDA")
    report = check.work / "junit.xml"
    step, output = check.run(
        "gpu_tests",
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-m",
            "gpu",
            "-p",
            "no:cacheprovider",
            "-rs",
            f"--junitxml={report}",
            "tests",
        ],
        150,
    )
    if report.is_file():
        text = report.read_text()
        counts = re.search(
            r'<testsuite [^>]*errors="(\d+)" failures="(\d+)" skipped="(\d+)" tests="(\d+)"', text
        )
        if counts:
            errors, failures, skipped, tests = map(int, counts.groups())
            step["tests"] = {
                "passed": tests - errors - failures - skipped,
                "failed": failures + errors,
                "skipped": skipped,
            }
        step["skip_reasons"] = sorted(set(re.findall(r"SKIPPED \[\d+\] [^:]+:\d+: (.*)", output)))
        check.write_summary()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dry-run", action="store_true", help="CPU rehearsal: tiny sizes, GPU-only steps skipped"
    )
    parser.add_argument(
        "--out", type=Path, default=Path(os.environ.get("OUT") or REPO / "runs" / "gpu-check")
    )
    parser.add_argument("--budget", type=float, default=480.0, help="seconds for the whole check")
    parser.add_argument(
        "--reserve", type=float, default=5.0, help="seconds kept back for the summary"
    )
    parser.add_argument(
        "--site", type=Path, default=Path("/tmp/site"), help="where the wheels are installed"
    )
    parser.add_argument("--site-mamba", type=Path, default=Path("/tmp/site-mamba"))
    args = parser.parse_args(argv)
    check = Check(args)
    install_wheels(check)
    environment(check)
    capability = next(
        (s.get("capability") for s in check.steps if s["name"] == "environment"), None
    )
    build = start_mamba_build(check, capability)
    bench(check, "bench", [], 200)
    memory(check, 150)
    demo_fit(check)
    if finish_mamba_build(check, build, check.left() - check.args.reserve - 150):
        extra = "--sections models scan --models regressor --attention factorized --lengths 128"
        bench(check, "bench_mamba", extra.split(), 60)
    else:
        check.skip("bench_mamba", "dry run" if args.dry_run else "mamba-ssm was not built")
    gpu_tests(check)
    check.write_summary()
    shutil.rmtree(check.work, ignore_errors=True)
    print(f"Summary: {check.out / 'gpu_check.json'}")
    return 0 if all(s["status"] in ("ok", "skipped") for s in check.steps) else 1


if __name__ == "__main__":
    sys.exit(main())
