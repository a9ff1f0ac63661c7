"""Does pretraining on a corpus pay, and against what? MAE against the number of labelled subjects.

For each simulated mechanism (stationary ``none``, ``switching``, ``visible``) this simulates a
pool of labelled subjects and, with another seed, an unlabelled corpus (arrays, no NIfTI). Each
corpus size is pretrained once (LMAE, a fixed number of optimiser steps) and exported; "0"
means pretraining on the labelled cohort alone, the experiment's default. For each labelled
size n and repeat, n subjects are drawn from the pool and ``python -m brainlit experiment``
runs k-fold cross-validation on them once per corpus size, on identical folds: brainlit, its
read-out, its network, the classical models and, the cohorts being simulated, the oracles;
beside them a linear probe of each frozen encoder (ridge on its tokens' connectivity).

    python benchmarks/label_efficiency.py OUT                 # hours: the full cross
    python benchmarks/label_efficiency.py OUT --quick         # minutes: tiny sizes, QUICK configs

It writes ``OUT/label_efficiency.csv`` (every fold score), ``OUT/label_efficiency.md`` (means
and paired intervals of brainlit against its read-out, the best classical model and
cohort-only pretraining) and ``OUT/label_efficiency.png`` (MAE against n, one line per model
and corpus size). Finished experiments are found on disk and reused.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from cohorts import ids_of, simulate, subset
from pretext_probe import connectivity, encoder_of, probe_model, whole_runs

from brainlit.baselines.oracle import ORACLES
from brainlit.baselines.run import READOUT
from brainlit.data.cache import CacheReader
from brainlit.experiment import Experiment, run
from brainlit.metrics import corrected_paired_interval
from brainlit.report import CLASSICAL
from brainlit.stack import NETWORK

log = logging.getLogger("label_efficiency")
PROBE, UNTRAINED = "encoder probe", "untrained encoder probe"
BY_CORPUS = ("brainlit", NETWORK, PROBE)  # the rows a corpus changes (the read-out does not)


def pretrain_corpus(args: argparse.Namespace, corpus: Path, folder: Path, pretext: str) -> Path:
    """Pretrain once on ``corpus`` for ``--pretrain-steps`` steps and export the encoder."""
    encoder = folder / "encoder.safetensors"
    if encoder.exists():
        return encoder
    configs = Path(args.configs)
    command = [sys.executable, "-m", "brainlit", "fit", "--config", str(configs / "pretrain.yaml"),
               *(["--config", str(configs.parent / "quick" / "pretrain.yaml")] if args.quick else []),
               "--data.root", str(corpus), "--data.layout", "arrays", "--data.cache_path", str(folder / "corpus.h5"),
               "--data.crops_per_subject", "1", "--trainer.max_epochs", "-1", "--trainer.max_steps",
               str(args.pretrain_steps), "--trainer.logger.init_args.save_dir", str(folder),
               "--model.init_args.pretext", pretext, *(["--data.views", "2"] if pretext == "contrastive" else [])]
    subprocess.run(command, check=True)
    best = sorted(folder.rglob("lmae-*.ckpt"))  # the lowest validation loss, as experiment's pretraining keeps
    checkpoint = best[-1] if best else sorted(folder.rglob("last.ckpt"))[-1]
    subprocess.run([sys.executable, "-m", "brainlit", "export", str(checkpoint), str(encoder)], check=True)
    return encoder


def suffix(args: argparse.Namespace) -> str:
    """What tells a corpus pretrained with another pretext apart in folder and file names."""
    return "" if args.pretext == "masked" else f"_{args.pretext}"


def cohort_results(args: argparse.Namespace, cohort: Path, encoder: Path | None, out: Path) -> pd.DataFrame:
    """One experiment's fold scores (``results.csv``), run once and then read back."""
    if not (out / "results.csv").exists():
        run(Experiment(str(cohort), str(out), args.configs, quick=args.quick, n_folds=args.folds,
                       encoder=str(encoder) if encoder else None, final_model=False,
                       data_options=["--data.layout", "arrays"]))
    return pd.read_csv(out / "results.csv")


def probe_results(encoder: Path | None, out: Path) -> pd.DataFrame:
    """A linear probe of the frozen encoder on the experiment's own folds (``probe.csv``).

    Ridge on the tokens' connectivity of each whole run (``pretext_probe``), fit on every
    labelled subject outside the test fold; ``encoder`` None means the one the experiment
    pretrained on the labelled cohort, and then an untrained encoder of the same architecture
    is probed too: what pretraining has to beat.
    """
    if (out / "probe.csv").exists():
        return pd.read_csv(out / "probe.csv")
    reader = CacheReader(out / "cache.h5")
    runs = whole_runs(reader)
    path = encoder or out / "pretrain" / "local" / "lmae.ckpt"
    probes = {PROBE: True, **({} if encoder else {UNTRAINED: False})}
    features = {name: connectivity(encoder_of(path, runs.shape[1], trained), runs) for name, trained in probes.items()}
    frame = probe_rows(features, reader.phenotypes.reindex(reader.subject_ids), pd.read_csv(out / "predictions.csv"))
    frame.to_csv(out / "probe.csv", index=False)
    return frame


