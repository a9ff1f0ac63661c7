"""``python -m brainlit simulate OUT_DIR``: write a simulated cohort (BIDS or arrays) or a
Cam-CAN-shaped tree; ``python -m brainlit.data.simulate`` is the same command."""

from __future__ import annotations

import argparse
import logging
import re
import sys
from dataclasses import fields, replace
from pathlib import Path

from brainlit.data.simulate.camcan import write_camcan_tree
from brainlit.data.simulate.cohort import simulate_cohort
from brainlit.data.simulate.model import DYNAMICS, GenerativeModel
from brainlit.data.simulate.sites import SiteSpec
from brainlit.errors import BrainlitDataError

DYNAMICS_FIELDS = ("dynamics", "state_contrast", "dwell_s", "dwell_age_slope",
                   "dwell_integrity_effect", "dwell_sd", "visible_amplitude")


def _field_help() -> dict[str, str]:
    """Each field's text from the ``Args:`` of :class:`GenerativeModel`'s docstring."""
    args = GenerativeModel.__doc__.split("Args:")[1]
    entries = re.findall(r"^ {8}(\w+): (.*?)(?=^ {8}\w+: |\Z)", args, flags=re.M | re.S)
    plain = {name: re.sub(r":mod:`([^`]+)`", r"\1", text.replace("``", "")) for name, text in entries}
    return {name: " ".join(text.split()) for name, text in plain.items()}


def _model_arguments(parser: argparse.ArgumentParser) -> None:
    """One ``--flag`` per dynamics field of :class:`GenerativeModel`, its docstring as help."""
    defaults, texts = {f.name: f.default for f in fields(GenerativeModel)}, _field_help()
    group = parser.add_argument_group("FC dynamics")
    for name in DYNAMICS_FIELDS:
        group.add_argument(f"--{name.replace('_', '-')}", type=str if name == "dynamics" else float,
                           default=defaults[name], choices=DYNAMICS if name == "dynamics" else None,
                           help=f"{texts[name]} (default: {defaults[name]})")


def _site_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "scanner sites", "each site has its own BOLD gain per region, noise, shared global signal, "
        "head motion (mean FD in the latents) and optionally TR; participants.tsv gets a site column")
    group.add_argument("--sites", type=int, help="number of sites; subjects are spread over them evenly "
                       "by a seeded draw (default: no site effects)")
    group.add_argument("--site-seed", type=int, help="seed of the sites' effects (default: --seed); "
                       "another seed gives new scanners, e.g. one unseen in training")
    group.add_argument("--only-site", type=int, help="scan every subject at this site (0-based), e.g. "
                       "new subjects (another --seed) on a training site, or with --site-seed a new scanner")
    group.add_argument("--site-trs", type=float, nargs="+", metavar="TR",
                       help="each site's repetition time in s, one per site (default: 2.0 everywhere)")


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Simulated resting-state fMRI cohorts with "
                                     "known ground truth: the embedded demo data, dynamic-FC positive "
                                     "controls, multi-site cohorts and a Cam-CAN-shaped test tree.")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--n-subjects", type=int, help="default: 200, or 12 with --camcan")
    parser.add_argument("--n-volumes", type=int, default=150, help="volumes per run (default: 150)")
    parser.add_argument("--seed", type=int, default=0, help="subject i depends on (seed, i) only: "
                        "cohorts of one seed nest (default: 0)")
    parser.add_argument("--layout", choices=("bids", "arrays"), default="bids",
                        help="bids: a NIfTI per subject and atlas.nii.gz; arrays: a [T, R] .npy and a "
                        "sidecar .json per subject, for --data.layout arrays (default: bids)")
    parser.add_argument("--n-jobs", type=int, default=-1, help="worker processes (-1: all cores)")
    parser.add_argument("--camcan", action="store_true", help="write a Cam-CAN-shaped test tree")
    parser.add_argument("--overwrite", action="store_true", help="replace another cohort there")
    _model_arguments(parser)
    _site_arguments(parser)
    return parser


def main(argv: list[str] | None = None, prog: str = "python -m brainlit.data.simulate") -> None:
    """``python -m brainlit simulate OUT_DIR [--n-subjects N] [--layout arrays] [--dynamics
    visible] [--sites N] [--camcan] ...`` (``--help`` lists every option)."""
    parser = _parser(prog)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    progress = sys.stderr.isatty()  # a bar on a terminal; in a log file the summary line only
    model = replace(GenerativeModel(), **{name: getattr(args, name) for name in DYNAMICS_FIELDS})
    site_options = (args.sites, args.site_seed, args.only_site, args.site_trs)
    if args.camcan:
        if args.layout != "bids" or any(option is not None for option in site_options):
            parser.error("--camcan writes its own tree: it takes neither --layout nor the site options")
        path = write_camcan_tree(args.out_dir, args.n_subjects or 12, args.seed, n_volumes=args.n_volumes,
                                 n_jobs=args.n_jobs, progress=progress, model=model)
        print(f"Cam-CAN-shaped tree in {path}")
        return
    try:
        if args.sites is None and any(option is not None for option in site_options):
            parser.error("--site-seed, --only-site and --site-trs need --sites N")
        sites = None if args.sites is None else SiteSpec(
            args.sites, args.site_seed, args.only_site, None if args.site_trs is None else tuple(args.site_trs))
        summary = simulate_cohort(args.out_dir, args.n_subjects or 200, n_volumes=args.n_volumes,
                                  seed=args.seed, n_jobs=args.n_jobs, overwrite=args.overwrite,
                                  progress=progress, model=model, layout=args.layout, sites=sites)
    except BrainlitDataError as error:
        parser.error(str(error))
    print(f"{summary.n_subjects} subjects, {summary.n_rois} regions, {summary.n_volumes} volumes "
          f"at TR {summary.t_r} s in {summary.out_dir} ({summary.n_bytes / 1e6:.0f} MB, "
          f"{summary.seconds:.0f} s)")
