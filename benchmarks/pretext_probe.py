"""What a pretrained encoder holds about subjects: re-identification and a linear trait probe.

For each pretraining checkpoint (and an untrained encoder of the first one's architecture),
every cached subject's run is encoded and pooled two ways: the tokens' mean and the tokens'
own connectivity (:func:`~brainlit.models.contrastive.token_connectivity`). For each pooling:

- re-identification: top-1 between the two halves of each run, among all subjects, beside the
  halves' FC (connectome fingerprinting) and chance;
- a linear probe: 5-fold ridge from the pooled whole run to each target (age, fluid
  intelligence), beside ridge on tangent FC on the same folds. Pretraining saw these
  subjects' imaging but no label.

    python benchmarks/pretext_probe.py data/dev/brainlit_cache.h5 CKPT [CKPT ...] --names masked ...
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from measure import markdown_table
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import KFold, cross_val_predict
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from brainlit.baselines import TangentRidge
from brainlit.data.cache import CacheReader
from brainlit.models.contrastive import POOLS, reidentification_accuracy, token_connectivity
from brainlit.models.encoder import PatchEncoder
from brainlit.tasks.checkpoints import load_encoder
from brainlit.tasks.reid import fc_edges, run_halves
from brainlit.tasks.specs import encoder_args

TARGETS = ("age", "fluid_intelligence")


def encoder_of(path: Path, n_rois: int, trained: bool) -> PatchEncoder:
    """The checkpoint's encoder, or an untrained one (seed 0) of the same architecture."""
    spec, weights = load_encoder(path)
    torch.manual_seed(0)
    encoder = PatchEncoder(n_rois, **encoder_args(spec))
    if trained:
        encoder.load_state_dict({k.removeprefix("encoder."): v for k, v in weights.items()})
    return encoder.eval()


def whole_runs(reader: CacheReader) -> torch.Tensor:
    """Every cached subject's run ``[N, R, T]``, in ``reader.subject_ids`` order, cut to the shortest."""
    length = min(reader.n_timepoints(s) for s in reader.subject_ids)
    return torch.from_numpy(np.stack([reader.timeseries(s)[:, :length] for s in reader.subject_ids]))


def probe_model() -> Pipeline:
    """The linear probe: standardised features, ridge with its penalty chosen by leave-one-out."""
    return make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 5, 15)))


@torch.no_grad()
def connectivity(encoder: PatchEncoder, runs: torch.Tensor, batch: int = 50) -> np.ndarray:
    """The tokens' connectivity ``[N, R (R - 1) / 2]`` of whole runs ``[N, R, T]``, a batch at a time."""
    return torch.cat([token_connectivity(encoder(runs[i : i + batch])) for i in range(0, len(runs), batch)]).numpy()


@torch.no_grad()
def readings(encoder: PatchEncoder, runs: torch.Tensor, y: dict[str, np.ndarray]) -> list[dict]:
    """Per pooling: re-identification between run halves and 5-fold probe MAE per target."""
    halves = [encoder(h) for h in run_halves(runs)]
    tokens = encoder(runs)
    folds = KFold(5, shuffle=True, random_state=0)
    rows = []
    for name, pool in POOLS.items():
        row = {"pooling": name, "reid": reidentification_accuracy(*(pool(h) for h in halves))}
        pooled = pool(tokens).numpy()
        for target, values in y.items():
            row[target] = float(np.abs(cross_val_predict(probe_model(), pooled, values, cv=folds) - values).mean())
        rows.append(row)
    return rows


def reference(runs: torch.Tensor, y: dict[str, np.ndarray]) -> dict:
    """The same readings for FC: halves' correlations, and tangent ridge on the whole runs."""
    row = {"reid": reidentification_accuracy(*(fc_edges(h) for h in run_halves(runs)))}
    series = list(runs.numpy())
    for target, values in y.items():
        errors = []
        for train, test in KFold(5, shuffle=True, random_state=0).split(series):
            model = TangentRidge().fit([series[i] for i in train], values[train])
            errors.append(np.abs(model.predict([series[i] for i in test]) - values[test]))
        row[target] = float(np.concatenate(errors).mean())
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("cache", type=Path)
    parser.add_argument("checkpoints", type=Path, nargs="+")
    parser.add_argument("--names", nargs="+", help="one label per checkpoint (default: file names)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/pretext_probe.json"))
    args = parser.parse_args()
    reader = CacheReader(args.cache)
    ids = reader.subject_ids
    runs = whole_runs(reader)
    table = reader.phenotypes.reindex(ids)
    y = {t: table[t].to_numpy(float) for t in TARGETS}
    names = args.names or [p.stem for p in args.checkpoints]
    encoders = [("untrained", encoder_of(args.checkpoints[0], runs.shape[1], False))]
    encoders += [(name, encoder_of(path, runs.shape[1], True)) for name, path in zip(names, args.checkpoints, strict=True)]
    rows = [{"encoder": name, **row} for name, encoder in encoders for row in readings(encoder, runs, y)]
    rows += [{"encoder": "BOLD FC (fingerprint; tangent ridge)", **reference(runs, y)}]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"subjects": len(ids), "chance": 1 / len(ids), "rows": rows}, indent=1))
    print(f"{len(ids)} subjects, re-identification chance {1 / len(ids):.3f}")
    print(markdown_table(rows, [("encoder", "encoder"), ("pooling", "pooling"), ("reid", "re-identification"),
                                *((t, f"{t} MAE (5-fold probe)") for t in TARGETS)]))


if __name__ == "__main__":
    main()
