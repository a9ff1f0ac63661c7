"""Result tables: per fold -> mean, sd and 95% CI per model, paired differences, the paper.

``results`` tables hold one row per (model, target, repeat, fold) with the scores of
:func:`brainlit.metrics.score_predictions`; everything here is computed from them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import pandas as pd
from scipy import stats

from brainlit.baselines.oracle import ORACLES
from brainlit.baselines.run import READOUT
from brainlit.ensembles import CLASSICAL_ENSEMBLE
from brainlit.metrics import corrected_paired_interval
from brainlit.stack import NETWORK, NO_PRETRAINING

PAPER = {
    "age": {"mae": 5.343, "pearson_r": 0.928},
    "fluid_intelligence": {"mae": 2.940, "pearson_r": 0.887},
}
PAPER_ROW = "paper (Cam-CAN)"
CLASSICAL = ("tangent_ridge", "kernel_ridge_fc", "coskew_ridge", "dfc_ridge", CLASSICAL_ENSEMBLE, "mean")
MIN_TEST_FOR_R = 3  # r of two points is +-1 whatever the model does
STATS = ("mean", "sd", "ci_low", "ci_high")
SUMMARY_COLUMNS = ["model", "target", "n_folds"] + [
    f"{score}_{stat}" for score in ("mae", "r", "r_partial") for stat in STATS
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
    """brainlit and its variants first, then the classical models in ``CLASSICAL`` order."""
    if model in CLASSICAL:
        return 1 + CLASSICAL.index(model), model
    return (0, model) if model.startswith("brainlit") else (len(CLASSICAL) + 1, model)


def _defined(group: pd.DataFrame, column: str) -> pd.Series:
    """The fold values of an r column that mean something: NaN below ``MIN_TEST_FOR_R`` subjects."""
    if column not in group:
        return pd.Series(dtype=float)
    if "n_test" not in group:
        return group[column]
    return group[column].where(group["n_test"] >= MIN_TEST_FOR_R)


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """Per (model, target): folds, then mean, sd and 95% CI of MAE, r and age-partialled r.

    Args:
        results: One row per fold with columns model, target, fold, mae, pearson_r and
            optionally n_test, repeat and pearson_r_age_partial.

    Returns:
        ``SUMMARY_COLUMNS``, ordered by target then model (brainlit first, then the
        classical models). The r statistics use the folds where r is defined and that have
        at least ``MIN_TEST_FOR_R`` test subjects.
    """
    rows = []
    for (model, target), group in results.groupby(["model", "target"], sort=False):
        rows.append([
            model, target, len(group), *_mean_sd_ci(group["mae"]),
            *_mean_sd_ci(_defined(group, "pearson_r")),
            *_mean_sd_ci(_defined(group, "pearson_r_age_partial")),
        ])  # fmt: skip
    summary = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    order = sorted(range(len(summary)), key=lambda i: (summary.target[i], _model_rank(summary.model[i])))
    return summary.iloc[order].reset_index(drop=True)


def paired_differences(results: pd.DataFrame) -> pd.DataFrame:
    """Per target and brainlit variant: MAE minus the best classical model's, fold by fold.

    The best classical model of a target is the one of ``CLASSICAL`` with the lowest mean MAE
    on these folds (a choice made on the test folds, so it favours the classical side).
    Differences pair the same (repeat, fold); the CI is the corrected resampled t-interval
    (:func:`brainlit.metrics.corrected_paired_interval`) with ``n_test / n_train = 1 / (k - 1)``.
    Where brainlit's closed-form read-out was scored alone (``READOUT``), one more row gives
    brainlit minus its read-out: what the network adds; where a pretraining ablation fine-tuned
    the network from scratch too, one more gives the network minus that: what pretraining adds.

    Returns:
        Columns target, model, reference, n, diff_mean, diff_ci_low, diff_ci_high.
    """
    results = results.assign(repeat=results["repeat"] if "repeat" in results else 0)
    rows = []
    for target, group in results.groupby("target", sort=True):
        classical = group[group.model.isin(CLASSICAL)].groupby("model")["mae"].mean()
        if classical.empty:
            continue
        best = str(classical.idxmin())
        for model in sorted({m for m in group.model if m not in (*CLASSICAL, *ORACLES)}, key=_model_rank):
            rows.append([target, model, best, *_paired(group, model, best)])
        for model, reference in readout_pairs(group.model) + scratch_pairs(group.model):
            rows.append([target, model, reference, *_paired(group, model, reference)])
    columns = ["target", "model", "reference", "n", "diff_mean", "diff_ci_low", "diff_ci_high"]
    return pd.DataFrame(rows, columns=columns)


def readout_pairs(models: Iterable[str]) -> list[tuple[str, str]]:
    """``(brainlit model, its read-out)`` for each combination of the network and the read-out:
    ``brainlit`` (or a pretraining variant) and ``brainlit read-out``; with an ablation folder
    of several configs, ``brainlit (cfg)`` and ``brainlit read-out (cfg)`` where that exists."""
    models = set(models)
    pairs = []
    for model in sorted(models, key=_model_rank):
        if not model.startswith("brainlit") or model.startswith((READOUT, NETWORK, "brainlit + ")):
            continue
        own = READOUT + model[len("brainlit"):]
        reference = own if own in models else READOUT
        if reference in models:
            pairs.append((model, reference))
    return pairs


def scratch_pairs(models: Iterable[str]) -> list[tuple[str, str]]:
    """``(network pretrained by LMAE, the same network fine-tuned from scratch)`` wherever the
    experiment's ``--pretrain_ablation`` scored both: what pretraining adds to the network."""
    models = set(models)
    pairs = []
    for model in sorted(m for m in models if m.startswith(NETWORK)):
        scratch = NETWORK + NO_PRETRAINING + model[len(NETWORK):]
        if scratch in models:
            pairs.append((model, scratch))
    return pairs


