"""Figures: predicted vs true, expert brain maps, LMAE reconstructions.

Figures are built on ``matplotlib.figure.Figure`` with the Agg canvas, never through pyplot's
global state, so they work headless and in any process; nothing here calls ``plt.show``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from brainlit.metrics import pearson_r


def _new_figure(figsize: tuple[float, float]) -> Figure:
    figure = Figure(figsize=figsize)
    FigureCanvasAgg(figure)
    return figure


def plot_predictions(y_true, y_pred, target_name: str, ax=None) -> Figure:
    """Predicted against true values with the identity line; MAE and r in the title.

    Args:
        y_true: True values [N].
        y_pred: Predictions [N] (pairs with a NaN are left out).
        target_name: Name of the target for labels and title.
        ax: Axes to draw into; a new figure when None.
    """
    y_true, y_pred = (
        np.asarray(y_true, dtype=float).ravel(),
        np.asarray(y_pred, dtype=float).ravel(),
    )
    keep = np.isfinite(y_true) & np.isfinite(y_pred)
    y_true, y_pred = y_true[keep], y_pred[keep]
    if ax is None:
        ax = _new_figure((4.5, 4.5)).add_subplot()
    ax.scatter(y_true, y_pred, s=14, alpha=0.7)
    if len(y_true):
        low, high = min(y_true.min(), y_pred.min()), max(y_true.max(), y_pred.max())
        ax.plot([low, high], [low, high], "k--", linewidth=1, label="identity")
    mae = float(np.mean(np.abs(y_pred - y_true))) if len(y_true) else math.nan
    r = pearson_r(y_true, y_pred)
    ax.set(xlabel=f"true {target_name}", ylabel=f"predicted {target_name}")
    r_text = "n/a" if math.isnan(r) else f"{r:.3f}"
    ax.set_title(f"{target_name}: MAE {mae:.2f}, r {r_text} (N={len(y_true)})")
    return ax.figure


def plot_expert_maps(
    roi_expert_weights: np.ndarray,
    roi_coords: np.ndarray | None = None,
    expert_names: Sequence[str] | None = None,
    ncols: int = 4,
    display_mode: str = "z",
) -> Figure:
    """One glass-brain marker map per expert (node colour = the ROI's weight for that expert).

    Args:
        roi_expert_weights: [R, E] mean gate weight of each ROI for each expert.
        roi_coords: [R, 3] MNI coordinates (mm) of the ROIs; None draws an ROI x expert heatmap.
        expert_names: E panel titles (default ``expert 0`` ...).
        ncols: Panels per row.
        display_mode: nilearn glass-brain view of each panel (``"z"``, ``"x"``, ``"ortho"``...).
    """
    weights = np.asarray(roi_expert_weights, dtype=float)  # [R, E]
    if weights.ndim != 2:
        raise ValueError(f"roi_expert_weights must be [R, E], got shape {weights.shape}")
    n_rois, n_experts = weights.shape
    names = (
        list(expert_names)
        if expert_names is not None
        else [f"expert {e}" for e in range(n_experts)]
    )
    norm = Normalize(vmin=0.0, vmax=max(float(weights.max()), 1e-12))
    if roi_coords is None:
        figure = _new_figure((1.2 + 0.5 * n_experts, 1.5 + 0.15 * n_rois))
        ax = figure.add_subplot()
        image = ax.imshow(
            weights, aspect="auto", cmap="viridis", norm=norm, interpolation="nearest"
        )
        ax.set(xlabel="expert", ylabel="ROI", xticks=range(n_experts), xticklabels=names)
        ax.tick_params(axis="x", labelrotation=45)
        figure.colorbar(image, ax=ax, label="gate weight")
        return figure
    return _glass_brain_grid(
        weights, np.asarray(roi_coords, dtype=float), names, norm, ncols, display_mode
    )


def _glass_brain_grid(weights, coords, names, norm, ncols, display_mode) -> Figure:
    """nilearn ``plot_markers`` panels on one figure with a shared colour bar."""
    from nilearn.plotting import plot_markers  # imported late: nilearn.plotting is slow to import

    if coords.shape != (len(weights), 3):
        raise ValueError(
            f"roi_coords must be [R, 3] with R={len(weights)}, got shape {coords.shape}"
        )
    n_experts = weights.shape[1]
    ncols = min(ncols, n_experts)
    nrows = math.ceil(n_experts / ncols)
    figure = _new_figure((3.2 * ncols + 0.8, 3.0 * nrows))
    for e in range(n_experts):
        ax = figure.add_subplot(nrows, ncols, e + 1)
        plot_markers(
            weights[:, e],
            coords,
            node_cmap="viridis",
            node_vmin=norm.vmin,
            node_vmax=norm.vmax,
            display_mode=display_mode,
            figure=figure,
            axes=ax,
            title=names[e],
            colorbar=False,
            annotate=False,
        )
    colorbar_axes = figure.add_axes((0.93, 0.15, 0.012, 0.7))
    figure.colorbar(
        ScalarMappable(norm=norm, cmap="viridis"), cax=colorbar_axes, label="gate weight"
    )
    return figure


def plot_reconstruction(
    truth: np.ndarray,
    hidden: np.ndarray,
    lmae: np.ndarray,
    simple: np.ndarray,
    simple_name: str,
    roi_ids: Sequence[int] | None = None,
) -> Figure:
    """One panel per ROI: the true series, hidden spans shaded, LMAE and a simple filler.

    Args:
        truth: True series ``[n, T]``.
        hidden: ``[n, T]`` bool, True where the model did not see the series.
        lmae: LMAE reconstruction ``[n, T]`` (only its hidden spans are drawn).
        simple: The simple filler's reconstruction ``[n, T]``.
        simple_name: Its name, for the legend.
        roi_ids: ROI numbers for the panel labels.
    """
    n, length = truth.shape
    roi_ids = list(range(n)) if roi_ids is None else list(roi_ids)
    figure = _new_figure((9.0, 1.6 * n + 0.6))
    axes = figure.subplots(n, 1, sharex=True, squeeze=False)[:, 0]
    time = np.arange(length)
    for i, ax in enumerate(axes):
        ax.fill_between(time, 0, 1, where=hidden[i], color="0.88", step="mid",
                        transform=ax.get_xaxis_transform(), label="hidden")
        ax.plot(time, truth[i], color="k", linewidth=1.0, label="truth")
        ax.plot(time, np.where(hidden[i], lmae[i], np.nan), color="tab:red", linewidth=1.3, label="LMAE")
        ax.plot(time, np.where(hidden[i], simple[i], np.nan), color="tab:blue", linestyle="--",
                linewidth=1.1, label=simple_name)
        ax.set_ylabel(f"ROI {roi_ids[i]}")
    axes[0].legend(loc="upper right", ncol=4, fontsize="small", frameon=False)
    axes[-1].set_xlabel("time point")
    return figure


def plot_brain_age(frame) -> Figure:  # noqa: ANN001 - apply's table
    """Predicted against true age with each subject's interval; flagged subjects in red, the
    controls a new site was adapted from hollow. Without known ages, predictions in order.

    Args:
        frame: ``apply``'s table: ``age_pred``, and where present ``age_true``,
            ``age_lower``/``age_upper``, ``ood_flag``, ``used_for_adaptation``.
    """
    ax = _new_figure((5.5, 5)).add_subplot()
    rows = frame[np.isfinite(frame["age_pred"].to_numpy(float))]
    known = "age_true" in rows and rows["age_true"].notna().any()
    x = rows["age_true"].to_numpy(float) if known else np.argsort(np.argsort(rows["age_pred"].to_numpy(float)))
    flagged = rows["ood_flag"].fillna(False).to_numpy(bool) if "ood_flag" in rows else np.zeros(len(rows), bool)
    controls = rows["used_for_adaptation"].fillna(False).to_numpy(bool) if "used_for_adaptation" in rows else flagged * 0
    if "age_lower" in rows:
        # the interval is centred on the de-biased prediction, so it need not contain the prediction
        ax.vlines(x, rows["age_lower"], rows["age_upper"], colors="0.75", linewidth=0.8, zorder=1)
    for mask, style in ((~flagged & ~controls, {"c": "C0", "label": "predicted"}),
                        (controls, {"facecolors": "none", "edgecolors": "C2", "label": "controls (adaptation)"}),
                        (flagged, {"c": "C3", "marker": "x", "label": "flagged (out of distribution)"})):
        if mask.any():
            ax.scatter(x[mask], rows["age_pred"].to_numpy(float)[mask], s=16, zorder=2, **style)
    if known:
        low, high = np.nanmin(x), np.nanmax(x)
        ax.plot([low, high], [low, high], "k--", linewidth=1)
    ax.set(xlabel="true age" if known else "subjects, by predicted age", ylabel="predicted age",
           title="Brain age with its intervals")
    ax.legend(fontsize=8, loc="upper left")
    return ax.figure
