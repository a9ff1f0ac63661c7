"""`make gpu-check DRY_RUN=1`: the GPU machine's check rehearsed on a CPU, summary and all."""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

from tests.conftest import REPO


def test_dry_run_writes_a_summary_with_every_step(tmp_path):
    out = tmp_path / "check"
    env = {k: v for k, v in os.environ.items() if k not in ("OUT", "MAKEFLAGS", "MFLAGS")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    if shutil.which("make"):
        command = [
            "make",
            "-s",
            "gpu-check",
            "DRY_RUN=1",
            f"GPU_PYTHON={sys.executable}",
            f"GPU_CHECK_OUT={out}",
        ]
    else:
        command = [sys.executable, "benchmarks/gpu_check.py", "--dry-run", "--out", str(out)]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    summary = json.loads((out / "gpu_check.json").read_text())
    steps = {s["name"]: s for s in summary["steps"]}
    assert summary["dry_run"] and summary["ok"] and summary["elapsed_s"] < summary["budget_s"]
    for name in (
        "install_wheels",
        "build_mamba",
        "bench_mamba",
        "gpu_tests",
    ):  # need the GPU machine
        assert steps[name]["status"] == "skipped", steps[name]
    for name in ("environment", "bench", "memory", "simulate_cohort", "demo_fit"):
        assert steps[name]["status"] == "ok", steps[name]
    assert steps["environment"]["modules"]["nilearn"] != "missing: ModuleNotFoundError"
    bench = steps["bench"]["figures"]
    assert bench["rows"] >= 8 and bench["failed_rows"] == 0
    assert {(s["model"], s["rois"]) for s in bench["speedups"]} == {
        ("lmae", 16),
        ("lmae", 32),
        ("regressor", 16),
        ("regressor", 32),
    }
    assert 0 < bench["loading_share"][0] < 1
    assert steps["memory"]["figures"]["checkpoint_false"]["kept_mib"] >= 0
    fit = steps["demo_fit"]["figures"]
    assert fit["epoch"] == 0 and fit["val/age/mae"] > 0 and fit["train/loss"] > 0
    assert steps["demo_fit"]["precision"] == "bf16-mixed"
    results = json.loads((out / "bench.json").read_text())
    assert results["meta"]["device"] == "cpu" and "VmHWM" in results["meta"]["memory"]
    assert "| regressor | joint |" in (out / "bench.md").read_text()
    assert "===== demo_fit" in (out / "gpu_check.log").read_text()


def test_steps_get_only_what_is_left_of_the_budget(tmp_path):
    sys.path.insert(0, str(REPO / "benchmarks"))
    import gpu_check

    args = argparse.Namespace(
        dry_run=True,
        out=tmp_path,
        budget=480.0,
        reserve=0.0,
        site=tmp_path / "site",
        site_mamba=tmp_path / "mamba",
    )
    check = gpu_check.Check(args)
    check.start = time.monotonic() - 477  # 3 s left: too little to start a step
    step, _ = check.run("too_long", [sys.executable, "-c", "print('ran')"], 60)
    assert step["status"] == "skipped" and step["reason"] == "no time left in the budget"
    check.start = time.monotonic() - 474  # 6 s left: the step is stopped when they are spent
    step, _ = check.run("sleeper", [sys.executable, "-c", "import time; time.sleep(30)"], 60)
    assert step["status"] == "timeout" and 5 < step["seconds"] < 8
    summary = json.loads((tmp_path / "gpu_check.json").read_text())
    assert [s["status"] for s in summary["steps"]] == ["skipped", "timeout"] and not summary["ok"]
    shutil.rmtree(check.work)
