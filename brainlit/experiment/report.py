"""Step: the experiment's tables on disk and on the terminal."""

from __future__ import annotations

import json

import pandas as pd

from brainlit.experiment.combine import mean_weights
from brainlit.experiment.context import Experiment, write_atomically
from brainlit.report import format_table, to_markdown
from brainlit.tasks.pretrain import format_diagnostics


def mean_diagnostics(experiment: Experiment, variants: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """LMAE diagnostics per masking variant on disk, averaged over its pretrainings."""
    found = {}
    for variant in variants:
        values = [json.loads(p.read_text()) for p in sorted((experiment.out_dir / "pretrain" / variant).rglob("diagnostics.json"))]
        if values:
            found[variant] = pd.DataFrame(values).mean().to_dict()
    return found


def dropped_subjects(experiment: Experiment) -> pd.DataFrame:
    """Subjects with imaging but no value of a fine-tuning config's targets."""
    frames = [pd.read_csv(p) for p in sorted(experiment.out_dir.glob("*/dropped.csv"))]
    frames = [f for f in frames if len(f)]
    return pd.concat(frames).drop_duplicates() if frames else pd.DataFrame(columns=["subject_id", "reason"])


def network_shares(experiment: Experiment) -> dict[str, dict[str, float]]:
    """Per config, each target's weight on the network's share, averaged over folds and repeats."""
    shares = {}
    for config in experiment.finetune_configs:
        folders = [experiment.fold_dir(config, r, f) / "local" for r in range(experiment.repeats)
                   for f in range(experiment.n_folds_of(config))]
        shares[config.stem] = mean_weights(folders)
    return shares


def write_results(experiment: Experiment, results: pd.DataFrame, predictions: pd.DataFrame,
                  variants: tuple[str, ...]) -> None:
    """``predictions.csv``, ``results.csv``, ``results.md`` and the table on the terminal."""
    out = experiment.out_dir
    write_atomically(out / "predictions.csv", predictions.to_csv(index=False))
    write_atomically(out / "results.csv", results.to_csv(index=False))
    skipped_path = out / "cache.h5.skipped.tsv"
    skipped = pd.read_csv(skipped_path, sep="\t")[["subject_id", "file", "reason"]] if skipped_path.exists() else None
    diagnostics = mean_diagnostics(experiment, variants)
    shares = network_shares(experiment)
    markdown = to_markdown(results, skipped, diagnostics=diagnostics, dropped=dropped_subjects(experiment),
                           shares=shares)
    write_atomically(out / "results.md", markdown)
    print(format_table(results))
    for config, weights in shares.items():
        text = ", ".join(f"{t} {w:.2f}" for t, w in weights.items())
        print(f"\nbrainlit = read-out + w x (network - read-out), w per target ({config}, mean over folds): {text}")
    for variant, values in diagnostics.items():
        print(f"\nLMAE reconstruction ({variant} masking), masked-patch MSE on held-out runs (training-length windows):")
        print(format_diagnostics(values))
    if skipped is not None and len(skipped):
        print(f"\nSkipped {len(skipped)} subject(s) for bad input:")
        for row in skipped.itertuples():
            print(f"  {row.reason}")
    print(f"\nResults: {out / 'results.md'}  TensorBoard: make tensorboard (logs in {out})")
