"""BrainRegressor: patch encoder -> random-walk MoE -> Mamba predictor -> linear head."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from typing import Any, Literal

import torch
from torch import nn

from brainlit.models.encoder import PatchEncoder
from brainlit.models.rwmoe import RandomWalkMoE, correlation
from brainlit.models.ssm import MambaBlock

log = logging.getLogger(__name__)

# spec field -> BrainRegressor argument, where the names differ (see ``from_specs``)
_MOE_RENAMES = {"dropout": "moe_dropout"}
_SSM_RENAMES = {"layers": "ssm_layers", "backend": "ssm_backend"}


def encoder_weights(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip everything up to the first ``encoder.`` module name from the keys that have one.

    ``model.encoder.transformer.norm.weight`` -> ``transformer.norm.weight``; keys without an
    ``encoder`` component (decoder, optimiser state, ...) are dropped.
    """
    weights = {}
    for key, value in state_dict.items():
        parts = key.split(".")
        if "encoder" in parts[:-1]:
            weights[".".join(parts[parts.index("encoder") + 1 :])] = value
    return weights


class RoiProjection(nn.Module):
    """Pool the R tokens of each patch by a learned projection that keeps ROI identity.

    ``[B, R, P, D]`` -> narrow each token to ``roi_dim`` (weights shared by the ROIs) ->
    concatenate the ROIs of a patch ``[B, P, R * roi_dim]`` -> linear to ``[B, P, D]``.

    Args:
        n_rois: Number of ROIs R.
        d_model: Token width D.
        roi_dim: Channels each ROI keeps.
    """

    def __init__(self, n_rois: int, d_model: int, roi_dim: int = 8) -> None:
        super().__init__()
        self.narrow = nn.Linear(d_model, roi_dim)
        self.project = nn.Linear(n_rois * roi_dim, d_model)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[B, R, P, D]`` -> ``[B, P, D]``."""
        return self.project(self.narrow(tokens).transpose(1, 2).flatten(2))


class BrainRegressor(nn.Module):
    """Regress phenotypes from ROI time series: PatchEncoder -> RandomWalkMoE -> Mamba -> head.

    The SSM reads ``sequence='patch'``: tokens averaged over ROIs, ``[B, P, D]``; or
    ``'roi_major'``: all tokens flattened ROI by ROI, ``[B, R * P, D]``. After ``ssm_layers``
    Mamba blocks the sequence is pooled over time (``pool``), layer-normed, dropped out and
    mapped linearly to one output per target.

    Args:
        encoder: The :class:`PatchEncoder` (pretrained or not); ``R`` and ``D`` are its own.
        n_targets: Number of regressed targets.
        n_experts: Number of expert MLPs.
        top_k: Experts each token is routed to.
        walk_steps: Random-walk steps over the FC graph.
        graph_topk: Neighbours kept per ROI in the FC graph.
        walk_weights: ``learnable`` or ``restart`` random-walk step weights.
        restart_prob: Restart probability for ``walk_weights='restart'``.
        expert_hidden: Hidden width of each expert.
        gating: ``spatial``, ``temporal`` or ``both`` gate logits.
        moe_dropout: Dropout inside the experts.
        walk_encoding: Add each ROI's embedded multi-step transition rows to its tokens (RWMOE).
        fc_rows: Add each ROI's embedded signed correlation row to its tokens (RWMOE).
        graph: Walk graph from each window's FC (``sample``) or a running cohort mean (``cohort``).
        graph_momentum: Weight of each training batch in the ``cohort`` running mean.
        graph_window: Volumes of a per-patch FC window: each patch walks its own graph (RWMOE).
        graph_window_mode: ``replace`` the window's graph by the per-patch ones, or ``add``
            their encoding to it (RWMOE).
        ssm_layers: Number of Mamba blocks.
        d_state: SSM state size.
        d_conv: Width of the Mamba causal convolution.
        expand: Mamba inner width as a multiple of ``d_model``.
        ssm_backend: ``auto``, ``cuda`` (mamba-ssm kernels) or ``torch``.
        sequence: ``patch`` (pool ROIs, scan patches) or ``roi_major`` (scan all tokens).
        pool: ``mean`` over the sequence, or ``stats``: mean and standard deviation of every
            channel over the sequence, concatenated (statistics pooling, as in x-vector speaker
            embeddings, Snyder et al. 2018). A mean keeps what the scan's tokens share; how
            much a learned feature moves over the scan (e.g. how coupling changes) is lost in
            it and kept by the standard deviation.
        roi_pool: For ``patch``: ``linear`` narrows every token to ``roi_dim`` channels (shared
            weights), concatenates a patch's R narrowed tokens and projects ``[R * roi_dim]`` to
            ``D``, so which ROI carried what survives; ``mean`` averages the ROI tokens (ROI
            identity is lost, and an effect that lives in *which* ROI pairs couple, such as
            ageing's within- vs between-network shift, is hard to read out).
        roi_dim: Channels per ROI in the ``linear`` pool. The narrowing keeps the projection at
            ``R * roi_dim * D`` weights instead of ``R * D^2`` (4.3 M for 264 ROIs at D = 128).
        head_dropout: Dropout before the linear head.
    """

    def __init__(
        self,
        encoder: PatchEncoder,
        n_targets: int,
        n_experts: int = 8,
        top_k: int = 2,
        walk_steps: int = 3,
        graph_topk: int = 10,
        walk_weights: Literal["learnable", "restart"] = "learnable",
        restart_prob: float = 0.3,
        expert_hidden: int = 256,
        gating: Literal["spatial", "temporal", "both"] = "both",
        moe_dropout: float = 0.0,
        walk_encoding: bool = True,
        fc_rows: bool = True,
        graph: Literal["sample", "cohort"] = "sample",
        graph_momentum: float = 0.1,
        graph_window: int = 0,
        graph_window_mode: Literal["replace", "add"] = "replace",
        ssm_layers: int = 2,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        ssm_backend: Literal["auto", "cuda", "torch"] = "auto",
        sequence: Literal["patch", "roi_major"] = "patch",
        pool: Literal["mean", "stats"] = "mean",
        roi_pool: Literal["linear", "mean"] = "linear",
        roi_dim: int = 8,
        head_dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if sequence not in ("patch", "roi_major") or roi_pool not in ("linear", "mean"):
            raise ValueError(
                f"need sequence in {{patch, roi_major}} and roi_pool in {{linear, mean}}, "
                f"got {sequence!r}, {roi_pool!r}."
            )
        if pool not in ("mean", "stats"):
            raise ValueError(f"need pool in {{mean, stats}}, got {pool!r}.")
        self.sequence, self.pool = sequence, pool
        self.encoder = encoder
        n_rois, d_model = encoder.n_rois, encoder.d_model
        self.moe = RandomWalkMoE(
            d_model, n_experts, top_k, walk_steps, graph_topk, walk_weights, restart_prob,
            expert_hidden, gating, moe_dropout, n_rois, walk_encoding, fc_rows, graph,
            graph_momentum, graph_window, encoder.patch_len, graph_window_mode,
        )  # fmt: skip
        linear_pool = sequence == "patch" and roi_pool == "linear"
        self.roi_pool = RoiProjection(n_rois, d_model, roi_dim) if linear_pool else None
        self.ssm = nn.ModuleList(
            MambaBlock(d_model, d_state, d_conv, expand, ssm_backend) for _ in range(ssm_layers)
        )
        pooled_dim = d_model * (2 if pool == "stats" else 1)
        self.norm = nn.LayerNorm(pooled_dim)
        self.head_dropout = nn.Dropout(head_dropout)
        self.head = nn.Linear(pooled_dim, n_targets)

    @classmethod
    def from_specs(cls, n_rois: int, n_targets: int, encoder: dict[str, Any], moe: Any, ssm: Any) -> BrainRegressor:
        """Build from the encoder's arguments and the grouped ``MoESpec`` and ``SSMSpec`` dataclasses.

        Args:
            n_rois: Number of ROIs.
            n_targets: Number of regressed targets.
            encoder: PatchEncoder arguments other than ``n_rois`` (``patch_len``, ``d_model`` ...).
            moe: Dataclass of RandomWalkMoE arguments (``dropout`` becomes ``moe_dropout``).
            ssm: Dataclass of the Mamba predictor's arguments (``layers`` becomes ``ssm_layers``).
        """
        kwargs = {_MOE_RENAMES.get(k, k): v for k, v in dataclasses.asdict(moe).items()}
        kwargs.update({_SSM_RENAMES.get(k, k): v for k, v in dataclasses.asdict(ssm).items()})
        return cls(PatchEncoder(n_rois, **encoder), n_targets, **kwargs)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Predict z-scored targets from ROI time series ``x: [B, R, T]``.

        Returns:
            ``pred`` ``[B, n_targets]`` and ``aux`` with ``balance_loss`` (scalar) and
            ``roi_expert_weights`` ``[B, R, E]``.
        """
        tokens, aux = self.moe(self.encoder(x), x, correlation(x))  # [B, R, P, D]
        sequence = self.to_sequence(tokens)  # [B, L, D]
        for block in self.ssm:
            sequence = block(sequence)
        pooled = self.norm(self.pool_time(sequence))  # [B, D] or [B, 2D]
        return self.head(self.head_dropout(pooled)), aux

    def pool_time(self, sequence: torch.Tensor) -> torch.Tensor:
        """``[B, L, D]`` -> ``[B, D]`` (``mean``) or ``[B, 2 D]`` (``stats``: mean, then std)."""
        mean = sequence.mean(1)
        if self.pool == "mean":
            return mean
        std = (sequence - mean.unsqueeze(1)).square().mean(1).add(1e-6).sqrt()
        return torch.cat([mean, std], dim=-1)

    def to_sequence(self, tokens: torch.Tensor) -> torch.Tensor:
        """The SSM's input ``[B, L, D]`` from tokens ``[B, R, P, D]`` (see ``sequence``, ``roi_pool``)."""
        if self.sequence == "roi_major":
            return tokens.flatten(1, 2)
        if self.roi_pool is None:
            return tokens.mean(1)
        return self.roi_pool(tokens)

    def load_pretrained_encoder(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Load LMAE encoder weights: keys ``encoder.*`` under any prefix (e.g. ``model.encoder.*``).

        Args:
            state_dict: A state dict holding the encoder weights, e.g. an LMAE module's or a
                Lightning checkpoint's ``state_dict``.

        Raises:
            ValueError: when no encoder key is found, keys are missing or unexpected, or a
                shape differs (the message lists them).
        """
        weights = encoder_weights(state_dict)
        own = self.encoder.state_dict()
        missing, unexpected = (
            sorted(own.keys() - weights.keys()),
            sorted(weights.keys() - own.keys()),
        )
        mismatched = [
            f"{k}: checkpoint {tuple(weights[k].shape)} vs model {tuple(v.shape)}"
            for k, v in own.items()
            if k in weights and weights[k].shape != v.shape
        ]
        if missing or unexpected or mismatched:
            raise ValueError(
                "pretrained encoder does not match this model's encoder (same encoder settings and "
                f"n_rois needed): missing={missing[:5]}, unexpected={unexpected[:5]}, "
                f"shape mismatch={mismatched[:5]}"
            )
        self.encoder.load_state_dict(weights)
        log.info("Loaded %d pretrained encoder tensors.", len(weights))

    def encoder_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        """``(name, parameter)`` of the (pretrainable) encoder, for a separate learning rate."""
        return ((n, p) for n, p in self.named_parameters() if n.startswith("encoder."))

    def head_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        """``(name, parameter)`` of the rest: random-walk MoE, ROI pooling, Mamba, norm and head."""
        return ((n, p) for n, p in self.named_parameters() if not n.startswith("encoder."))
