"""`torchrun --nproc_per_node 2 -m brainlit fit ...`: one DDP run over two CPU processes (gloo)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd

from tests.conftest import REPO
from tests.test_cli import CONFIGS, data_args, small_model


def torchrun() -> list[str]:
    """The torchrun script installed with torch, or its module where there is no script."""
    script = Path(sys.executable).with_name("torchrun")
    found = str(script) if script.is_file() else shutil.which("torchrun")
    return [found] if found else [sys.executable, "-m", "torch.distributed.run"]


def test_torchrun_two_processes_train_one_model_with_gloo(tiny_bids, tmp_path):
    command = [
        *torchrun(),
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "brainlit",
        "fit",
        "--config",
        str(CONFIGS / "finetune_age.yaml"),
        *data_args(tiny_bids, tmp_path / "cache.h5"),
        *small_model("finetune"),
        "--trainer.accelerator",
        "cpu",
        "--trainer.devices",
        "2",
        "--trainer.strategy",
        "ddp",
        "--trainer.precision",
        "32-true",
        "--trainer.max_epochs",
        "1",
        "--trainer.check_val_every_n_epoch",
        "1",
        "--trainer.limit_train_batches",
        "2",
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.logger",
        "lightning.pytorch.loggers.CSVLogger",
        "--trainer.logger.save_dir",
        str(tmp_path / "csv"),
        "--trainer.default_root_dir",
        str(tmp_path),
    ]
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    )
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-3000:]
    # one process group of two members, made by torchrun (Lightning spawned nothing itself)
    assert "MEMBER: 1/2" in log and "MEMBER: 2/2" in log and "distributed_backend=gloo" in log
    runs = sorted((tmp_path / "csv").glob("*/version_*"))
    assert len(runs) == 1, runs  # not two independent single-process runs
    metrics = pd.read_csv(runs[0] / "metrics.csv")
    assert metrics["val/loss"].notna().any() and (runs[0] / "checkpoints" / "last.ckpt").is_file()