def _paired(group: pd.DataFrame, model: str, reference: str) -> tuple[int, float, float, float]:
    """Folds paired, mean and corrected 95% CI of ``model``'s MAE minus ``reference``'s."""
    mae = group.set_index(["repeat", "fold"])
    diff = (mae[mae.model == model]["mae"] - mae[mae.model == reference]["mae"]).dropna()
    n_folds = group.groupby("repeat")["fold"].nunique().max()
    mean, low, high = corrected_paired_interval(diff.to_numpy(), 1 / max(n_folds - 1, 1))
    return len(diff), mean, low, high


def _cell(values: Sequence[float], digits: int, ci: bool = True) -> str:
    """``mean ± sd [low, high]`` from ``(mean, sd, low, high)``; ``n/a`` when undefined."""
    mean, sd, low, high = values
    if math.isnan(mean):
        return "n/a"
    text = f"{mean:.{digits}f}"
    if not math.isnan(sd):
        text += f" ± {sd:.{digits}f}"
        if ci:
            text += f" [{low:.{digits}f}, {high:.{digits}f}]"
    return text


def _stats(row, score: str) -> tuple[float, ...]:  # noqa: ANN001 - a summary itertuples row
    return tuple(getattr(row, f"{score}_{stat}") for stat in STATS)


def _header(target: str) -> list[str]:
    partial = [] if target == "age" else ["r (age-partialled)"]
    return ["model", "MAE", "r", *partial, "folds"]


def _rows(summary: pd.DataFrame, target: str, ci: bool) -> list[list[str]]:
    """Table rows of one target (model, MAE, r, [partial r], folds) and the paper's row."""
    partial = target != "age"
    rows = []
    for row in summary[summary.target == target].itertuples():
        cells = [row.model, _cell(_stats(row, "mae"), 2, ci), _cell(_stats(row, "r"), 3, ci)]
        if partial:
            cells.append(_cell(_stats(row, "r_partial"), 3, ci))
        rows.append([*cells, str(row.n_folds)])
    if target in PAPER:
        paper = [PAPER_ROW, f"{PAPER[target]['mae']:.3f}", f"{PAPER[target]['pearson_r']:.3f}"]
        rows.append(paper + (["-"] if partial else []) + ["-"])
    return rows


