"""A trained model as an artefact: a folder another lab can load and apply, without pickle.

Layout::

    <folder>/model.safetensors     tensors only: member<i>.<state_dict key> per ensemble member
    <folder>/brainlit_model.json   the card: architecture, data, targets, bias correction, CV

The card holds everything needed to apply the model to a new cohort: each member's task
hyperparameters (architecture, read-out kind) and target normalisation; the data card (atlas
name, checksum and ROI labels, ROI count, TR, window length, cleaning options); the
brain-age bias correction fit on the training cohort; the training cohort's size and age
range; the cross-validation results; and the brainlit version. The ridge read-out's weights
and tangent reference are tensors of the state dict (``model.fc_readout.*``).

``python -m brainlit export CKPT... OUT_DIR`` builds a folder from fine-tuning checkpoints
(``experiment`` writes one for its final model); :func:`load_model` reads it back.
"""

from __future__ import annotations

import inspect
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from jsonargparse import ArgumentParser
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

import brainlit
from brainlit.errors import BrainlitCheckpointError, BrainlitOutputError
from brainlit.tasks.checkpoints import export_encoder, read_checkpoint, task_name
from brainlit.tasks.predictions import fit_gap_correction

log = logging.getLogger(__name__)

MODEL_FORMAT = "brainlit-model"
FORMAT_VERSION = 1
CARD, WEIGHTS = "brainlit_model.json", "model.safetensors"


def members_of(checkpoints: list[str | Path]) -> tuple[list[dict], dict]:
    """Each checkpoint's hyperparameters and state dict, and the data card they share.

    Raises:
        BrainlitCheckpointError: a checkpoint is not a fine-tuning one, has no data card, or
            was trained on other targets, ROIs or atlas than the first.
    """
    members, card = [], None
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
        member_card = ckpt["brainlit_data"]
        if card is not None and _identity(member_card) != _identity(card):
            raise BrainlitCheckpointError(
                f"{path} was trained on {_identity(member_card)}, the first checkpoint on "
                f"{_identity(card)}: a model folder's members share targets, atlas and ROIs.")
        card = card or member_card
        members.append({"hparams": _plain(hparams), "state_dict": ckpt["state_dict"], "source": path.name})
    if not members:
        raise BrainlitCheckpointError("export needs at least one checkpoint.")
    return members, card


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


def write_model_folder(out: str | Path, members: list[dict], data: dict, correction: dict | None = None,
                       cv_results: list[dict] | None = None) -> Path:
    """Write ``model.safetensors`` and ``brainlit_model.json`` into ``out`` (replaced whole)."""
    out = Path(out)
    tensors = {f"member{i}.{key}": value.detach().contiguous().clone()
               for i, member in enumerate(members) for key, value in member["state_dict"].items()}
    card = {
        "format": MODEL_FORMAT, "format_version": FORMAT_VERSION, "brainlit_version": brainlit.__version__,
        "task": "brainlit.tasks.RegressionTask",
        "targets": data["targets"],
        "members": [{"hparams": m["hparams"], "source": m["source"],
                     "target_mean": m["state_dict"]["target_mean"].tolist(),
                     "target_std": m["state_dict"]["target_std"].tolist()} for m in members],
        "data": data,
        "training_cohort": data["training_cohort"],
        "bias_correction": correction,
        "cv_results": cv_results,
    }
    tmp = out.with_name(out.name + ".tmp")
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_file(tensors, str(tmp / WEIGHTS), {"format": MODEL_FORMAT})
        (tmp / CARD).write_text(json.dumps(card, indent=2))
        shutil.rmtree(out, ignore_errors=True)
        tmp.replace(out)
    except OSError as error:
        shutil.rmtree(tmp, ignore_errors=True)
        raise BrainlitOutputError(f"cannot write the model folder {out}: {error.strerror or error}.") from error
    log.info("Model folder (%d member(s), targets %s) written to %s", len(members), data["targets"], out)
    return out


def export_model(checkpoints: list[str | Path], out: str | Path, bias_from: str | Path | None = None) -> Path:
    """A model folder from fine-tuning checkpoints (several: an ensemble, predictions averaged)."""
    members, data = members_of(checkpoints)
    correction = bias_from_predictions(bias_from) if bias_from else None
    if correction is None and "age" in data["targets"]:
        log.warning("No --bias_from predictions: the model folder holds no brain-age bias correction, "
                    "so apply writes no brain_age_gap_corrected.")
    return write_model_folder(out, members, data, correction)


def read_model_folder(path: str | Path) -> tuple[dict, dict[str, dict[str, torch.Tensor]]]:
    """The card and each member's state dict, read without unpickling anything."""
    path = Path(path)
    if not (path / CARD).is_file():
        inside = sorted(p.parent.name for p in path.glob(f"*/{CARD}"))
        hint = f"; it holds the model folders {inside}" if inside else ""
        raise BrainlitCheckpointError(f"{path} is not a brainlit model folder (no {CARD}){hint}.")
    card = json.loads((path / CARD).read_text())
    if card.get("format") != MODEL_FORMAT or card.get("format_version", 0) > FORMAT_VERSION:
        raise BrainlitCheckpointError(f"{path / CARD} is not a brainlit model card this brainlit reads "
                                      f"(format {card.get('format')!r}, version {card.get('format_version')}).")
    try:
        with safe_open(str(path / WEIGHTS), framework="pt", device="cpu") as file:
            tensors = {key: file.get_tensor(key) for key in file.keys()}
    except (SafetensorError, OSError) as error:
        raise BrainlitCheckpointError(f"cannot read {path / WEIGHTS}: {error}") from None
    states: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        member, _, name = key.partition(".")
        states.setdefault(member, {})[name] = value
    return card, states


def build_task(hparams: dict, state_dict: dict[str, torch.Tensor]) -> torch.nn.Module:
    """A :class:`~brainlit.tasks.RegressionTask` in eval mode from stored hyperparameters and weights."""
    from brainlit.tasks.regress import RegressionTask

    accepted = inspect.signature(RegressionTask.__init__).parameters
    kwargs = {k: v for k, v in hparams.items() if k in accepted and k != "self"}
    task = RegressionTask(**{**kwargs, "pretrained": None})  # the encoder is in the weights
    task.load_state_dict(state_dict)
    return task.eval()


def export_command(argv: list[str]) -> None:
    """``python -m brainlit export CKPT... OUT``: share a trained model safely.

    Fine-tuning checkpoints (one, or several ensemble members) -> the model folder OUT
    (``model.safetensors`` + ``brainlit_model.json``), which ``python -m brainlit apply`` and
    ``brainlit.load_model`` read. One LMAE pretraining checkpoint -> OUT.safetensors holding
    its encoder, which ``model.pretrained`` loads.
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

