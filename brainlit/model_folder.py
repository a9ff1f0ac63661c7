"""A trained model as an artefact: a folder another lab can load and apply, without pickle.

Layout::

    <folder>/model.safetensors     tensors only: network<i>.<state_dict key> per network,
                                   readout.<name> for the closed-form read-out
    <folder>/brainlit_model.json   the card

The card says what the model holds (``model``: the read-out's configuration and its site
harmonisation, each network's task hyperparameters and target normalisation, the combination's
weights with the evidence behind them, the conformal calibration of each target's intervals and
the out-of-distribution reference) and everything needed to apply it to a new cohort: the data card (atlas name,
checksum and ROI labels, ROI count, TR, window length, cleaning options), the brain-age bias
correction, the training cohort's size and age range, the pretraining corpus, the
cross-validation results and the brainlit version.

``python -m brainlit export CKPT... OUT_DIR`` builds a folder from fine-tuning checkpoints (the
networks alone); ``experiment`` writes one with all three parts; :func:`read_model_folder`
reads either back.
"""

from __future__ import annotations

import inspect
import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from jsonargparse import ArgumentParser
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from brainlit.baselines.readout import ConnectivityRidge
from brainlit.errors import BrainlitCheckpointError, BrainlitOutputError
from brainlit.sites.conformal import ConformalIntervals
from brainlit.sites.ood import OutOfDistribution
from brainlit.stack import NetworkShare
from brainlit.tasks.checkpoints import export_encoder, read_checkpoint, task_name
from brainlit.tasks.predictions import fit_gap_correction
from brainlit.tasks.regress import RegressionTask
from brainlit.version import __version__

log = logging.getLogger(__name__)

MODEL_FORMAT = "brainlit-model"
FORMAT_VERSION = 2  # 2: read-out, networks and combination as three parts
CARD, WEIGHTS = "brainlit_model.json", "model.safetensors"


@dataclass
class ModelParts:
    """What a model folder holds, in memory.

    Attributes:
        networks: The networks: to write, each one's ``{"hparams", "state_dict", "source"}``;
            as loaded (:func:`load_parts`), the tasks in eval mode.
        data: The data card the networks were trained with (atlas, TR, ROIs, targets, cohort).
        readout: The fitted closed-form read-out, or None (a folder of networks alone).
        combination: The fitted combination, or None (the networks' mean is the prediction).
        intervals: Conformal calibration per target, fit on out-of-fold predictions.
        ood: The out-of-distribution reference: the training cohort's read-out features.
        card: Further card entries: ``bias_correction``, ``cv_results``, ``pretraining`` ...
    """

    networks: list
    data: dict
    readout: ConnectivityRidge | None = None
    combination: NetworkShare | None = None
    intervals: dict[str, ConformalIntervals] = field(default_factory=dict)
    ood: OutOfDistribution | None = None
    card: dict[str, Any] = field(default_factory=dict)


def _states(parts: ModelParts) -> dict[str, tuple[dict, dict[str, np.ndarray]]]:
    """``{tensor prefix: (json values, arrays)}`` of every fitted closed-form part."""
    states = {f"intervals.{target}": calibration.to_state() for target, calibration in parts.intervals.items()}
    if parts.readout is not None:
        states["readout"] = parts.readout.to_state()
    if parts.ood is not None:
        states["ood"] = parts.ood.to_state()
    return states


def networks_of(checkpoints: list[str | Path]) -> tuple[list[dict], dict]:
    """Each checkpoint's hyperparameters and state dict, and the data card they share.

    Raises:
        BrainlitCheckpointError: a checkpoint is not a fine-tuning one, has no data card, or
            was trained on other targets, ROIs or atlas than the first.
    """
    networks, card = [], None
    for path in map(Path, checkpoints):
        if not path.is_file():
            raise BrainlitCheckpointError(f"checkpoint {path} not found.")
        ckpt = read_checkpoint(path)
        hparams = dict(ckpt.get("hyper_parameters") or {})
        if task_name(hparams) != "RegressionTask":
            raise BrainlitCheckpointError(f"{path} is not a fine-tuning (RegressionTask) checkpoint: "
                                          "a model folder is built from `fit` on a finetune config.")
        if "brainlit_data" not in ckpt:
            raise BrainlitCheckpointError(f"{path} carries no data card (atlas, TR, cohort): it was "
                                          "saved by an older brainlit; fit it again to export it.")
        network_card = ckpt["brainlit_data"]
        if card is not None and _identity(network_card) != _identity(card):
            raise BrainlitCheckpointError(
                f"{path} was trained on {_identity(network_card)}, the first checkpoint on "
                f"{_identity(card)}: a model folder's networks share targets, atlas and ROIs.")
        card = card or network_card
        networks.append({"hparams": _plain(hparams), "state_dict": ckpt["state_dict"], "source": path.name})
    if not networks:
        raise BrainlitCheckpointError("export needs at least one checkpoint.")
    return networks, card


