"""Subject-contrastive pretext: two windows of one subject's run are a positive pair.

What stays fixed between two windows of the same run (the subject's connectivity fingerprint,
and with it the traits it carries) is what the encoder must keep to tell subjects apart; what
changes from window to window (momentary state, noise) it may drop. The loss is NT-Xent
(SimCLR, Chen et al. 2020) on a pooled embedding of the encoder's tokens through a small
projection head; the other subjects of the batch are the negatives. The pooling is either the
tokens' own connectivity (second-order, the default) or their mean. The evidence for this
pretext and its defaults is in ``docs/research/contrastive_pretext.md``.

Plain PyTorch, no Lightning: :class:`~brainlit.tasks.LMAEPretrainer` wires it.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

Pooling = Literal["connectivity", "mean"]


def pool_tokens(tokens: torch.Tensor) -> torch.Tensor:
    """Mean over ROIs and patches: ``[B, R, P, D]`` -> ``[B, D]``."""
    return tokens.mean(dim=(1, 2))


def token_connectivity(tokens: torch.Tensor) -> torch.Tensor:
    """The tokens' own connectivity, ``[B, R, P, D]`` -> ``[B, R (R - 1) / 2]`` (float32).

    For each feature, the Pearson correlation over patches between every two ROIs' token
    series, averaged over the ``D`` features; the upper triangle. Like FC of the BOLD, but of
    what the encoder makes of it: subjects differ mostly in second-order structure, which a
    mean over patches cannot show.
    """
    centred = tokens.float() - tokens.float().mean(2, keepdim=True)
    unit = centred / centred.norm(dim=2, keepdim=True).clamp_min(1e-6)  # each ROI's feature series
    correlation = torch.einsum("brpd,bspd->brs", unit, unit) / tokens.shape[-1]  # [B, R, R]
    rows, cols = torch.triu_indices(tokens.shape[1], tokens.shape[1], offset=1, device=tokens.device)
    return correlation[:, rows, cols]


POOLS = {"connectivity": token_connectivity, "mean": pool_tokens}


def nt_xent(first: torch.Tensor, second: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent loss of paired embeddings (computed in float32).

    Row ``i`` of ``first`` and row ``i`` of ``second`` are one subject's two views; each of the
    ``2B`` embeddings must pick its partner out of the other ``2B - 1`` by cosine similarity.

    Args:
        first: Embeddings of the first views ``[B, K]``, ``B >= 2``.
        second: Embeddings of the second views ``[B, K]``.
        temperature: Softmax temperature of the cosine similarities.

    Returns:
        The mean cross-entropy over the ``2B`` embeddings: ``log(2B - 1)`` when every
        similarity is equal, near 0 when every partner stands out.
    """
    n = first.shape[0]
    if n < 2 or second.shape != first.shape:
        raise ValueError(f"need two matching batches of >= 2 embeddings, got {tuple(first.shape)} "
                         f"and {tuple(second.shape)}: a batch of one subject has no negatives.")
    unit = F.normalize(torch.cat([first, second]).float(), dim=-1)  # [2B, K]
    logits = unit @ unit.T / temperature
    self_pair = torch.eye(2 * n, dtype=torch.bool, device=unit.device)
    logits = logits.masked_fill(self_pair, float("-inf"))
    partner = torch.arange(2 * n, device=unit.device).roll(n)  # i <-> i + B
    return F.cross_entropy(logits, partner)


class SubjectContrastiveHead(nn.Module):
    """Pooled tokens -> projection MLP -> NT-Xent between two views of each subject.

    The head holds no encoder: it scores the tokens ``[B, R, P, D]`` an encoder gave for each
    view, so the encoder's weights stay where fine-tuning reads them. The head is dropped after
    pretraining, as in SimCLR. A BatchNorm after the first layer (SimCLR's head has one) removes
    what every subject of the batch shares; without it the loss stayed at chance.

    Args:
        d_model: Width of the encoder's tokens.
        n_rois: Number of ROIs (the width of ``connectivity`` pooling).
        pooling: ``connectivity`` (:func:`token_connectivity`) or ``mean`` (:func:`pool_tokens`).
        hidden_dim: Hidden width of the projection MLP.
        proj_dim: Width of the projected embedding the loss compares.
        temperature: Softmax temperature of NT-Xent.
    """

    def __init__(self, d_model: int, n_rois: int, pooling: Pooling = "connectivity", hidden_dim: int = 128,
                 proj_dim: int = 64, temperature: float = 0.1) -> None:
        super().__init__()
        if temperature <= 0 or pooling not in POOLS:
            raise ValueError(f"need a positive temperature (got {temperature}) and pooling in {sorted(POOLS)} "
                             f"(got {pooling!r}).")
        self.temperature, self.pool = temperature, POOLS[pooling]
        width = d_model if pooling == "mean" else n_rois * (n_rois - 1) // 2
        self.projection = nn.Sequential(nn.Linear(width, hidden_dim), nn.BatchNorm1d(hidden_dim), nn.GELU(),
                                        nn.Linear(hidden_dim, proj_dim))

    def project(self, tokens: torch.Tensor) -> torch.Tensor:
        """Projected embedding ``[B, proj_dim]`` of tokens ``[B, R, P, D]``."""
        return self.projection(self.pool(tokens))

    def forward(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        """NT-Xent between the tokens of two views ``[B, R, P, D]`` each (their P may differ)."""
        return nt_xent(self.project(first), self.project(second), self.temperature)


def reidentification_accuracy(first: torch.Tensor, second: torch.Tensor) -> float:
    """Top-1 subject re-identification between two views, both directions averaged.

    Each row of ``first`` ``[N, F]`` is matched to the most similar row of ``second`` ``[N, F]``
    and vice versa: cosine similarity after z-scoring each feature over the ``2N`` rows, so
    neither a component all subjects share nor a feature of large spread decides. Chance is
    ``1 / N``. With correlation matrices as features this is connectome fingerprinting (Finn et
    al. 2015).
    """
    rows = torch.cat([first, second]).double()
    unit = F.normalize((rows - rows.mean(0)) / rows.std(0).clamp_min(1e-12), dim=-1)
    similarity = unit[: len(first)] @ unit[len(first) :].T  # [N, N]
    own = torch.arange(len(first), device=similarity.device)
    hits = (similarity.argmax(1) == own).double().mean() + (similarity.argmax(0) == own).double().mean()
    return float(hits / 2)
