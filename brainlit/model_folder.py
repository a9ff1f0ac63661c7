"""Trained models as artefacts: ``python -m brainlit export``."""

from __future__ import annotations

import logging

from jsonargparse import ArgumentParser

from brainlit.tasks.checkpoints import export_encoder

log = logging.getLogger(__name__)


def export_command(argv: list[str]) -> None:
    """``python -m brainlit export CKPT OUT.safetensors``: share an LMAE encoder safely.

    Writes the encoder weights of an LMAE pretraining checkpoint with its architecture as JSON
    metadata; ``model.pretrained`` loads the file like the checkpoint, without unpickling.
    """
    parser = ArgumentParser(prog="python -m brainlit export", description=export_command.__doc__)
    parser.add_argument("checkpoint", type=str, help="LMAE pretraining checkpoint (.ckpt)")
    parser.add_argument("out", type=str, help="output file (.safetensors)")
    args = parser.parse_args(argv)
    print(f"Encoder written to {export_encoder(args.checkpoint, args.out)}")