def probe_rows(features: dict[str, np.ndarray], phenotypes: pd.DataFrame, predictions: pd.DataFrame) -> pd.DataFrame:
    """Fold scores of a ridge probe per named feature matrix (rows in ``phenotypes``' order), on the
    test folds of the read-out's rows of ``predictions``; trained on every other subject with a label."""
    ids = phenotypes.index.to_numpy()
    rows = []
    for (target, repeat, fold), test in predictions[predictions.model == READOUT].groupby(["target", "repeat", "fold"]):
        y = phenotypes[target].to_numpy(float)
        held = np.isin(ids, test.subject_id)
        train = ~held & np.isfinite(y)
        for name, x in features.items():
            guess = probe_model().fit(x[train], y[train]).predict(x[held])
            rows.append({"model": name, "target": target, "repeat": repeat, "fold": fold, "n_test": int(held.sum()),
                         "mae": float(np.abs(guess - y[held]).mean()),
                         "pearson_r": float(np.corrcoef(guess, y[held])[0, 1])})
    return pd.DataFrame(rows)


def mechanism_rows(args: argparse.Namespace, mechanism: str) -> pd.DataFrame:
    """Every fold score of one mechanism: labelled size x repeat x corpus size x model."""
    root = Path(args.out) / mechanism
    pool = simulate(root / "pool", 2 * max(args.labelled), args.seed, mechanism, args.volumes)
    # One folder per largest size: a later, larger --corpora simulates anew beside it (the same
    # seed, so the smaller corpora are its first subjects and their encoders are reused).
    corpus = simulate(root / f"corpus_simulated{max(args.corpora)}", max(args.corpora), args.seed + 1000,
                      mechanism, args.volumes) if max(args.corpora) else None
    ids = pd.read_csv(pool / "participants.tsv", sep="\t")["participant_id"].tolist()
    encoders = {0: None}
    for size in (c for c in args.corpora if c):
        part = subset(corpus, root / f"corpus{size}", ids_of(corpus)[:size])
        encoders[size] = pretrain_corpus(args, part, root / f"pretrain{size}{suffix(args)}", args.pretext)
    frames = []
    for n in args.labelled:
        for repeat in range(args.repeats):
            draw = sorted(np.random.default_rng([args.seed, n, repeat]).choice(ids, n, replace=False).tolist())
            cohort = root / f"n{n}_r{repeat}" / "cohort"
            if (cohort / "participants.tsv").exists() and ids_of(cohort) != draw:
                raise SystemExit(f"{cohort} holds another draw of {n} subjects (the pool is now {len(ids)}: "
                                 "--labelled changed); its results would not be these. Use a new OUT.")
            cohort = subset(pool, cohort, draw)
            for size, encoder in encoders.items():
                name = f"corpus{size}{suffix(args) if size else ''}"
                out = root / f"n{n}_r{repeat}" / name
                scores = pd.concat([cohort_results(args, cohort, encoder, out), probe_results(encoder, out)])
                frames.append(scores.assign(mechanism=mechanism, labelled=n, repeat=repeat, corpus=size))
    return pd.concat(frames, ignore_index=True)


def paired(rows: pd.DataFrame, model: str, corpus: int, reference: str, reference_corpus: int, folds: int) -> tuple:
    """Mean MAE difference and corrected 95 % interval, pairing (repeat, fold)."""
    keys = ["repeat", "fold"]
    a = rows[(rows.model == model) & (rows.corpus == corpus)].set_index(keys)["mae"]
    b = rows[(rows.model == reference) & (rows.corpus == reference_corpus)].set_index(keys)["mae"]
    diff = (a - b).dropna().to_numpy()
    return corrected_paired_interval(diff, 1 / max(folds - 1, 1)) if len(diff) > 1 else (np.nan,) * 3


def summary(scores: pd.DataFrame, folds: int) -> pd.DataFrame:
    """Per mechanism, target, n and corpus: brainlit's MAE and its paired differences."""
    rows = []
    for (mechanism, target, n), group in scores.groupby(["mechanism", "target", "labelled"]):
        classical = group[group.model.isin(CLASSICAL) & (group.corpus == 0)].groupby("model")["mae"].mean()
        best = str(classical.idxmin())
        for corpus in sorted(group.corpus.unique()):
            mine = group[(group.model == "brainlit") & (group.corpus == corpus)]["mae"].mean()
            rows.append({"mechanism": mechanism, "target": target, "labelled": n, "corpus": corpus,
                         "brainlit": mine, "best_classical": best,
                         "vs_readout": paired(group, "brainlit", corpus, READOUT, corpus, folds),
                         "vs_classical": paired(group, "brainlit", corpus, best, 0, folds),
                         "vs_cohort_only": paired(group, "brainlit", corpus, "brainlit", 0, folds)})
    return pd.DataFrame(rows)