def _identity(card: dict) -> tuple:
    return tuple(card["targets"]), card["n_rois"], card["atlas"]["sha256"] or card["atlas"]["name"]


def _plain(value: Any) -> Any:
    """JSON-safe copy of hyperparameters (tuples to lists, anything else to its string)."""
    return json.loads(json.dumps(value, default=str))


def bias_correction(age_true: pd.Series, age_pred: pd.Series, fit_on: str) -> dict | None:
    """The brain-age gap correction ``gap = slope * age + intercept`` as stored in a card."""
    fitted = fit_gap_correction(age_true, age_pred)
    if fitted is None:
        return None
    n = int((age_true.notna() & age_pred.notna()).sum())
    return {"slope": fitted[0], "intercept": fitted[1], "n_subjects": n, "fit_on": fit_on}


def bias_from_predictions(path: str | Path) -> dict | None:
    """A bias correction fit on a predictions CSV: ``predict``'s (``age_true``, ``age_pred``)
    or ``experiment``'s long table (brainlit's out-of-fold ``age`` rows, averaged per subject).
    Use out-of-sample predictions: in-sample ones understate the gap's age trend."""
    table = pd.read_csv(path)
    if {"target", "y_true", "y_pred"} <= set(table):
        rows = table[(table["target"] == "age") & (table.get("model", "brainlit") == "brainlit")]
        table = rows.groupby("subject_id")[["y_true", "y_pred"]].mean().set_axis(["age_true", "age_pred"], axis=1)
    if not {"age_true", "age_pred"} <= set(table):
        raise BrainlitCheckpointError(f"{path} has no age_true and age_pred columns (nor target/y_true/y_pred).")
    return bias_correction(table["age_true"], table["age_pred"], f"predictions in {Path(path).name}")


def _tensors(parts: ModelParts) -> dict[str, torch.Tensor]:
    tensors = {f"network{i}.{key}": value.detach().contiguous().clone()
               for i, network in enumerate(parts.networks) for key, value in network["state_dict"].items()}
    for prefix, (_, arrays) in _states(parts).items():
        tensors |= {f"{prefix}.{k}": torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}
    return tensors


def _card(parts: ModelParts) -> dict[str, Any]:
    networks = [{"hparams": n["hparams"], "source": n["source"],
                 "target_mean": n["state_dict"]["target_mean"].tolist(),
                 "target_std": n["state_dict"]["target_std"].tolist()} for n in parts.networks]
    states = {prefix: values for prefix, (values, _) in _states(parts).items()}
    model = {"readout": states.get("readout"), "networks": networks,
             "combination": None if parts.combination is None else parts.combination.to_state(),
             "intervals": {t: states[f"intervals.{t}"] for t in parts.intervals}, "ood": states.get("ood")}
    return {"format": MODEL_FORMAT, "format_version": FORMAT_VERSION, "brainlit_version": __version__,
            "targets": parts.data["targets"], "model": model, "data": parts.data,
            "training_cohort": parts.data["training_cohort"], "bias_correction": None, "cv_results": None,
            **parts.card}


def write_model_folder(out: str | Path, parts: ModelParts) -> Path:
    """Write ``model.safetensors`` and ``brainlit_model.json`` into ``out`` (replaced whole)."""
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_file(_tensors(parts), str(tmp / WEIGHTS), {"format": MODEL_FORMAT})
        (tmp / CARD).write_text(json.dumps(_card(parts), indent=2))
        shutil.rmtree(out, ignore_errors=True)
        tmp.replace(out)
    except OSError as error:
        shutil.rmtree(tmp, ignore_errors=True)
        raise BrainlitOutputError(f"cannot write the model folder {out}: {error.strerror or error}.") from error
    log.info("Model folder (%d network(s)%s, targets %s) written to %s", len(parts.networks),
             "" if parts.readout is None else " + read-out", parts.data["targets"], out)
    return out


def export_model(checkpoints: list[str | Path], out: str | Path, bias_from: str | Path | None = None) -> Path:
    """A model folder of networks alone (several: averaged) from fine-tuning checkpoints."""
    networks, data = networks_of(checkpoints)
    correction = bias_from_predictions(bias_from) if bias_from else None
    if correction is None and "age" in data["targets"]:
        log.warning("No --bias_from predictions: the model folder holds no brain-age bias correction, "
                    "so apply writes no brain_age_gap_corrected.")
    return write_model_folder(out, ModelParts(networks, data, card={"bias_correction": correction}))


