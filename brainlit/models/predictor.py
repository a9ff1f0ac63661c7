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


def autocorrelation(x: torch.Tensor, lags: int) -> torch.Tensor:
    """Each ROI's autocorrelation at lags ``1..lags``: ``x: [B, R, T]`` -> ``[B, lags * R]`` (lag-major).

    The window's own temporal structure, which zero-lag FC discards: z-score each ROI over
    the window, then average ``z[t] * z[t + lag]``. Computed in float32 even under autocast.
    """
    with torch.autocast(device_type=x.device.type, enabled=False):
        x = x.float()
        z = (x - x.mean(-1, keepdim=True)) / x.std(-1, unbiased=False, keepdim=True).clamp_min(1e-8)
        return torch.cat([(z[..., lag:] * z[..., :-lag]).mean(-1) for lag in range(1, lags + 1)], dim=1)


def ledoit_wolf(x: torch.Tensor) -> torch.Tensor:
    """Ledoit-Wolf shrunk covariance of each sample's ROI series: ``x: [B, R, T]`` -> ``[B, R, R]``.

    The estimator nilearn's ``ConnectivityMeasure`` uses (sklearn's ``LedoitWolf``, series
    centred over time), in batched torch so that it runs per window on any device. The
    shrinkage towards ``trace / R * I`` keeps every window's covariance positive definite.
    """
    x = x - x.mean(-1, keepdim=True)
    n, p = x.shape[-1], x.shape[-2]
    cov = x @ x.transpose(-1, -2) / n  # [B, R, R]
    mu = cov.diagonal(dim1=-2, dim2=-1).mean(-1)  # [B]
    squared = x**2
    beta = ((squared @ squared.transpose(-1, -2)).sum((-2, -1)) / n - (cov**2).sum((-2, -1))) / (p * n)
    identity = torch.eye(p, dtype=x.dtype, device=x.device)
    delta = ((cov - mu[:, None, None] * identity) ** 2).sum((-2, -1)) / p
    shrinkage = torch.where(delta > 0, torch.minimum(beta, delta) / delta.clamp_min(1e-30), 0.0)
    return (1 - shrinkage)[:, None, None] * cov + (shrinkage * mu)[:, None, None] * identity


def tangent_space(cov: torch.Tensor, whitening: torch.Tensor) -> torch.Tensor:
    """``logm(W C W)``: covariances ``[B, R, R]`` projected at the reference whose ``W = ref^(-1/2)``.

    The tangent-space parametrisation of Varoquaux et al. (2010) that nilearn's
    ``ConnectivityMeasure(kind="tangent")`` computes, each subject's deviation from the group's
    geometric mean, here batched in torch.
    """
    whitened = whitening @ cov @ whitening
    values, vectors = torch.linalg.eigh((whitened + whitened.transpose(-1, -2)) / 2)
    return vectors @ torch.diag_embed(values.clamp_min(1e-10).log()) @ vectors.transpose(-1, -2)


