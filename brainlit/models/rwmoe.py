"""Random-Walk Mixture of Experts (RWMOE) over ROI x patch tokens.

A graph over ROIs from each sample's functional connectivity drives a multi-step random walk
that mixes indirect (multi-hop) ROI interactions into every token; a gate then routes each
token to ``top_k`` of ``n_experts`` MLP experts. The paper gives no sizes: the defaults are ours.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn


def correlation(x: torch.Tensor) -> torch.Tensor:
    """Pearson correlation ``[B, R, R]`` between the ROI series of ``x: [B, R, T]``.

    Computed in float32 even under autocast; a constant ROI correlates 0 with everything.
    """
    with torch.autocast(device_type=x.device.type, enabled=False):
        centred = x.float() - x.float().mean(-1, keepdim=True)
        unit = centred / centred.norm(dim=-1, keepdim=True).clamp_min(1e-8)
        return unit @ unit.transpose(1, 2)


def knn_sparsify(adjacency: torch.Tensor, topk: int) -> torch.Tensor:
    """Keep the ``topk`` largest entries of each row of ``adjacency: [B, R, R]``, zero the rest."""
    values, index = adjacency.topk(min(topk, adjacency.shape[-1]), dim=-1)
    return torch.zeros_like(adjacency).scatter(-1, index, values)


def windowed_correlation(x: torch.Tensor, n_patches: int, patch_len: int, window: int) -> torch.Tensor:
    """Correlation of the ``window`` volumes centred on each patch: ``[B, P, R, R]``.

    Patch ``p`` spans volumes ``[p * patch_len, (p + 1) * patch_len)``; its window is shifted
    inside the run at the edges and shortened to the run when ``window`` exceeds it.

    Args:
        x: ROI time series ``[B, R, T]``.
        n_patches: Number of patches P.
        patch_len: Volumes per patch.
        window: Volumes per correlation window.
    """
    b, r, t = x.shape
    window = min(window, t)
    centres = torch.arange(n_patches, device=x.device) * patch_len + patch_len / 2
    starts = (centres - window / 2).round().long().clamp(0, t - window)
    windows = x.unfold(-1, window, 1)[:, :, starts]  # [B, R, P, window]
    return correlation(windows.transpose(1, 2).flatten(0, 1)).view(b, n_patches, r, r)


@torch.no_grad()
def fc_transition_matrix(x: torch.Tensor, topk: int) -> torch.Tensor:
    """Row-stochastic random-walk transition matrix ``P = D^-1 A`` ``[B, R, R]`` from ``x: [B, R, T]``.

    ``A`` = |corr(x)| over time; see :func:`transition_matrix`. The graph is input data, so no
    gradient flows through it.

    Args:
        x: ROI time series ``[B, R, T]``.
        topk: Neighbours kept per ROI.
    """
    return transition_matrix(correlation(x).abs(), topk)


@torch.no_grad()
def transition_matrix(adjacency: torch.Tensor, topk: int) -> torch.Tensor:
    """Row-stochastic ``P = D^-1 A`` ``[B, R, R]`` from nonnegative weights ``adjacency: [B, R, R]``.

    The diagonal is zeroed, each row sparsified to its ``topk`` strongest neighbours, then
    symmetrised as ``max(A, A^T)``: an edge is kept when either ROI lists the other, so a row
    holds at least ``min(topk, R - 1)`` and at most ``R - 1`` nonzeros. A ROI left without edges
    (constant series) gets a self-loop so every row sums to 1.
    """
    with torch.autocast(device_type=adjacency.device.type, enabled=False):
        adjacency = adjacency.float().clone()
        adjacency.diagonal(dim1=-2, dim2=-1).zero_()
        knn = knn_sparsify(adjacency, min(topk, adjacency.shape[-1] - 1))
        graph = torch.maximum(knn, knn.transpose(1, 2))
        isolated = graph.sum(-1) == 0  # [B, R]
        graph = graph + torch.diag_embed(isolated.float())
        return graph / graph.sum(-1, keepdim=True)


def walk_encoding(transition: torch.Tensor, steps: int) -> torch.Tensor:
    """Rows of ``P, P^2, ..., P^steps`` side by side: ``[B, R, steps * R]``.

    Row r of ``P^s`` is the probability that an s-step walk from ROI r ends at each ROI.
    """
    powers, current = [], transition
    for _ in range(steps):
        powers.append(current)
        current = current @ transition
    return torch.cat(powers, dim=-1)


def random_walk(h: torch.Tensor, transition: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Multi-step propagation ``sum_s weights[s] * P^s h`` over the ROI axis.

    ``P^s h`` is built by ``s`` repeated batched matmuls; ``P^s`` itself is never formed.

    Args:
        h: Features ``[B, R, ...]``.
        transition: Row-stochastic ``P`` ``[B, R, R]``.
        weights: Step weights ``[S + 1]`` for ``s = 0..S``.
    """
    flat = h.flatten(2)  # [B, R, F]
    step, out = flat, weights[0] * flat
    for weight in weights[1:]:
        step = torch.bmm(transition.to(step.dtype), step)
        out = out + weight * step
    return out.view_as(h)


