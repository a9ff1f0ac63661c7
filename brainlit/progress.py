"""Training progress a log file can hold: one plain line per epoch instead of ``\\r`` updates.

On a terminal Lightning's own bar stays; in a CI, SLURM or ``experiment`` log (stderr is not a
TTY) :class:`EpochLines` replaces it, as the cache's :class:`~brainlit.data.parallel.Progress`
does for parcellation.
"""

from __future__ import annotations

import logging
import sys
import time

import lightning as L
from lightning.pytorch.callbacks import ProgressBar

log = logging.getLogger(__name__)


def wants_plain_lines() -> bool:
    """True when stderr (where progress bars draw) is not a terminal."""
    return not sys.stderr.isatty()


class EpochLines(ProgressBar):
    """Logs ``epoch 3/15 (12 steps, 4.1 s): train/loss 0.41, val/loss 0.52, val/age/mae 11.2``.

    Shows the losses, every per-target MAE and network-share weight the task logged; nothing
    per batch.
    """

    def __init__(self) -> None:
        super().__init__()
        self._enabled, self._start = True, time.perf_counter()

    def disable(self) -> None:
        """Silence (Lightning calls this on ranks other than 0)."""
        self._enabled = False

    def enable(self) -> None:
        """Print again."""
        self._enabled = True

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Start the epoch's clock."""
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """One line: epoch, steps, seconds and the epoch's losses, MAEs and shares (after validation)."""
        if not self._enabled or trainer.sanity_checking:
            return
        shown = {k: float(v) for k, v in trainer.callback_metrics.items()
                 if k.endswith(("loss", "/mae", "/share"))}
        values = ", ".join(f"{k} {v:.4g}" for k, v in sorted(shown.items()))
        total = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else "?"
        log.info("epoch %d/%s (%d steps, %.1f s): %s", trainer.current_epoch + 1, total,
                 trainer.num_training_batches, time.perf_counter() - self._start, values)
