"""``python -m brainlit.data.simulate OUT_DIR``: write a simulated cohort (or a Cam-CAN tree)."""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import fields, replace
from pathlib import Path

from brainlit.data.simulate.camcan import write_camcan_tree
from brainlit.data.simulate.cohort import simulate_cohort
from brainlit.data.simulate.model import GenerativeModel
from brainlit.errors import BrainlitDataError

DYNAMICS_FIELDS = ("dynamics", "state_contrast", "dwell_s", "dwell_age_slope",
                   "dwell_integrity_effect", "dwell_sd")


def _model_arguments(parser: argparse.ArgumentParser) -> None:
    """One ``--flag`` per dynamics field of :class:`GenerativeModel`, its docstring as help."""
    defaults = {f.name: f.default for f in fields(GenerativeModel)}
    docs = GenerativeModel.__doc__.split("Args:")[1]
    for name in DYNAMICS_FIELDS:
        text = " ".join(docs.split(f"{name}:")[1].split(":")[0].split()[:-1])
        kind = str if name == "dynamics" else float
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, default=defaults[name],
                            choices=("none", "switching") if name == "dynamics" else None,
                            help=f"{text} (default: {defaults[name]})")


def main(argv: list[str] | None = None, prog: str = "python -m brainlit.data.simulate") -> None:
    """``python -m brainlit simulate OUT_DIR [--n-subjects N] [--seed S] [--dynamics switching]
    [--camcan]``."""
    parser = argparse.ArgumentParser(prog=prog,
                                     description="Simulated resting-state fMRI cohorts: the embedded "
                                     "demo data, dynamic-FC positive controls and a Cam-CAN-shaped test tree.")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--n-subjects", type=int, help="default: 200, or 12 with --camcan")
    parser.add_argument("--n-volumes", type=int, default=150, help="volumes per run (default: 150)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-jobs", type=int, default=-1, help="image writer threads (-1: all cores)")
    parser.add_argument("--camcan", action="store_true", help="write a Cam-CAN-shaped test tree")
    parser.add_argument("--overwrite", action="store_true", help="replace another cohort there")
    _model_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    progress = sys.stderr.isatty()  # a bar on a terminal; in a log file the summary line only
    model = replace(GenerativeModel(), **{name: getattr(args, name) for name in DYNAMICS_FIELDS})
    if args.camcan:
        path = write_camcan_tree(args.out_dir, args.n_subjects or 12, args.seed, n_volumes=args.n_volumes,
                                 n_jobs=args.n_jobs, progress=progress, model=model)
        print(f"Cam-CAN-shaped tree in {path}")
        return
    try:
        summary = simulate_cohort(args.out_dir, args.n_subjects or 200, n_volumes=args.n_volumes,
                                  seed=args.seed, n_jobs=args.n_jobs, overwrite=args.overwrite,
                                  progress=progress, model=model)
    except BrainlitDataError as error:
        parser.error(str(error))
    print(f"{summary.n_subjects} subjects, {summary.n_rois} regions, {summary.n_volumes} volumes "
          f"at TR {summary.t_r} s in {summary.out_dir} ({summary.n_bytes / 1e6:.0f} MB)")