def read_model_folder(path: str | Path) -> tuple[dict, dict[str, dict[str, torch.Tensor]]]:
    """The card and its tensors grouped by part (``network0``, ..., ``readout``, ``ood``,
    ``intervals.<target>``), read without unpickling anything."""
    path = Path(path)
    if not (path / CARD).is_file():
        inside = sorted(p.parent.name for p in path.glob(f"*/{CARD}"))
        hint = f"; it holds the model folders {inside}" if inside else ""
        raise BrainlitCheckpointError(f"{path} is not a brainlit model folder (no {CARD}){hint}.")
    card = json.loads((path / CARD).read_text())
    if card.get("format") != MODEL_FORMAT or card.get("format_version") != FORMAT_VERSION:
        raise BrainlitCheckpointError(f"{path / CARD} is not a model card this brainlit reads (format "
                                      f"{card.get('format')!r}, version {card.get('format_version')}; this "
                                      f"brainlit reads version {FORMAT_VERSION}): export or train it again.")
    try:
        with safe_open(str(path / WEIGHTS), framework="pt", device="cpu") as file:
            tensors = {key: file.get_tensor(key) for key in file.keys()}
    except (SafetensorError, OSError) as error:
        raise BrainlitCheckpointError(f"cannot read {path / WEIGHTS}: {error}") from None
    parts: dict[str, dict[str, torch.Tensor]] = {}
    prefixes = [f"intervals.{target}" for target in card["model"].get("intervals") or {}]
    for key, value in tensors.items():
        part = next((p for p in prefixes if key.startswith(p + ".")), key.partition(".")[0])
        parts.setdefault(part, {})[key[len(part) + 1:]] = value
    return card, parts


def build_task(hparams: dict, state_dict: dict[str, torch.Tensor]) -> torch.nn.Module:
    """A :class:`~brainlit.tasks.RegressionTask` in eval mode from stored hyperparameters and weights."""
    accepted = inspect.signature(RegressionTask.__init__).parameters
    kwargs = {k: v for k, v in hparams.items() if k in accepted and k != "self"}
    task = RegressionTask(**{**kwargs, "pretrained": None})  # the encoder is in the weights
    task.load_state_dict(state_dict)
    return task.eval()


def load_parts(card: dict, tensors: dict[str, dict[str, torch.Tensor]]) -> ModelParts:
    """Every part of a read folder: the networks as tasks in eval mode, the closed-form parts fitted."""
    model = card["model"]
    networks = [build_task(n["hparams"], tensors[f"network{i}"]) for i, n in enumerate(model["networks"])]

    def arrays(prefix: str) -> dict[str, np.ndarray]:
        return {k: v.numpy() for k, v in tensors.get(prefix, {}).items()}

    readout = None if model["readout"] is None else ConnectivityRidge.from_state(model["readout"], arrays("readout"))
    combination = None if model["combination"] is None else NetworkShare.from_state(model["combination"])
    intervals = {t: ConformalIntervals.from_state(v, arrays(f"intervals.{t}")) for t, v in (model.get("intervals") or {}).items()}
    ood = None if model.get("ood") is None else OutOfDistribution.from_state(model["ood"], arrays("ood"))
    return ModelParts(networks, card["data"], readout, combination, intervals, ood)


def export_command(argv: list[str]) -> None:
    """``python -m brainlit export CKPT... OUT``: share a trained model safely.

    Fine-tuning checkpoints (one, or several networks to average) -> the model folder OUT
    (``model.safetensors`` + ``brainlit_model.json``), which ``python -m brainlit apply`` and
    ``brainlit.load_model`` read. One LMAE pretraining checkpoint -> OUT.safetensors holding
    its encoder, which ``model.pretrained`` and ``experiment --encoder`` load.
    """
    parser = ArgumentParser(prog="python -m brainlit export", description=export_command.__doc__)
    parser.add_argument("checkpoints", type=str, nargs="+", help="checkpoints (.ckpt), then OUT")
    parser.add_argument("--bias_from", type=str | None, default=None,
                        help="predictions CSV (out-of-sample) to fit the brain-age bias correction on")
    args = parser.parse_args(argv)
    if len(args.checkpoints) < 2:
        parser.error("give the checkpoint(s) and then the output: export CKPT... OUT")
    *checkpoints, out = args.checkpoints
    first = read_checkpoint(Path(checkpoints[0])) if Path(checkpoints[0]).is_file() else {}
    if len(checkpoints) == 1 and task_name(dict(first.get("hyper_parameters") or {})) == "LMAEPretrainer":
        print(f"Encoder written to {export_encoder(checkpoints[0], out)}")
        return
    print(f"Model folder written to {export_model(checkpoints, out, args.bias_from)}")
