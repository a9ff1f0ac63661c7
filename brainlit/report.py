"""Result tables (per fold -> mean, sd, 95% CI beside the paper) and figures.

Figures are built on ``matplotlib.figure.Figure`` with the Agg canvas, never through pyplot's
global state, so they work headless and in any process; nothing here calls ``plt.show``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from scipy import stats

from brainlit.baselines.run import pearson_r

PAPER = {
    "age": {"mae": 5.343, "pearson_r": 0.928},
    "fluid_intelligence": {"mae": 2.940, "pearson_r": 0.887},
}
PAPER_ROW = "paper (Cam-CAN)"
MODEL_ORDER = ("brainlit", "kernel_ridge_fc", "mean")
SUMMARY_COLUMNS = [
    "model",
    "target",
    "n_folds",
    "mae_mean",
    "mae_sd",
    "mae_ci_low",
    "mae_ci_high",
    "r_mean",
    "r_sd",
    "r_ci_low",
    "r_ci_high",
]


def _mean_sd_ci(values: pd.Series, level: float = 0.95) -> tuple[float, float, float, float]:
    """Mean, sd (ddof 1) and the t-distribution CI of the mean; NaNs are left out."""
    values = values.dropna().to_numpy(dtype=float)
    if len(values) == 0:
        return (math.nan,) * 4
    mean = float(values.mean())
    if len(values) < 2:
        return mean, math.nan, math.nan, math.nan
    sd = float(values.std(ddof=1))
    half = stats.t.ppf(0.5 + level / 2, len(values) - 1) * sd / math.sqrt(len(values))
    return mean, sd, mean - half, mean + half


def _model_rank(model: str) -> tuple[int, str]:
    return (MODEL_ORDER.index(model) if model in MODEL_ORDER else len(MODEL_ORDER), model)


MIN_TEST_FOR_R = 3  # r of two points is +-1 whatever the model does


def _defined_r(group: pd.DataFrame) -> pd.Series:
    """The fold r values that mean something: NaN where a fold has < MIN_TEST_FOR_R test subjects."""
    if "n_test" not in group:
        return group["pearson_r"]
    return group["pearson_r"].where(group["n_test"] >= MIN_TEST_FOR_R)


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """Per (model, target): n_folds, MAE and Pearson r mean, sd and 95% CI of the mean.

    Args:
        results: One row per fold with columns model, target, fold, mae, pearson_r.

    Returns:
        ``SUMMARY_COLUMNS``, ordered by target then model (brainlit, baselines, others).
        The r statistics use the folds where r is defined (not NaN) and that have at least
        ``MIN_TEST_FOR_R`` test subjects.
    """
    rows = []
    for (model, target), group in results.groupby(["model", "target"], sort=False):
        rows.append(
            [
                model,
                target,
                len(group),
                *_mean_sd_ci(group["mae"]),
                *_mean_sd_ci(_defined_r(group)),
            ]
        )
    summary = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    order = sorted(
        range(len(summary)), key=lambda i: (summary.target[i], _model_rank(summary.model[i]))
    )
    return summary.iloc[order].reset_index(drop=True)


def _cell(mean: float, sd: float, low: float, high: float, digits: int, ci: bool = True) -> str:
    """``mean ± sd [low, high]``; ``n/a`` when undefined."""
    if math.isnan(mean):
        return "n/a"
    text = f"{mean:.{digits}f}"
    if not math.isnan(sd):
        text += f" ± {sd:.{digits}f}"
        if ci:
            text += f" [{low:.{digits}f}, {high:.{digits}f}]"
    return text


def _rows(summary: pd.DataFrame, target: str, ci: bool) -> list[list[str]]:
    """Table rows (model, MAE, r, folds) of one target, with the paper's row when known."""
    rows = [
        [
            row.model,
            _cell(row.mae_mean, row.mae_sd, row.mae_ci_low, row.mae_ci_high, 2, ci),
            _cell(row.r_mean, row.r_sd, row.r_ci_low, row.r_ci_high, 3, ci),
            str(row.n_folds),
        ]
        for row in summary[summary.target == target].itertuples()
    ]
    if target in PAPER:
        rows.append(
            [PAPER_ROW, f"{PAPER[target]['mae']:.3f}", f"{PAPER[target]['pearson_r']:.3f}", "-"]
        )
    return rows


def _escape(value) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(_escape(v) for v in row) + " |" for row in rows]


def to_markdown(
    results: pd.DataFrame, skipped: pd.DataFrame | None = None, title: str = "brainlit results"
) -> str:
    """Markdown report: one table per target (models + the paper's row) and the skipped subjects.

    Args:
        results: Per-fold results (columns model, target, fold, n_test, mae, pearson_r).
        skipped: Subjects left out for bad input (e.g. columns subject_id, file, reason).
        title: Top-level heading.
    """
    summary = summarize(results)
    lines = [
        f"# {title}",
        "",
        "Mean ± sd over folds [95% CI of the mean, t-distribution]. "
        "r is n/a for the mean predictor (constant predictions); folds with fewer than "
        f"{MIN_TEST_FOR_R} test subjects add no r (two points correlate ±1 by construction).",
        "",
    ]
    for target in summary.target.unique():
        lines += [f"## {target}", ""]
        lines += _markdown_table(["model", "MAE", "r", "folds"], _rows(summary, target, ci=True))
        lines.append("")
    lines += ["## Skipped subjects", ""]
    if skipped is None or len(skipped) == 0:
        lines.append("None.")
    else:
        preferred = [c for c in ("subject_id", "file", "reason") if c in skipped.columns]
        columns = preferred + [c for c in skipped.columns if c not in preferred]
        lines.append(f"{len(skipped)} subject(s) left out for bad input:")
        lines.append("")
        lines += _markdown_table(columns, skipped[columns].itertuples(index=False))
    return "\n".join(lines) + "\n"


def format_table(results: pd.DataFrame) -> str:
    """Plain-text table aligned in columns for the terminal: mean ± sd per (target, model)."""
    summary = summarize(results)
    header = ["target", "model", "MAE", "r", "folds"]
    rows = [
        [target, *row]
        for target in summary.target.unique()
        for row in _rows(summary, target, ci=False)
    ]
    widths = [max(len(str(v)) for v in column) for column in zip(header, *rows, strict=False)]
    lines = [
        "  ".join(str(v).ljust(w) for v, w in zip(line, widths, strict=True)).rstrip()
        for line in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


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