def _difference_lines(results: pd.DataFrame, target: str) -> list[str]:
    """Sentences on brainlit's paired MAE differences to the best classical model and to its read-out."""
    lines = []
    for row in paired_differences(results).query("target == @target").itertuples():
        interval = "" if math.isnan(row.diff_ci_low) else f" [{row.diff_ci_low:+.2f}, {row.diff_ci_high:+.2f}]"
        verdict = "lower" if row.diff_mean < 0 else "not lower"
        role = ("what the network adds" if row.reference.startswith(READOUT) else
                "what pretraining adds to the network" if row.reference.startswith(NETWORK) else "best classical")
        lines.append(f"{row.model} - {row.reference} ({role}): MAE {row.diff_mean:+.2f}{interval} "
                     f"over {row.n} paired folds ({verdict})")
    return lines + oracle_gaps(results, target)


def oracle_gaps(results: pd.DataFrame, target: str) -> list[str]:
    """Where the cohort has oracle rows (``ORACLES``: the true latent parameters, the scan's
    true state changes): how far brainlit, its read-out and the best classical model are from
    each, and the share of its read-out's distance to each that the network closes."""
    mae = results[results.target == target].groupby("model")["mae"].mean()
    classical = mae[[m for m in mae.index if m in CLASSICAL]]
    pairs = readout_pairs(mae.index)
    shown = list(dict.fromkeys(m for pair in pairs for m in pair)) + ([classical.idxmin()] if len(classical) else [])
    return [_oracle_gap(mae, oracle, shown, pairs) for oracle in ORACLES if oracle in mae]


def _oracle_gap(mae: pd.Series, oracle: str, shown: list[str], pairs: list[tuple[str, str]]) -> str:
    """One sentence: the ``shown`` models' MAE minus ``oracle``'s, and the share of each read-out's
    distance to it that its network closes."""
    gaps = ", ".join(f"{m} {mae[m] - mae[oracle]:+.2f}" for m in shown)
    closed = [f"{m} closes {(mae[r] - mae[m]) / (mae[r] - mae[oracle]):.0%}" for m, r in pairs if mae[r] > mae[oracle]]
    tail = f"; of its read-out's gap, {', '.join(closed)}" if closed else ""
    return f"distance to the {oracle} (MAE {mae[oracle]:.2f}): {gaps}{tail}"


def _escape(value) -> str:  # noqa: ANN001
    return str(value).replace("|", "\\|").replace("\n", " ")


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(_escape(v) for v in row) + " |" for row in rows]


def _diagnostics_section(diagnostics: Mapping[str, Mapping[str, float]]) -> list[str]:
    """The LMAE reconstruction table: one row per pretraining, masked-patch MSE of each filler."""
    names = ["lmae", "zero", "interp", "spatial_ridge", "lmae_vs_best_simple"]
    rows = [[variant, *(f"{values[n]:.3f}" if n in values else "n/a" for n in names)]
            for variant, values in diagnostics.items()]
    return ["## LMAE reconstruction", "",
            "Masked-patch MSE on held-out subjects' runs, in windows of the training length, every filler on LMAE's masks "
            "(series are z-scored: zeros score about 1). Below 1 in the last column, LMAE beats "
            "the best simple filler.", "",
            *_markdown_table(["pretraining", *names], rows), ""]


def _shares_section(shares: Mapping[str, Mapping[str, float]]) -> list[str]:
    """What brainlit combined: each target's weight on the network's share, per config."""
    targets = sorted({t for weights in shares.values() for t in weights})
    rows = [[config, *(f"{weights[t]:.2f}" if t in weights else "-" for t in targets)]
            for config, weights in shares.items()]
    return ["## What brainlit combined", "",
            f"brainlit = {READOUT} + w x ({NETWORK} - {READOUT}), w in [0, 1] per target, fit in each "
            "fold on the out-of-sample predictions of its training subjects; mean w over folds:", "",
            *_markdown_table(["config", *targets], rows), ""]


