"""``python -m brainlit [--verbose] COMMAND``: the one front door to every brainlit command.

``fit``, ``validate``, ``test`` and ``predict`` are LightningCLI; the others are brainlit's own
(see :data:`COMMANDS`). ``python -m brainlit`` alone, or with ``--help``, lists them.

An error the user can act on (:class:`~brainlit.errors.BrainlitError`: bad data, a missing
or unsafe checkpoint, an output that cannot be written) is printed as ``error: <message>``
with exit status 2, as jsonargparse does for a bad option. ``--verbose`` (before the command)
also prints its traceback and brainlit's debug messages.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from brainlit.errors import BrainlitError

log = logging.getLogger("brainlit")

# command -> one line of help; the order is the order of a session: train, apply, utilities
COMMANDS = {
    "fit": "train a model from a config (LightningCLI; --help lists every option)",
    "validate": "score a checkpoint on the validation subjects",
    "test": "score a checkpoint on the test fold",
    "predict": "write predictions.csv for every subject with imaging, labelled or not",
    "cache": "parcellate a cohort once into the HDF5 cache and print a summary",
    "experiment": "cache, pretrain, cross-validate, baselines, report and the final model folder",
    "export": "checkpoints -> a model folder (fine-tuned) or encoder .safetensors (LMAE)",
    "apply": "predict a new cohort with a model folder: predictions and brain-age gap",
    "simulate": "write a simulated cohort (BIDS, arrays or Cam-CAN-shaped) with known ground truth",
}
LIGHTNING = ("fit", "validate", "test", "predict")


def program_name() -> str:
    """``brainlit`` when run as the installed script, else ``python -m brainlit``."""
    return "brainlit" if Path(sys.argv[0]).name == "brainlit" else "python -m brainlit"


def usage() -> str:
    """The command list a bare ``python -m brainlit`` and ``--help`` print."""
    width, prog = max(map(len, COMMANDS)), program_name()
    lines = [f"usage: {prog} [--verbose] COMMAND [OPTIONS]", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, text in COMMANDS.items()]
    lines += ["", f"`{prog} COMMAND --help` shows a command's options; --verbose prints tracebacks."]
    return "\n".join(lines)


def _handler(command: str) -> Callable[[list[str]], None]:
    """The function that runs ``command`` (imported late: ``--help`` stays fast)."""
    prog = program_name()
    if command in LIGHTNING:
        from brainlit.cli import BrainlitCLI

        return lambda argv: BrainlitCLI(args=[command, *argv], parser_kwargs={"prog": prog})
    if command == "cache":
        from brainlit.cli import cache_command as run
    elif command == "experiment":
        from brainlit.experiment import experiment_main as run
    elif command == "export":
        from brainlit.model_folder import export_command as run
    elif command == "apply":
        from brainlit.apply import apply_command as run
    else:
        from brainlit.data.simulate.cli import main as simulate

        return lambda argv: simulate(argv, prog=f"{prog} simulate")
    return run


def _dispatch(argv: list[str]) -> None:
    command = argv[0] if argv else None
    if command in (None, "-h", "--help"):
        print(usage())
        return
    if command not in COMMANDS:
        print(usage(), file=sys.stderr)
        print(f"error: unknown command {command!r}: choose one of {', '.join(COMMANDS)}.", file=sys.stderr)
        sys.exit(2)
    _handler(command)(argv[1:])


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
