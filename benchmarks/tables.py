"""The benchmark's markdown report: one table per section, and factorised-vs-joint ratios."""

from __future__ import annotations

from measure import markdown_table

MODEL_COLUMNS = [
    ("model", "model"),
    ("attention", "attention"),
    ("rois", "R"),
    ("length", "T"),
    ("tokens", "tokens R*P"),
    ("batch", "batch"),
    ("precision", "precision"),
    ("scan", "scan"),
    ("ms_per_step", "ms/step"),
    ("subjects_per_s", "subjects/s"),
    ("peak_mib", "peak MiB"),
    ("note", "note"),
]


def speedups(rows: list[dict]) -> list[dict]:
    """Factorised vs joint attention: ratio of subjects/s for each matching case."""
    ok = [r for r in rows if r["section"] == "models" and r["status"] == "ok"]
    key = ("model", "rois", "length", "precision", "scan")
    joint = {tuple(r[k] for k in key): r for r in ok if r["attention"] == "joint"}
    out = []
    for row in (r for r in ok if r["attention"] == "factorized"):
        other = joint.get(tuple(row[k] for k in key))
        if other:
            out.append(
                {
                    **{k: row[k] for k in key},
                    "batch": f"{row['batch']} / {other['batch']}",
                    "speedup": row["subjects_per_s"] / other["subjects_per_s"],
                    "step_ratio": other["ms_per_step"] / row["ms_per_step"],
                }
            )
    return out


RATIO_COLUMNS = [
    ("model", "model"),
    ("rois", "R"),
    ("length", "T"),
    ("precision", "precision"),
    ("scan", "scan"),
    ("batch", "batch fact. / joint"),
    ("speedup", "speed-up"),
    ("step_ratio", "step ratio"),
]
SCAN_COLUMNS = [
    ("scan", "scan"),
    ("length", "L"),
    ("batch", "B"),
    ("d_inner", "D"),
    ("d_state", "N"),
    ("fwd_ms", "fwd ms"),
    ("fwd_bwd_ms", "fwd+bwd ms"),
]
LOADER_COLUMNS = [
    ("workers", "num_workers"),
    ("rois", "R"),
    ("length", "T"),
    ("batch", "batch"),
    ("precision", "precision"),
    ("batches", "batches timed"),
    ("load_ms", "load ms/batch"),
    ("step_ms", "step ms/batch"),
    ("load_share", "loading share"),
]
RATIO_NOTE = (
    "speed-up = subjects/s factorised over joint; "
    "step ratio = joint ms/step over factorised ms/step (equal only when the batches are)."
)


def section(title: str, rows: list[dict], columns: list[tuple[str, str]], note: str = "") -> list[str]:
    """A heading, an optional note and the table; nothing when there are no rows."""
    if not rows:
        return []
    return [f"## {title}", "", *([note, ""] if note else []), markdown_table(rows, columns), ""]


def render(meta: dict, rows: list[dict], scan_note: str) -> str:
    """The markdown report: one table per section."""
    of = {name: [r for r in rows if r["section"] == name] for name in ("models", "scan", "loader")}
    parts = [
        f"# brainlit benchmarks: {meta['name']} ({meta['device']}, {meta['threads']} threads, torch {meta['torch']})",
        "",
        f"Peak memory: {meta['memory']}.",
        "",
        *section("Training step (forward + backward + AdamW)", of["models"], MODEL_COLUMNS),
        *section("Factorised vs joint attention", speedups(rows), RATIO_COLUMNS, RATIO_NOTE),
        *section("Selective scan", of["scan"], SCAN_COLUMNS, scan_note),
        *section("Data loading (Lightning SimpleProfiler)", of["loader"], LOADER_COLUMNS),
    ]
    return "\n".join(parts)
