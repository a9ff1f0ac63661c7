"""Grouped hyperparameters shared by the tasks (one YAML block each).

Each dataclass maps one-to-one to a block of a task's config, e.g.::

    model:
      encoder: {patch_len: 8, d_model: 128, depth: 4}
      moe: {n_experts: 8, top_k: 2}
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Literal


@dataclass(frozen=True)
class EncoderSpec:
    """Patch-token transformer encoder, shared by LMAE pretraining and regression.

    Args:
        patch_len: Time points per token (8 x TR 1.97 s = 16 s, about one HRF).
        d_model: Token embedding width.
        depth: Transformer layers.
        n_heads: Attention heads.
        mlp_ratio: Hidden width of the transformer MLP relative to ``d_model``.
        dropout: Dropout on the transformer's residual branches and inside its MLPs.
        max_patches: Longest sequence of patches per ROI the position table covers.
        attention: ``factorized`` (across ROIs within a patch, then across patches within a
            ROI: cost ``O(R P (R + P))``) or ``joint`` (all tokens: ``O((R P)^2)``).
        patch_seconds: Patch duration in seconds; when set, ``patch_len`` becomes
            ``max(1, round(patch_seconds / TR))`` with the cohort's TR, so a TR 0.72 s cohort
            gets HRF-length patches (16 s -> 22 volumes) without hand-tuning ``patch_len``.
        attention_dropout: Dropout on the attention probabilities (0, as in ViT and MAE: a
            nonzero value makes CPU attention fall back to a path that keeps every ``[R, R]``
            probability matrix, 2 GiB per layer at 400 ROIs and batch 16).
        checkpoint: Recompute each transformer block in the backward pass instead of keeping
            its activations: less memory for about a third more time per step, same gradients.
    """

    patch_len: int = 8
    d_model: int = 128
    depth: int = 4
    n_heads: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    max_patches: int = 128
    attention: Literal["joint", "factorized"] = "factorized"
    patch_seconds: float | None = None
    attention_dropout: float = 0.0
    checkpoint: bool = False


@dataclass(frozen=True)
class MoESpec:
    """Random-walk mixture of experts (RWMOE).

    Args:
        n_experts: Number of expert MLPs.
        top_k: Experts each token is routed to.
        walk_steps: Random-walk steps S over the FC graph.
        graph_topk: Neighbours kept per ROI when sparsifying the FC graph.
        walk_weights: ``learnable`` step weights or the ``restart`` (personalised PageRank) form.
        restart_prob: Restart probability for ``walk_weights: restart``.
        expert_hidden: Hidden width of each expert MLP.
        gating: Route spatial (ROI) tokens, temporal (patch) tokens, or ``both``.
        dropout: Dropout inside the experts.
        walk_encoding: Add each ROI's embedded multi-step transition probabilities to its tokens.
        fc_rows: Add each ROI's embedded signed correlation row to its tokens.
        graph: Random-walk graph from each window's FC (``sample``) or from a running mean of
            FC over training batches (``cohort``).
        graph_momentum: Weight of each training batch in the ``cohort`` running mean.
        graph_window: Volumes of a per-patch correlation window, so each patch walks and
            encodes its own graph (a time-resolved graph); 0: one graph per input window.
        graph_window_mode: ``replace`` the input window's graph by the per-patch ones, or
            ``add`` the per-patch graph encoding (zero at initialisation) to the window's.
    """

    n_experts: int = 8
    top_k: int = 2
    walk_steps: int = 3
    graph_topk: int = 10
    walk_weights: Literal["learnable", "restart"] = "learnable"
    restart_prob: float = 0.3
    expert_hidden: int = 256
    gating: Literal["spatial", "temporal", "both"] = "both"
    dropout: float = 0.0
    walk_encoding: bool = True
    fc_rows: bool = True
    graph: Literal["sample", "cohort"] = "sample"
    graph_momentum: float = 0.1
    graph_window: int = 0
    graph_window_mode: Literal["replace", "add"] = "replace"


@dataclass(frozen=True)
class SSMSpec:
    """Mamba state-space predictor and its linear head.

    Args:
        layers: Number of Mamba blocks.
        d_state: SSM state size N.
        d_conv: Width of the causal depthwise convolution.
        expand: Inner width as a multiple of ``d_model``.
        backend: ``auto`` uses mamba-ssm CUDA kernels when importable and on GPU, else pure PyTorch.
        sequence: ``patch`` pools ROIs and scans over patches; ``roi_major`` scans all ROI tokens.
        pool: How the scanned sequence becomes one vector: ``mean``, or ``stats`` (mean and
            standard deviation over time: how much each learned feature moves over the scan).
        roi_pool: How ``patch`` pools the ROIs of a patch: ``linear`` (a learned projection of
            the concatenated, narrowed ROI tokens: keeps which ROI carried what) or ``mean``.
        roi_dim: Channels each ROI token is narrowed to before the ``linear`` pool.
        head_dropout: Dropout before the linear head.
    """

    layers: int = 2
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    backend: Literal["auto", "cuda", "torch"] = "auto"
    sequence: Literal["patch", "roi_major"] = "patch"
    pool: Literal["mean", "stats"] = "mean"
    roi_pool: Literal["linear", "mean"] = "linear"
    roi_dim: int = 8
    head_dropout: float = 0.1


def resolve_patch_len(spec: EncoderSpec, t_r: float | None) -> EncoderSpec:
    """``spec`` with ``patch_len`` set from ``patch_seconds`` and the TR (unchanged without it)."""
    if spec.patch_seconds is None:
        return spec
    if not t_r or t_r <= 0:
        raise ValueError(
            "encoder.patch_seconds needs the cohort's TR: set data.t_r, or give encoder.patch_len "
            "in time points instead."
        )
    return replace(spec, patch_len=max(1, round(spec.patch_seconds / t_r)))


def encoder_args(spec: EncoderSpec) -> dict[str, Any]:
    """The :class:`~brainlit.models.encoder.PatchEncoder` arguments of a (resolved) spec."""
    return {k: v for k, v in asdict(spec).items() if k != "patch_seconds"}


def as_spec(value: Any, cls: type) -> Any:
    """Accept a spec instance or its dict form (as restored from a checkpoint)."""
    return value if isinstance(value, cls) else cls(**dict(value))


def spec_dict(spec: Any) -> dict[str, Any]:
    """Plain-dict form of a spec, safe to store in checkpoint hyperparameters."""
    return asdict(spec)
