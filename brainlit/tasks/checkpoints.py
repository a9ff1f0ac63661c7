"""Pretrained encoders on disk: safe loading and export to safetensors.

Sharing a pretrained encoder must not mean running someone else's code. Lightning checkpoints
(``.ckpt``) are read with ``torch.load(..., weights_only=True)``, which refuses any pickled
object other than tensors and plain values before building it; an encoder exported with
``python -m brainlit export`` (``.safetensors``) holds only tensors and its
:class:`~brainlit.tasks.specs.EncoderSpec` as JSON metadata.
"""

from __future__ import annotations

import json
import logging
import pickle
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from brainlit.errors import BrainlitCheckpointError, BrainlitOutputError
from brainlit.tasks.specs import EncoderSpec, as_spec, spec_dict

log = logging.getLogger(__name__)

ENCODER_FORMAT = "brainlit-encoder"
PRETRAINER = "LMAEPretrainer"
WHAT_TO_PASS = (
    "model.pretrained takes the checkpoint of `python -m brainlit fit --config "
    "configs/.../pretrain.yaml` or an encoder exported from it with `python -m brainlit export`."
)


def load_encoder(path: str | Path) -> tuple[EncoderSpec, dict[str, torch.Tensor]]:
    """The encoder spec and ``encoder.*`` weights of an LMAE checkpoint or exported encoder.

    Args:
        path: A Lightning checkpoint of :class:`~brainlit.tasks.LMAEPretrainer` (``.ckpt``) or
            a ``.safetensors`` file written by :func:`export_encoder`.

    Raises:
        BrainlitCheckpointError: the file is missing, unreadable, of another kind (e.g. a
            fine-tuning checkpoint), or holds pickled objects that could run code (refused
            before any of them is built).
    """
    path = Path(path)
    if not path.is_file():
        raise BrainlitCheckpointError(
            f"pretrained checkpoint {path} not found: run `python -m brainlit fit --config "
            "configs/.../pretrain.yaml` first, or set `model.pretrained: null`."
        )
    if path.suffix == ".safetensors":
        return _load_safetensors(path)
    return _encoder_of(path, read_checkpoint(path))


def encoder_card(path: str | Path) -> dict[str, Any] | None:
    """The data card (atlas, ROI count, TR) an encoder was pretrained on, where its file records
    one: an LMAE checkpoint's ``brainlit_data`` or an export's ``data_card`` metadata."""
    path = Path(path)
    if path.suffix == ".safetensors":
        with safe_open(str(path), framework="pt", device="cpu") as file:
            card = (file.metadata() or {}).get("data_card")
        return json.loads(card) if card else None
    return read_checkpoint(path).get("brainlit_data")


def read_checkpoint(path: Path) -> dict[str, Any]:
    """A Lightning checkpoint as plain data (tensors, numbers, strings, containers) only."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        reason = _unpickler_reason(error)
        if "global" in reason.lower():
            raise BrainlitCheckpointError(
                f"refused to load {path}: it carries a pickled Python object ({reason}) that could "
                "run code when loaded; nothing of it was run. Load only checkpoints you made, or "
                "share encoders as .safetensors (`python -m brainlit export`)."
            ) from None
        raise _unreadable(path, reason) from None
    except Exception as error:  # torch raises many kinds for truncated or foreign files
        raise _unreadable(path, f"{type(error).__name__}: {error}") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise _unreadable(path, "no state_dict")
    return ckpt


def _encoder_of(path: Path, ckpt: dict[str, Any]) -> tuple[EncoderSpec, dict[str, torch.Tensor]]:
    hparams = ckpt.get("hyper_parameters") or {}
    kind = task_name(hparams)
    if kind != PRETRAINER:
        raise BrainlitCheckpointError(
            f"{path} is {'a ' + kind if kind else 'not a brainlit'} checkpoint, not an "
            f"{PRETRAINER} one: {WHAT_TO_PASS}"
        )
    try:
        spec = as_spec(hparams["encoder"], EncoderSpec)
    except (KeyError, TypeError) as error:
        raise BrainlitCheckpointError(f"{path}: no usable encoder hyperparameters ({error}).") from None
    weights = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items() if ".encoder." in f".{k}"}
    if not weights:
        raise BrainlitCheckpointError(f"{path} holds no encoder weights (model.encoder.*). {WHAT_TO_PASS}")
    return spec, weights


def task_name(hparams: dict[str, Any]) -> str | None:
    """The task class a checkpoint's hyperparameters came from (LightningCLI stores its path)."""
    if "_class_path" in hparams:
        return str(hparams["_class_path"]).rsplit(".", 1)[-1]
    if "target_names" in hparams:
        return "RegressionTask"
    return PRETRAINER if {"encoder", "mask_ratio"} <= set(hparams) else None


def _load_safetensors(path: Path) -> tuple[EncoderSpec, dict[str, torch.Tensor]]:
    try:
        with safe_open(str(path), framework="pt", device="cpu") as file:
            metadata = file.metadata() or {}
            weights = {key: file.get_tensor(key) for key in file.keys()}
    except (SafetensorError, OSError) as error:
        raise _unreadable(path, str(error)) from None
    if metadata.get("format") != ENCODER_FORMAT or "encoder_spec" not in metadata:
        raise BrainlitCheckpointError(f"{path} is a safetensors file but not a brainlit encoder export. {WHAT_TO_PASS}")
    try:
        spec = as_spec(json.loads(metadata["encoder_spec"]), EncoderSpec)
    except (ValueError, TypeError) as error:
        raise BrainlitCheckpointError(f"{path}: unreadable encoder spec in its metadata ({error}).") from None
    return spec, weights


def export_encoder(checkpoint: str | Path, out: str | Path) -> Path:
    """Write the encoder of an LMAE checkpoint as ``.safetensors`` (tensors + JSON spec).

    Args:
        checkpoint: Lightning checkpoint of :class:`~brainlit.tasks.LMAEPretrainer`.
        out: Output file; written to ``<out>.tmp`` first, so it is whole or absent.

    Returns:
        The written path.
    """
    spec, weights = load_encoder(checkpoint)
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    metadata = {"format": ENCODER_FORMAT, "encoder_spec": json.dumps(spec_dict(spec)),
                "source": Path(checkpoint).name}
    card = encoder_card(checkpoint)
    if card is not None:
        metadata["data_card"] = json.dumps(card)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().contiguous().clone() for k, v in weights.items()}, str(tmp), metadata)
        tmp.replace(out)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        raise BrainlitOutputError(f"cannot write {out}: {error.strerror or error}.") from error
    log.info("Encoder of %s (%d tensors) written to %s", checkpoint, len(weights), out)
    return out


def _unpickler_reason(error: Exception) -> str:
    """What torch's weights-only unpickler refused (the line after ``WeightsUnpickler error:``)."""
    _, found, detail = str(error).partition("WeightsUnpickler error:")
    lines = [line.strip() for line in detail.splitlines() if line.strip()]
    return lines[0] if found and lines else type(error).__name__


def _unreadable(path: Path, reason: str) -> BrainlitCheckpointError:
    return BrainlitCheckpointError(
        f"cannot read {path} as a checkpoint ({reason[:200]}): the file is truncated, corrupt or "
        f"of another kind. {WHAT_TO_PASS}"
    )