def interval(cell: tuple) -> str:
    mean, low, high = cell
    return "n/a" if not np.isfinite(mean) else f"{mean:+.2f} [{low:+.2f}, {high:+.2f}]"


def markdown(table: pd.DataFrame) -> str:
    """The summary as one markdown table per mechanism and target."""
    lines = ["# Label efficiency", "", "brainlit's MAE and its paired difference (mean [corrected 95 % interval] "
             "over repeats x folds) to its read-out, the best classical model (on these folds) and brainlit "
             "pretrained on the labelled cohort alone (corpus 0).", ""]
    for (mechanism, target), group in table.groupby(["mechanism", "target"]):
        lines += [f"## {mechanism}: {target}", "", "| labelled | corpus | brainlit | vs read-out | vs best classical "
                  "| vs cohort-only pretraining |", "|---|---|---|---|---|---|"]
        lines += [f"| {r.labelled} | {r.corpus} | {r.brainlit:.2f} | {interval(r.vs_readout)} | "
                  f"{interval(r.vs_classical)} ({r.best_classical}) | {interval(r.vs_cohort_only)} |"
                  for r in group.itertuples()]
        lines.append("")
    return "\n".join(lines)


def plot(scores: pd.DataFrame, path: Path, target: str = "age") -> None:
    """MAE against labelled n per mechanism: one colour per model, one marker per corpus size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mechanisms = sorted(scores.mechanism.unique())
    skipped = ("mean", "classical ensemble", "brainlit + classical")
    shown = scores[~scores.model.isin(skipped) & ((scores.corpus == 0) | scores.model.isin(BY_CORPUS))]
    palette = plt.get_cmap("tab20").colors
    colour = dict(zip(sorted(shown.model.unique()), palette[::2] + palette[1::2], strict=False))
    marker = dict(zip(sorted(shown.corpus.unique()), "os^Dv", strict=False))
    figure, axes = plt.subplots(1, len(mechanisms), figsize=(5 * len(mechanisms) + 3, 4.5), squeeze=False)
    for ax, mechanism in zip(axes[0], mechanisms, strict=True):
        rows = shown[(shown.mechanism == mechanism) & (shown.target == target)]
        for (model, corpus), line in rows.groupby(["model", "corpus"])[["labelled", "mae"]]:
            means = line.groupby("labelled")["mae"].mean()
            style = "-" if model == "brainlit" else "--" if model in ORACLES else ":"
            label = f"{model} (corpus {corpus})" if model in BY_CORPUS else model
            ax.plot(means.index, means.to_numpy(), style, marker=marker[corpus], label=label, color=colour[model])
        sizes = sorted(rows["labelled"].unique())
        ax.set(xscale="log", xlabel="labelled subjects", ylabel=f"{target} MAE", title=mechanism)
        ax.set_xticks(sizes, [str(n) for n in sizes])
        ax.minorticks_off()
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1))
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--mechanisms", nargs="+", default=["none", "switching", "visible"])
    parser.add_argument("--corpora", nargs="+", type=int, default=[0, 1000, 5000])
    parser.add_argument("--labelled", nargs="+", type=int, default=[50, 100, 200, 400])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--volumes", type=int, default=300)
    parser.add_argument("--pretrain-steps", type=int, default=3000)
    parser.add_argument("--pretext", default="masked", help="the pretraining pretext of the corpora")
    parser.add_argument("--configs", default="configs/demo")
    parser.add_argument("--seed", type=int, default=71)
    parser.add_argument("--quick", action="store_true", help="tiny sizes and QUICK configs: minutes")
    args = parser.parse_args()
    if args.quick:
        args.mechanisms, args.corpora, args.labelled = ["visible"], [0, 200], [24, 48]
        args.repeats, args.folds, args.volumes, args.pretrain_steps = 1, 2, 150, 30
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    scores = pd.concat([mechanism_rows(args, m) for m in args.mechanisms], ignore_index=True)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"label_efficiency{suffix(args)}"
    scores.to_csv(stem.with_suffix(".csv"), index=False)
    table = summary(scores, args.folds)
    stem.with_suffix(".md").write_text(markdown(table))
    stem.with_suffix(".json").write_text(json.dumps(vars(args), default=str, indent=1))
    plot(scores, stem.with_suffix(".png"))
    print(markdown(table))


if __name__ == "__main__":
    main()
