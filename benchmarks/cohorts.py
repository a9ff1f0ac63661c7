"""Simulated cohorts for the benchmarks: written once as arrays, subsets as folders of links."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd

from brainlit.data.simulate.cohort import LATENTS


def simulate(out: Path, n_subjects: int, seed: int, mechanism: str = "none", volumes: int = 150,
             *extra: str) -> Path:
    """A simulated arrays cohort (reused when it is already there); ``extra``: more simulate options."""
    command = [sys.executable, "-m", "brainlit", "simulate", str(out), "--layout", "arrays", "--n-subjects",
               str(n_subjects), "--seed", str(seed), "--dynamics", mechanism, "--n-volumes", str(volumes), *extra]
    subprocess.run(command, check=True)
    return out


def subset(pool: Path, out: Path, subjects: list[str]) -> Path:
    """A cohort folder of ``subjects`` of ``pool``: links to their arrays, their rows of the tables."""
    (out / "simulation").mkdir(parents=True, exist_ok=True)
    for sid in subjects:
        for file in pool.glob(f"{sid}.*"):
            link = out / file.name
            if not link.exists():
                link.symlink_to(file.resolve())
    for table in ("participants.tsv", LATENTS):
        frame = pd.read_csv(pool / table, sep="\t")
        frame[frame["participant_id"].isin(subjects)].to_csv(out / table, sep="\t", index=False)
    return out


def ids_of(cohort: Path) -> list[str]:
    """The subjects of a simulated cohort, in order."""
    return pd.read_csv(cohort / "participants.tsv", sep="\t")["participant_id"].tolist()
