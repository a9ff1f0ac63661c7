"""Brain age at a site the model never saw: MAE and interval coverage without adaptation, after
ComBat adaptation from local controls, and after the simple thing it must beat (a linear
recalibration of the predictions on the same controls).

A cohort is simulated at ``--sites`` scanners (``simulate --sites``); the model is trained by
``python -m brainlit experiment`` on every site but the last, and applied with
``python -m brainlit apply`` to the held-out site. The controls are ``--controls`` random
subjects of that site; every score leaves them out. The reference is the experiment's own
cross-validated MAE on its training sites: what "excess MAE" is measured against. A paired
reference beside it: the same held-out people scanned at training site 0 (the simulator keeps
a subject's biology at every site), what the model would do for them had they stayed. And what
the held-out scanner itself allows: the same experiment trained on the same training people
scanned there, applied to the same held-out people. A scanner that adds noise loses age
information no adaptation can restore; the excess over this row is the part that can be removed.

    python benchmarks/new_site.py OUT [--subjects 300] [--sites 3] [--controls 20] [--seed 81]
    python benchmarks/new_site.py OUT --site-seed 7     # the held-out site drawn with other effects
    python benchmarks/new_site.py OUT --held-out-tr 0.8 # the held-out scanner at another TR (resampled)

It writes ``OUT/new_site.md`` and prints it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from cohorts import simulate, subset

from brainlit.__main__ import main as brainlit
from brainlit.experiment import Experiment, run


def scores(frame: pd.DataFrame, pred: str = "age_pred") -> dict[str, float]:
    """MAE, the gap's age trend and interval coverage (overall, per true-age tertile) of the
    rows that were not used to adapt."""
    rows = frame[~frame["used_for_adaptation"].astype(bool) & frame["age_true"].notna()]
    error = (rows[pred] - rows["age_true"]).abs()
    inside = rows["age_true"].between(rows["age_lower"], rows["age_upper"])
    tertile = pd.qcut(rows["age_true"], 3, labels=["young", "middle", "old"])
    return {"n": len(rows), "mae": error.mean(), "coverage": inside.mean(),
            **{f"coverage {t}": inside[tertile == t].mean() for t in ("young", "middle", "old")},
            "flagged": rows["ood_flag"].astype(bool).mean()}


def linear_recalibration(frame: pd.DataFrame) -> pd.DataFrame:
    """Predictions (and their interval bounds) recalibrated by the least-squares line of the
    controls' true on predicted ages."""
    controls = frame[frame["used_for_adaptation"]]
    slope, intercept = np.polyfit(controls["age_pred"], controls["age_true"], 1)
    return frame.assign(recalibrated=intercept + slope * frame["age_pred"], age_lower=intercept + slope * frame["age_lower"],
                        age_upper=intercept + slope * frame["age_upper"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--subjects", type=int, default=300)
    parser.add_argument("--sites", type=int, default=3)
    parser.add_argument("--controls", type=int, default=20)
    parser.add_argument("--seed", type=int, default=81)
    parser.add_argument("--site-seed", type=int, default=None, help="another draw of the held-out site's effects")
    parser.add_argument("--held-out-tr", type=float, default=None,
                        help="the held-out scanner's TR (s; runs as long as the others'), resampled at apply")
    parser.add_argument("--configs", default="configs/demo")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    pool = simulate(args.out / "cohort", args.subjects, args.seed, "none", 150, "--sites", str(args.sites))
    table = pd.read_csv(pool / "participants.tsv", sep="\t")
    held_out = f"site-{args.sites - 1}"
    # every subject scanned at the held-out scanner (the held-out people's scans are the pool's own),
    # or at a new scanner of other effects, or at another TR
    scanner_seed = args.seed if args.site_seed is None else args.site_seed
    volumes, timing = held_out_timing(args)
    scanner = simulate(args.out / scanner_name(args), args.subjects, args.seed, "none", volumes, *timing,
                       "--site-seed", str(scanner_seed), "--only-site", str(args.sites - 1))
    training = table.loc[table.site != held_out, "participant_id"].tolist()
    train = subset(pool, args.out / "train", training)
    new = table.loc[table.site == held_out, "participant_id"].tolist()
    site = subset(scanner, args.out / "site", new)
    controls = sorted(np.random.default_rng(args.seed).choice(new, args.controls, replace=False))
    pd.DataFrame({"participant_id": controls}).to_csv(args.out / "controls.tsv", sep="\t", index=False)
    results = run(Experiment(str(train), str(args.out / "experiment"), args.configs, quick=args.quick,
                             data_options=["--data.layout", "arrays"]))
    cv = results[(results.model == "brainlit") & (results.target == "age")]["mae"].mean()
    model = str(args.out / "experiment" / "model")
    scanner_model = trained_at(scanner, training, args)
    common = ["apply", "--model", model, "--root", str(site), *resampling(args)]
    brainlit([*common, "--out", str(args.out / "raw.csv")])
    brainlit([*common, "--out", str(args.out / "adapted.csv"), "--controls", str(args.out / "controls.tsv")])
    at_training_site = simulate(args.out / "training_scanner", args.subjects, args.seed, "none", 150,
                                "--sites", str(args.sites), "--site-seed", str(args.seed), "--only-site", "0")
    brainlit(["apply", "--model", model, "--root", str(subset(at_training_site, args.out / "same_people", new)),
              "--data.layout", "arrays", "--out", str(args.out / "same_people.csv")])
    brainlit(["apply", "--model", scanner_model, "--root", str(site), *resampling(args),
              "--out", str(args.out / "at_scanner.csv")])
    raw, adapted = pd.read_csv(args.out / "raw.csv"), pd.read_csv(args.out / "adapted.csv")
    same_people, at_scanner = pd.read_csv(args.out / "same_people.csv"), pd.read_csv(args.out / "at_scanner.csv")
    for frame in (raw, same_people, at_scanner):
        frame["used_for_adaptation"] = frame["subject_id"].isin(controls)
    recalibrated = linear_recalibration(raw)
    rows = {"no adaptation": scores(raw), f"ComBat from {args.controls} controls": scores(adapted),
            f"linear recalibration on {args.controls} controls": scores(recalibrated, "recalibrated"),
            "the same people at training site 0 (reference)": scores(same_people),
            SCANNER_ROW: scores(at_scanner)}
    report = render(rows, cv, args) + flag_rates(args, model)
    (args.out / "new_site.md").write_text(report)
    (args.out / "new_site.json").write_text(json.dumps({"cv_mae": cv, "rows": rows}, default=float, indent=1))
    print(report)


SCANNER_ROW = "a model trained at the held-out scanner (the same training people)"
COHORT_TR = 2.0  # the simulator's TR, every training site's


def scanner_name(args: argparse.Namespace) -> str:
    """The folder of the cohort scanned at the held-out scanner."""
    name = "held_out_scanner" if args.site_seed is None else "new_scanner"
    return name if args.held_out_tr is None else f"{name}_tr{args.held_out_tr:g}"


def held_out_timing(args: argparse.Namespace) -> tuple[int, list[str]]:
    """Volumes and simulate options of the held-out scanner's runs: the training sites' 150 volumes
    at 2 s, or as many seconds at ``--held-out-tr``."""
    if args.held_out_tr is None:
        return 150, ["--sites", str(args.sites)]
    trs = [str(COHORT_TR)] * (args.sites - 1) + [str(args.held_out_tr)]
    return round(150 * COHORT_TR / args.held_out_tr), ["--sites", str(args.sites), "--site-trs", *trs]


def resampling(args: argparse.Namespace) -> list[str]:
    """``--data.*`` options for the held-out site's runs: resampled to the models' TR when it has its own."""
    return ["--data.layout", "arrays", *([] if args.held_out_tr is None else ["--data.resample_tr", "true"])]


def trained_at(scanner: Path, training: list[str], args: argparse.Namespace) -> str:
    """The model folder of the experiment trained on the ``training`` people scanned at ``scanner``."""
    cohort = subset(scanner, args.out / "train_at_scanner", training)
    run(Experiment(str(cohort), str(args.out / "experiment_at_scanner"), args.configs, quick=args.quick,
                   data_options=[*resampling(args), "--data.t_r", str(COHORT_TR)]))
    return str(args.out / "experiment_at_scanner" / "model")


def flag_rates(args: argparse.Namespace, model: str) -> str:
    """The share of subjects flagged on a cohort like the training one (new people at a training
    site, same scanner) and on the same cohort with its ROI order shuffled (one permutation)."""
    like = simulate(args.out / "like", args.subjects // 2, args.seed + 1, "none", 150, "--sites", str(args.sites),
                    "--site-seed", str(args.seed), "--only-site", "0")
    shuffled = args.out / "shuffled"
    order = np.random.default_rng(args.seed).permutation(np.load(next(like.glob("sub-*.npy"))).shape[1])
    for path in like.glob("sub-*"):
        target = shuffled / path.name
        shuffled.mkdir(exist_ok=True)
        if path.suffix == ".npy":
            np.save(target, np.load(path)[:, order])
        elif not target.exists():
            target.symlink_to(path.resolve())
    (shuffled / "participants.tsv").write_text((like / "participants.tsv").read_text())
    lines = ["", "| cohort | subjects | flagged |", "|---|---|---|"]
    for name, root in (("new people at a training site", like), ("the same, ROI order shuffled", shuffled)):
        out = args.out / f"{root.name}.csv"
        brainlit(["apply", "--model", model, "--root", str(root), "--data.layout", "arrays", "--out", str(out)])
        flags = pd.read_csv(out)["ood_flag"].astype(bool)
        lines.append(f"| {name} | {len(flags)} | {flags.mean():.0%} |")
    return "\n".join(lines) + "\n"


def render(rows: dict[str, dict], cv: float, args: argparse.Namespace) -> str:
    """The table, and the share of the excess MAE each row removes: over same-site cross-validation,
    over the same people at training site 0 (paired), over a model trained at the held-out scanner."""
    none = rows["no adaptation"]["mae"]
    references = (cv, rows["the same people at training site 0 (reference)"]["mae"], rows[SCANNER_ROW]["mae"])
    lines = [f"# Brain age at a held-out site (seed {args.seed}, {args.sites} sites"
             + (f", held-out scanner seed {args.site_seed}" if args.site_seed is not None else "")
             + (f", held-out TR {args.held_out_tr:g} s" if args.held_out_tr is not None else "") + ")", "",
             f"Same-site cross-validated MAE on the training sites: {cv:.2f} years. Excess removed: the share "
             "of the held-out site's MAE over it that a row removes; paired: the same over the same people at "
             "training site 0; at scanner: over a model trained at the held-out scanner (what can be removed).", "",
             "| | subjects | age MAE | excess removed | paired | at scanner | coverage | young | middle | old | flagged |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        removed = " | ".join(f"{(none - r['mae']) / (none - ref):.0%}" if none > ref else "-" for ref in references)
        lines.append(f"| {name} | {r['n']} | {r['mae']:.2f} | {removed} | {r['coverage']:.0%} | "
                     f"{r['coverage young']:.0%} | {r['coverage middle']:.0%} | {r['coverage old']:.0%} | "
                     f"{r['flagged']:.0%} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
