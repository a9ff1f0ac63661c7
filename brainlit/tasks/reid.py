"""Subject re-identification on held-out runs: has pretraining learned what stays fixed in a subject?

Each held-out run is cut into two disjoint halves; a subject is re-identified when the
features of one half are nearest to the features of its own other half among all held-out
subjects (:func:`~brainlit.models.contrastive.reidentification_accuracy`). Three features are
scored: the encoder's tokens mean-pooled (``encoder_mean``), the tokens' own connectivity
(``encoder_fc``), and the halves' BOLD correlation matrices (``fc``: connectome
fingerprinting, Finn et al. 2015), the simple thing the encoder has to match; and chance
(``1 / N``).
"""

from __future__ import annotations

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from brainlit.models.contrastive import pool_tokens, reidentification_accuracy, token_connectivity
from brainlit.models.rwmoe import correlation

FEATURES = ("encoder_mean", "encoder_fc", "fc")


def run_halves(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The first and second half of runs ``x: [B, R, T]``, ``[B, R, T // 2]`` each (no overlap)."""
    half = x.shape[-1] // 2
    return x[..., :half], x[..., half : 2 * half]


def fc_edges(x: torch.Tensor) -> torch.Tensor:
    """Upper-triangle Pearson correlations ``[B, R (R - 1) / 2]`` of ``x: [B, R, T]``."""
    rows, cols = torch.triu_indices(x.shape[1], x.shape[1], offset=1, device=x.device)
    return correlation(x)[:, rows, cols]


class ReidentificationMetrics(Metric):
    """Top-1 re-identification accuracy of the encoder's tokens and of FC over the epoch's subjects.

    States are concatenated across processes, so under DDP every held-out subject competes
    with every other one.
    """

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        for feature in FEATURES:
            for half in ("first", "second"):
                self.add_state(f"{feature}_{half}", default=[], dist_reduce_fx="cat")

    def update(self, halves: tuple[torch.Tensor, torch.Tensor],
               tokens: tuple[torch.Tensor, torch.Tensor]) -> None:
        """Add a batch: the two halves ``[B, R, T / 2]`` and the encoder's tokens of each ``[B, R, P, D]``."""
        for half, series, encoded in zip(("first", "second"), halves, tokens, strict=True):
            encoded = encoded.detach()
            getattr(self, f"encoder_mean_{half}").append(pool_tokens(encoded).float())
            getattr(self, f"encoder_fc_{half}").append(token_connectivity(encoded))
            getattr(self, f"fc_{half}").append(fc_edges(series.detach()))

    def compute(self) -> dict[str, float]:
        """``{reid_<feature>, reid_chance}``; empty with fewer than two subjects."""
        if self.update_count == 0:
            return {}
        n = len(dim_zero_cat(self.fc_first))
        if n < 2:
            return {}
        values = {f"reid_{feature}": reidentification_accuracy(dim_zero_cat(getattr(self, f"{feature}_first")),
                                                               dim_zero_cat(getattr(self, f"{feature}_second")))
                  for feature in FEATURES}
        return {**values, "reid_chance": 1.0 / n}


def format_reidentification(values: dict[str, float]) -> str:
    """Aligned ``name  accuracy`` lines of the re-identification diagnostics present in ``values``."""
    names = [f"reid_{f}" for f in FEATURES] + ["reid_chance"]
    return "\n".join(f"  {name:<20} {values[name]:.3f}" for name in names if name in values)