def route(logits: torch.Tensor, top_k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Softmax gate with top-k routing.

    Returns:
        ``gates`` ``[..., E]`` (the ``top_k`` kept probabilities renormalised to sum 1, zeros
        elsewhere), the full softmax ``probs`` ``[..., E]`` and the chosen ``experts`` ``[..., k]``.
    """
    probs = logits.float().softmax(-1)
    top_probs, experts = probs.topk(top_k, dim=-1)
    gates = torch.zeros_like(probs).scatter(
        -1, experts, top_probs / top_probs.sum(-1, keepdim=True)
    )
    return gates, probs, experts


def balance_loss(probs: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
    """Switch/GShard load-balancing loss ``E * sum_e f_e * p_e``.

    ``f_e`` = share of the top-k assignments sent to expert ``e``, ``p_e`` = mean gate probability
    of ``e`` over tokens. It equals 1 when the probabilities are uniform (the minimum when the
    dispatch follows the probabilities) and reaches ``E`` when all tokens collapse onto one expert.

    Args:
        probs: Full softmax gate probabilities ``[..., E]``.
        experts: Chosen experts ``[..., k]``.
    """
    n_experts = probs.shape[-1]
    dispatch = torch.bincount(experts.flatten(), minlength=n_experts).float() / experts.numel()
    importance = probs.reshape(-1, n_experts).mean(0)
    return n_experts * (dispatch * importance).sum()


class ExpertMLPs(nn.Module):
    """``n_experts`` two-layer GELU MLPs applied by gathered dispatch.

    The ``k`` copies of each token are sorted by expert and each expert runs one matmul on its
    tokens only (about ``k / E`` of the dense all-experts cost); the outputs are weighted by the
    gates and summed back with ``index_add``. Reading the per-expert counts syncs with the GPU once.

    Args:
        n_experts: Number of experts E.
        d_model: Token width.
        hidden: Hidden width of each expert.
        dropout: Dropout on the hidden layer.
    """

    def __init__(self, n_experts: int, d_model: int, hidden: int, dropout: float = 0.0) -> None:
        super().__init__()
        bound_in, bound_hidden = 1 / math.sqrt(d_model), 1 / math.sqrt(hidden)
        self.w_in = nn.Parameter(
            torch.empty(n_experts, d_model, hidden).uniform_(-bound_in, bound_in)
        )
        self.b_in = nn.Parameter(torch.zeros(n_experts, hidden))
        self.w_out = nn.Parameter(
            torch.empty(n_experts, hidden, d_model).uniform_(-bound_hidden, bound_hidden)
        )
        self.b_out = nn.Parameter(torch.zeros(n_experts, d_model))
        self.dropout = nn.Dropout(dropout)

    def forward(
        self, tokens: torch.Tensor, experts: torch.Tensor, gates: torch.Tensor
    ) -> torch.Tensor:
        """Gate-weighted sum of the chosen experts' outputs.

        Args:
            tokens: ``[N, D]``.
            experts: Chosen experts ``[N, k]``.
            gates: Their weights ``[N, k]``.

        Returns:
            ``[N, D]``.
        """
        k = experts.shape[1]
        order = experts.flatten().argsort()  # [N * k], grouped by expert
        token_ids = order // k
        counts = torch.bincount(experts.flatten(), minlength=self.w_in.shape[0]).tolist()
        outputs = []
        for e, chunk in enumerate(tokens[token_ids].split(counts)):
            hidden = self.dropout(F.gelu(chunk @ self.w_in[e] + self.b_in[e]))
            outputs.append(hidden @ self.w_out[e] + self.b_out[e])
        weighted = torch.cat(outputs) * gates.flatten()[order, None].to(outputs[0].dtype)
        return weighted.new_zeros(tokens.shape).index_add(0, token_ids, weighted)


class RandomWalkMoE(nn.Module):
    """Random-walk propagation over the FC graph, then a top-k gated mixture of MLP experts.

    ``walked = sum_s a_s P^s h`` with ``P`` from :func:`fc_transition_matrix` of the input
    window. Gate logits of token (ROI r, patch t) are ``spatial[r] + temporal[t]`` for
    ``gating='both'``, where ``spatial = W_s mean_t walked[r, t]`` (the ROI's walk-propagated
    feature) and ``temporal = W_t mean_r walked[r, t]`` (the patch pooled over ROIs);
    ``spatial`` alone routes all tokens of a ROI alike, ``temporal`` alone all ROIs of a patch
    alike. The walked tokens (with the graph encoding below) replace ``h``, as in
    ``h <- sum_s a_s P^s h``: the output is ``LayerNorm(walked + dropout(experts(walked)))``,
    so what the graph says reaches the read-out directly and not only through the experts.

    Graph encoding (``n_rois`` given): before gating, each ROI's tokens get ``W [C_r, P_r,
    (P^2)_r, ..., (P^S)_r]``, a linear embedding of its signed correlation row ``C_r``
    (``fc_rows``) and of its multi-step transition probabilities to every ROI
    (``walk_encoding``). The walk above only *mixes* features along the graph; the encoding
    hands the graph itself (direct and indirect FC) to the gate and the experts, in the spirit
    of random-walk structural encodings of graph transformers. ``P`` is row-normalised, so it
    keeps *which* ROIs a region couples to but not *how strongly*; ``C_r`` keeps the strength
    and sign, which is where effects such as ageing (network dedifferentiation, noisier
    coupling) show. The paper does not say how FC enters the features: this is our choice
    (README, "Design choices", has the ablation); switch either part off with its flag.
    Step weights: ``learnable`` = softmax of learnable logits (uniform at init); ``restart`` =
    ``c (1 - c)^s`` normalised over ``s = 0..S`` (personalised PageRank truncated at S steps).

    Graph source (DESIGN leaves it open): ``graph='sample'`` builds ``P`` from each input
    window's own |FC|; ``'cohort'`` from a running mean of |FC| over training batches (an
    exponential moving average with ``graph_momentum``, kept as a buffer like BatchNorm's
    statistics and frozen in eval mode): one graph for everyone, so the walk follows the
    cohort's stable network structure rather than a noisy single-crop estimate. The subject's
    own FC still enters through ``fc_rows``. Under DDP the buffer follows rank 0 (DDP
    broadcasts buffers before each forward), so every rank walks the same graph.

    Time-resolved graph (``graph_window`` > 0; the paper is silent): each patch gets its own
    graph, the correlation of the ``graph_window`` volumes centred on it
    (:func:`windowed_correlation`), for its walk and its graph encoding, as in
    sliding-window dynamic-graph models of fMRI. The tokens then carry *when* which ROIs
    couple, so the SSM that scans the patches can read how FC changes within a scan, which
    one graph per window averages away. With ``graph='cohort'`` the walk keeps the cohort
    graph (a running mean of windowed |FC|) and only ``fc_rows`` become per patch. It costs
    ``P`` times the graph memory: ``[B, P, R, R]`` per graph row instead of ``[B, R, R]``.
    ``graph_window_mode='replace'`` gives each patch only its window's graph; ``'add'`` keeps
    the whole input window's walk and graph encoding (the stable FC that static effects live
    in) and adds a separate embedding of each patch's windowed graph rows on top. That
    embedding starts at zero, so at initialisation the module is the static one and the
    windowed FC enters only as far as training finds it useful (as zero-initialised branches
    of ControlNet, Zhang et al. 2023).

    Args:
        d_model: Token width D.
        n_experts: Number of expert MLPs E.
        top_k: Experts each token is routed to.
        walk_steps: Random-walk steps S over the FC graph.
        graph_topk: Neighbours kept per ROI when sparsifying the FC graph.
        walk_weights: ``learnable`` step weights or the ``restart`` form.
        restart_prob: Restart probability c for ``walk_weights='restart'``.
        expert_hidden: Hidden width of each expert MLP.
        gating: Route by ``spatial`` (ROI) logits, ``temporal`` (patch) logits, or ``both`` summed.
        dropout: Dropout inside the experts and on their output.
        n_rois: Number of ROIs R; needed for the random-walk encoding.
        walk_encoding: Add the embedded multi-step transition rows to each ROI's tokens.
        fc_rows: Add the embedded signed correlation row to each ROI's tokens.
        graph: ``sample`` (each window's FC) or ``cohort`` (running mean FC; needs ``n_rois``).
        graph_momentum: Weight of each new training batch in the ``cohort`` running mean.
        graph_window: Volumes of the per-patch correlation window; 0: one graph per window.
        patch_len: Volumes per patch of the tokens (for ``graph_window``).
        graph_window_mode: ``replace`` the window's graph by the per-patch ones, or ``add``
            the per-patch graph encoding to the window's walk and encoding.
    """

    def __init__(
        self,
        d_model: int,
        n_experts: int = 8,
        top_k: int = 2,
        walk_steps: int = 3,
        graph_topk: int = 10,
        walk_weights: Literal["learnable", "restart"] = "learnable",
        restart_prob: float = 0.3,
        expert_hidden: int = 256,
        gating: Literal["spatial", "temporal", "both"] = "both",
        dropout: float = 0.0,
        n_rois: int | None = None,
        walk_encoding: bool = True,
        fc_rows: bool = True,
        graph: Literal["sample", "cohort"] = "sample",
        graph_momentum: float = 0.1,
        graph_window: int = 0,
        patch_len: int = 8,
        graph_window_mode: Literal["replace", "add"] = "replace",
    ) -> None:
        super().__init__()
        if graph_window < 0 or graph_window_mode not in ("replace", "add"):
            raise ValueError(
                f"need graph_window >= 0 volumes and graph_window_mode in {{replace, add}}, "
                f"got {graph_window}, {graph_window_mode!r}."
            )
        self.graph_window, self.patch_len = graph_window, patch_len
        self.graph_window_mode = graph_window_mode
        if graph not in ("sample", "cohort") or (graph == "cohort" and not n_rois):
            raise ValueError(f"graph must be 'sample' or 'cohort' (with n_rois), got {graph!r}.")
        if not 1 <= top_k <= n_experts or gating not in ("spatial", "temporal", "both"):
            raise ValueError(
                "need 1 <= top_k <= n_experts and gating in {spatial, temporal, both}."
            )
        if walk_weights not in ("learnable", "restart"):
            raise ValueError(f"walk_weights must be learnable or restart, got {walk_weights!r}.")
        self.top_k, self.graph_topk, self.walk_weights = top_k, graph_topk, walk_weights
        self.walk_steps = walk_steps
        if walk_weights == "learnable":
            self.walk_logits = nn.Parameter(torch.zeros(walk_steps + 1))
        else:
            restart = restart_prob * (1 - restart_prob) ** torch.arange(walk_steps + 1.0)
            self.register_buffer("restart_weights", restart / restart.sum())
        self.graph, self.graph_momentum = graph, graph_momentum
        if graph == "cohort":
            self.register_buffer("cohort_fc", torch.zeros(n_rois, n_rois))
            self.register_buffer("cohort_batches", torch.zeros((), dtype=torch.long))
        self.walk_encoding, self.fc_rows = walk_encoding and walk_steps > 0, fc_rows
        rows = walk_steps * self.walk_encoding + self.fc_rows
        self.graph_embed = nn.Linear(rows * n_rois, d_model) if rows and n_rois else None
        self.window_embed = None
        if graph_window and graph_window_mode == "add" and self.graph_embed is not None:
            self.window_embed = nn.Linear(rows * n_rois, d_model)
            nn.init.zeros_(self.window_embed.weight)
            nn.init.zeros_(self.window_embed.bias)
        self.spatial_gate = nn.Linear(d_model, n_experts) if gating != "temporal" else None
        self.temporal_gate = nn.Linear(d_model, n_experts) if gating != "spatial" else None
        self.experts = ExpertMLPs(n_experts, d_model, expert_hidden, dropout)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(d_model)

    def walk_coefficients(self) -> torch.Tensor:
        """Step weights ``a_s`` ``[S + 1]``, summing to 1."""
        if self.walk_weights == "learnable":
            return self.walk_logits.softmax(0)
        return self.restart_weights

    @torch.no_grad()
    def transition(self, fc: torch.Tensor) -> torch.Tensor:
        """``P`` ``[B, R, R]`` from the batch's correlations ``fc: [B, R, R]`` and the ``graph`` source.

        With ``cohort``, a training-mode call first moves the running mean towards the batch's
        mean |FC| (the first batch sets it).
        """
        if self.graph == "sample":
            return transition_matrix(fc.abs(), self.graph_topk)
        if self.training:
            batch_fc = fc.abs().mean(0)
            weight = 1.0 if self.cohort_batches == 0 else self.graph_momentum
            self.cohort_fc.lerp_(batch_fc, weight)
            self.cohort_batches += 1
        return transition_matrix(self.cohort_fc.expand(fc.shape[0], -1, -1), self.graph_topk)

    def graph_rows(self, fc: torch.Tensor, transition: torch.Tensor) -> torch.Tensor:
        """Each ROI's ``[C_r, P_r, ..., (P^S)_r]`` (the enabled parts) ``[B, R, rows * R]``.

        Args:
            fc: Signed correlations ``C`` ``[B, R, R]``.
            transition: ``P`` ``[B, R, R]``.
        """
        rows = [fc] if self.fc_rows else []
        if self.walk_encoding:
            rows.append(walk_encoding(transition, self.walk_steps))
        return torch.cat(rows, dim=-1)

    def propagate(self, h: torch.Tensor, fc: torch.Tensor) -> torch.Tensor:
        """Walk tokens ``h: [N, R, P, D]`` over the graph of ``fc: [N, R, R]``, add its encoding."""
        transition = self.transition(fc)
        walked = random_walk(h, transition, self.walk_coefficients())
        if self.graph_embed is None:
            return walked
        return walked + self.graph_embed(self.graph_rows(fc, transition))[:, :, None]

    def patch_correlation(self, x: torch.Tensor, n_patches: int) -> torch.Tensor:
        """Each patch's ``graph_window`` correlation, patches as samples: ``[B * P, R, R]``."""
        return windowed_correlation(x, n_patches, self.patch_len, self.graph_window).flatten(0, 1)

    def window_encoding(self, x: torch.Tensor, n_patches: int) -> torch.Tensor:
        """Embedded per-patch graph rows ``[B, R, P, D]`` of ``x: [B, R, T]`` (``add`` mode)."""
        b, r = x.shape[:2]
        fc = self.patch_correlation(x, n_patches)
        rows = self.graph_rows(fc, transition_matrix(fc.abs(), self.graph_topk))
        return self.window_embed(rows).view(b, n_patches, r, -1).transpose(1, 2)

    def gate_logits(self, walked: torch.Tensor) -> torch.Tensor:
        """Token gate logits ``[B, R, P, E]`` from walk-propagated tokens ``[B, R, P, D]``."""
        logits = 0.0
        if self.spatial_gate is not None:
            logits = logits + self.spatial_gate(walked.mean(2))[:, :, None]  # [B, R, 1, E]
        if self.temporal_gate is not None:
            logits = logits + self.temporal_gate(walked.mean(1))[:, None]  # [B, 1, P, E]
        return logits.expand(*walked.shape[:3], -1)

    def forward(
        self, h: torch.Tensor, x: torch.Tensor, fc: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Mix tokens through the random walk and the experts.

        Args:
            h: Tokens ``[B, R, P, D]``.
            x: The ROI time series ``[B, R, T]`` the tokens came from (for the FC graph).
            fc: ``correlation(x)`` ``[B, R, R]`` when the caller has it already.

        Returns:
            ``h_out`` ``[B, R, P, D]`` and ``aux``: ``balance_loss`` (scalar) and
            ``roi_expert_weights`` ``[B, R, E]`` (gate weights averaged over patches; rows sum to 1).
        """
        if self.graph_window and self.graph_window_mode == "replace":
            b, r, p, d = h.shape
            fc = self.patch_correlation(x, p)
            per_patch = h.transpose(1, 2).reshape(b * p, r, 1, d)  # each patch its own sample
            walked = self.propagate(per_patch, fc).view(b, p, r, d).transpose(1, 2)
        else:
            walked = self.propagate(h, correlation(x) if fc is None else fc)  # [B, R, P, D]
        if self.window_embed is not None:
            walked = walked + self.window_encoding(x, h.shape[2])
        gates, probs, experts = route(self.gate_logits(walked), self.top_k)  # [B, R, P, E|k]
        mixed = self.experts(
            walked.flatten(0, 2), experts.flatten(0, 2), gates.gather(-1, experts).flatten(0, 2)
        )
        out = self.norm(walked + self.dropout(mixed.view_as(h)))
        aux = {"balance_loss": balance_loss(probs, experts), "roi_expert_weights": gates.mean(2)}
        return out, aux