def _subjects_section(title: str, intro: str, table: pd.DataFrame | None) -> list[str]:
    lines = [f"## {title}", ""]
    if table is None or len(table) == 0:
        return lines + ["None.", ""]
    preferred = [c for c in ("subject_id", "file", "reason") if c in table.columns]
    columns = preferred + [c for c in table.columns if c not in preferred]
    if {"subject_id", "file", "reason"} <= set(columns):
        table = table.assign(reason=[_without_prefix(row.reason, f"{row.subject_id} ({row.file}): ")
                                     for row in table.itertuples(index=False)])
    return lines + [f"{len(table)} subject(s) {intro}:", "",
                    *_markdown_table(columns, table[columns].itertuples(index=False)), ""]


def _without_prefix(text: str, prefix: str) -> str:
    """The reason without the subject and file the table's other columns already give."""
    return text[len(prefix):] if str(text).startswith(prefix) else text


def to_markdown(
    results: pd.DataFrame,
    skipped: pd.DataFrame | None = None,
    title: str = "brainlit results",
    diagnostics: Mapping[str, Mapping[str, float]] | None = None,
    dropped: pd.DataFrame | None = None,
    shares: Mapping[str, Mapping[str, float]] | None = None,
) -> str:
    """Markdown report: per target the models, the paper and the paired difference; then what
    brainlit combined, the LMAE diagnostics and the subjects left out.

    Args:
        results: Per-fold scores (model, target, [repeat,] fold, n_test, mae, pearson_r,
            [pearson_r_age_partial]).
        skipped: Subjects left out for bad input (e.g. columns subject_id, file, reason).
        title: Top-level heading.
        diagnostics: ``{pretraining variant: {filler: MSE}}`` from LMAE validation.
        dropped: Subjects with imaging but without a target value (subject_id, reason).
        shares: ``{config: {target: mean weight on the network's share}}``.
    """
    summary = summarize(results)
    lines = [
        f"# {title}",
        "",
        "Mean ± sd over folds [95% CI of the mean, t-distribution]; every model saw the same "
        "folds. r is n/a for the mean predictor (constant predictions); folds with fewer than "
        f"{MIN_TEST_FOR_R} test subjects add no r. The age-partialled r is the correlation of "
        "true and predicted values with true age regressed out of both.",
        "",
    ]
    for target in summary.target.unique():
        lines += [f"## {target}", ""]
        lines += _markdown_table(_header(target), _rows(summary, target, ci=True))
        lines += ["", *(f"- {line}" for line in _difference_lines(results, target)), ""]
    if shares:
        lines += _shares_section(shares)
    if diagnostics:
        lines += _diagnostics_section(diagnostics)
    lines += _subjects_section("Skipped subjects", "left out for bad input", skipped)
    if dropped is not None:
        lines += _subjects_section("Subjects without a target value", "left out of that target", dropped)
    return "\n".join(lines).rstrip("\n") + "\n"


def format_table(results: pd.DataFrame) -> str:
    """Plain-text table for the terminal: mean ± sd per (target, model), paired differences below."""
    summary = summarize(results)
    header = ["target", "model", "MAE", "r", "r (age-partialled)", "folds"]
    rows = []
    for target in summary.target.unique():
        for row in _rows(summary, target, ci=False):
            rows.append([target, *row[:3], row[3] if target != "age" else "", row[-1]])
    widths = [max(len(str(v)) for v in column) for column in zip(header, *rows, strict=False)]
    lines = [
        "  ".join(str(v).ljust(w) for v, w in zip(line, widths, strict=True)).rstrip()
        for line in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    differences = [line for target in summary.target.unique() for line in _difference_lines(results, target)]
    return "\n".join(lines + ([""] + differences if differences else []))