class FCReadout(nn.Module):
    """Linear read-out of the window's FC edges (and optionally each ROI's autocorrelation),
    ``x [B, R, T]``, ``fc [B, R, R]`` -> ``[B, n_targets]``.

    The features kernel ridge and tangent ridge get ready-made, handed to the model directly:
    ``connectivity='correlation'`` reads the Fisher-z correlation upper triangle;
    ``'tangent'`` the upper triangle of each window's Ledoit-Wolf covariance projected into
    the tangent space at a reference (Dadi et al. 2019: the strongest classical FC features),
    which :meth:`set_reference` installs from training subjects (identity until then). With
    ``lags > 0`` each ROI's autocorrelation at lags 1..lags joins them: the temporal structure
    FC discards (``benchmarks/beyond_fc.py`` measures what it adds in closed form). The
    weights start at zero, so at initialisation the model's output is the SSM path's alone.

    Args:
        n_rois: Number of ROIs R.
        n_targets: Number of outputs.
        dropout: Dropout on the features (a ridge-like penalty in expectation).
        clip: ``|r|`` is clipped to this before arctanh.
        lags: Autocorrelation lags per ROI added to the features (0: FC only).
        connectivity: ``correlation`` or ``tangent`` edges.
    """

    def __init__(
        self,
        n_rois: int,
        n_targets: int,
        dropout: float = 0.0,
        clip: float = 0.999,
        lags: int = 0,
        connectivity: Literal["correlation", "tangent"] = "correlation",
    ) -> None:
        super().__init__()
        if connectivity not in ("correlation", "tangent"):
            raise ValueError(f"connectivity must be 'correlation' or 'tangent', got {connectivity!r}")
        self.register_buffer("upper", torch.triu_indices(n_rois, n_rois, 1), persistent=False)
        # reference^(-1/2) of the tangent space; saved only where it is used, so older checkpoints load
        whitening = torch.eye(n_rois, dtype=torch.float64)
        self.register_buffer("whitening", whitening, persistent=connectivity == "tangent")
        self.clip, self.lags, self.connectivity = clip, lags, connectivity
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(self.upper.shape[1] + lags * n_rois, n_targets)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def features(self, x: torch.Tensor, fc: torch.Tensor) -> torch.Tensor:
        """FC edges (of ``fc: [B, R, R]``, or tangent of ``x``) then, with ``lags``, autocorrelations of ``x``."""
        edges = self.edges(x, fc)[:, self.upper[0], self.upper[1]]
        return torch.cat([edges, autocorrelation(x, self.lags)], dim=1) if self.lags else edges

    def edges(self, x: torch.Tensor, fc: torch.Tensor) -> torch.Tensor:
        """``[B, R, R]``: Fisher-z correlations, or tangent-space covariances in float64 for ``tangent``."""
        if self.connectivity == "correlation":
            return torch.atanh(fc.clamp(-self.clip, self.clip))
        with torch.autocast(device_type=x.device.type, enabled=False):
            return tangent_space(ledoit_wolf(x.double()), self.whitening.double()).to(fc.dtype)

    @torch.no_grad()
    def set_reference(self, whitening: torch.Tensor) -> None:
        """Install the tangent reference as ``reference^(-1/2)`` ``[R, R]`` (nilearn's ``whitening_``)."""
        self.whitening.copy_(whitening)

    def forward(self, x: torch.Tensor, fc: torch.Tensor) -> torch.Tensor:
        """``x: [B, R, T]`` series and ``fc: [B, R, R]`` their correlations -> ``[B, n_targets]``."""
        return self.linear(self.dropout(self.features(x, fc)))

    @torch.no_grad()
    def set_weights(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        """Install a read-out fit elsewhere (e.g. in closed form): ``weight [n_targets, E]``, ``bias``."""
        self.linear.weight.copy_(weight)
        self.linear.bias.copy_(bias)


class BrainRegressor(nn.Module):
    """Regress phenotypes from ROI time series: PatchEncoder -> RandomWalkMoE -> Mamba -> head.

    The SSM reads ``sequence='patch'``: tokens averaged over ROIs, ``[B, P, D]``; or
    ``'roi_major'``: all tokens flattened ROI by ROI, ``[B, R * P, D]``. After ``ssm_layers``
    Mamba blocks the sequence is mean-pooled, layer-normed, dropped out and mapped linearly to
    one output per target.

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
        ssm_layers: Number of Mamba blocks.
        d_state: SSM state size.
        d_conv: Width of the Mamba causal convolution.
        expand: Mamba inner width as a multiple of ``d_model``.
        ssm_backend: ``auto``, ``cuda`` (mamba-ssm kernels) or ``torch``.
        sequence: ``patch`` (pool ROIs, scan patches) or ``roi_major`` (scan all tokens).
        roi_pool: For ``patch``: ``linear`` narrows every token to ``roi_dim`` channels (shared
            weights), concatenates a patch's R narrowed tokens and projects ``[R * roi_dim]`` to
            ``D``, so which ROI carried what survives; ``mean`` averages the ROI tokens (ROI
            identity is lost, and an effect that lives in *which* ROI pairs couple, such as
            ageing's within- vs between-network shift, is hard to read out).
        roi_dim: Channels per ROI in the ``linear`` pool. The narrowing keeps the projection at
            ``R * roi_dim * D`` weights instead of ``R * D^2`` (4.3 M for 264 ROIs at D = 128).
        head_dropout: Dropout before the linear head.
        fc_readout: Add :class:`FCReadout` of the window's FC to the SSM head's output, so the
            correlation structure reaches the prediction through a linear path as well.
        fc_dropout: Dropout on the FC read-out's features.
        readout_lags: Autocorrelation lags per ROI the FC read-out also reads (0: FC only).
        readout_connectivity: ``correlation`` or ``tangent`` edges in the FC read-out.
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
        ssm_layers: int = 2,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        ssm_backend: Literal["auto", "cuda", "torch"] = "auto",
        sequence: Literal["patch", "roi_major"] = "patch",
        roi_pool: Literal["linear", "mean"] = "linear",
        roi_dim: int = 8,
        head_dropout: float = 0.1,
        fc_readout: bool = False,
        fc_dropout: float = 0.0,
        readout_lags: int = 0,
        readout_connectivity: Literal["correlation", "tangent"] = "correlation",
    ) -> None:
        super().__init__()
        if sequence not in ("patch", "roi_major") or roi_pool not in ("linear", "mean"):
            raise ValueError(
                f"need sequence in {{patch, roi_major}} and roi_pool in {{linear, mean}}, "
                f"got {sequence!r}, {roi_pool!r}."
            )
        self.sequence = sequence
        self.encoder = encoder
        n_rois, d_model = encoder.n_rois, encoder.d_model
        self.moe = RandomWalkMoE(
            d_model, n_experts, top_k, walk_steps, graph_topk, walk_weights, restart_prob,
            expert_hidden, gating, moe_dropout, n_rois, walk_encoding, fc_rows, graph,
            graph_momentum,
        )  # fmt: skip
        linear_pool = sequence == "patch" and roi_pool == "linear"
        self.roi_pool = RoiProjection(n_rois, d_model, roi_dim) if linear_pool else None
        self.ssm = nn.ModuleList(
            MambaBlock(d_model, d_state, d_conv, expand, ssm_backend) for _ in range(ssm_layers)
        )
        self.norm = nn.LayerNorm(d_model)
        self.head_dropout = nn.Dropout(head_dropout)
        self.head = nn.Linear(d_model, n_targets)
        self.fc_readout = (
            FCReadout(n_rois, n_targets, fc_dropout, lags=readout_lags, connectivity=readout_connectivity)
            if fc_readout else None
        )

    @classmethod
    def from_specs(
        cls,
        n_rois: int,
        n_targets: int,
        encoder: dict[str, Any],
        moe: Any,
        ssm: Any,
        head_dropout: float = 0.1,
        fc_readout: bool = False,
        fc_dropout: float = 0.0,
        readout_lags: int = 0,
        readout_connectivity: Literal["correlation", "tangent"] = "correlation",
    ) -> BrainRegressor:
        """Build from the encoder's arguments and the grouped ``MoESpec`` and ``SSMSpec`` dataclasses.

        Args:
            n_rois: Number of ROIs.
            n_targets: Number of regressed targets.
            encoder: PatchEncoder arguments other than ``n_rois`` (``patch_len``, ``d_model`` ...).
            moe: Dataclass of RandomWalkMoE arguments (``dropout`` becomes ``moe_dropout``).
            ssm: Dataclass with ``layers``, ``d_state``, ``d_conv``, ``expand``, ``backend``, ``sequence``.
            head_dropout: Dropout before the linear head.
            fc_readout: Add the linear FC read-out beside the SSM.
            fc_dropout: Dropout on the FC read-out's features.
            readout_lags: Autocorrelation lags per ROI the FC read-out also reads.
            readout_connectivity: ``correlation`` or ``tangent`` edges in the FC read-out.
        """
        kwargs = {_MOE_RENAMES.get(k, k): v for k, v in dataclasses.asdict(moe).items()}
        kwargs.update({_SSM_RENAMES.get(k, k): v for k, v in dataclasses.asdict(ssm).items()})
        return cls(
            PatchEncoder(n_rois, **encoder), n_targets, head_dropout=head_dropout,
            fc_readout=fc_readout, fc_dropout=fc_dropout, readout_lags=readout_lags,
            readout_connectivity=readout_connectivity, **kwargs,
        )  # fmt: skip

    def forward(
        self, x: torch.Tensor, fc_prediction: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Predict z-scored targets.

        Args:
            x: ROI time series ``[B, R, T]``.
            fc_prediction: ``[B, n_targets]`` to add instead of the FC read-out's output (the
                read-out's cross-fitted predictions while training a stacked model).

        Returns:
            ``pred`` ``[B, n_targets]`` and ``aux`` with ``balance_loss`` (scalar),
            ``roi_expert_weights`` ``[B, R, E]`` and, with an FC read-out, ``readout``
            ``[B, n_targets]``: the read-out's share of ``pred``.
        """
        fc = correlation(x)  # [B, R, R]
        tokens, aux = self.moe(self.encoder(x), x, fc)  # [B, R, P, D]
        sequence = self.to_sequence(tokens)  # [B, L, D]
        for block in self.ssm:
            sequence = block(sequence)
        pooled = self.norm(sequence.mean(1))  # [B, D]
        pred = self.head(self.head_dropout(pooled))
        if self.fc_readout is not None:
            aux["readout"] = self.fc_readout(x, fc) if fc_prediction is None else fc_prediction
            pred = pred + aux["readout"].to(pred.dtype)
        return pred, aux

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
