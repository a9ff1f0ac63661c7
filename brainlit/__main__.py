"""``python -m brainlit [--verbose] COMMAND``: ``cache``, ``experiment``, ``export-encoder``;
everything else is LightningCLI (``fit``, ``validate``, ``test``, ``predict``).

An error the user can act on (:class:`~brainlit.errors.BrainlitError`: bad data, a missing
or unsafe checkpoint, an output that cannot be written) is printed as ``error: <message>``
with exit status 2, as jsonargparse does for a bad option. ``--verbose`` (before the command)
also prints its traceback and brainlit's debug messages.
"""

from __future__ import annotations

import logging
import sys

import torch
from jsonargparse import ArgumentParser

from brainlit.cli import BrainlitCLI, cache_command
from brainlit.errors import BrainlitError
from brainlit.experiment import experiment_main
from brainlit.tasks.checkpoints import export_encoder

log = logging.getLogger("brainlit")


def export_encoder_command(argv: list[str]) -> None:
    """``python -m brainlit export-encoder CKPT OUT.safetensors``: share an encoder safely.

    Writes the encoder weights of an LMAE pretraining checkpoint with its architecture as JSON
    metadata; ``model.pretrained`` loads the file like the checkpoint, without unpickling.
    """
    parser = ArgumentParser(prog="python -m brainlit export-encoder", description=export_encoder_command.__doc__)
    parser.add_argument("checkpoint", type=str, help="LMAE pretraining checkpoint (.ckpt)")
    parser.add_argument("out", type=str, help="output file (.safetensors)")
    args = parser.parse_args(argv)
    print(f"Encoder written to {export_encoder(args.checkpoint, args.out)}")


def _dispatch(argv: list[str]) -> None:
    command = argv[0] if argv else None
    if command == "cache":
        cache_command(argv[1:])
    elif command == "experiment":
        experiment_main(argv[1:])
    elif command == "export-encoder":
        export_encoder_command(argv[1:])
    else:
        BrainlitCLI(args=argv)


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m brainlit`` and the ``brainlit`` script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = bool(argv) and argv[0] == "--verbose"
    argv = argv[1:] if verbose else argv
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if verbose:
        log.setLevel(logging.DEBUG)
    torch.set_float32_matmul_precision("high")
    try:
        _dispatch(argv)
    except Exception as error:
        user_error = _user_error(error)
        if user_error is None:
            raise
        if log.isEnabledFor(logging.DEBUG):
            log.exception("Traceback of the error below")
        print(f"error: {user_error}", file=sys.stderr)
        sys.exit(2)


def _user_error(error: BaseException | None) -> BrainlitError | None:
    """The :class:`BrainlitError` behind ``error``: jsonargparse wraps what a class raises
    while it is instantiated (e.g. a bad ``model.pretrained``) in its own ValueError."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, BrainlitError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


if __name__ == "__main__":
    main()
