"""A new cohort as ``apply`` sees it: its subjects and sites, the controls it adapts from, its summary."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from brainlit.brain_age import BrainAgeModel
from brainlit.data.cache import CacheReader, CacheReport
from brainlit.data.sources import SITE, read_phenotype_table
from brainlit.errors import BrainlitDataError

NEW_SITE = "new site"  # the label of a cohort without a site column once it is adapted to


@dataclass
class Cohort:
    """The parcellated new cohort: subjects with usable imaging, their phenotypes, the skipped.

    Attributes:
        reader: Its cache.
        ids: Subjects with usable imaging.
        phenotypes: Their phenotypes (``age``, ``site`` ... where known), indexed by subject.
        skipped: ``(subject, file, reason)`` of runs rejected for bad input.
        adapted: Sites the model was adapted to from this cohort's controls.
    """

    reader: CacheReader
    ids: list[str]
    phenotypes: pd.DataFrame
    skipped: list[tuple[str, str, str]] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)

    @classmethod
    def from_cache(cls, reader: CacheReader, report: CacheReport) -> Cohort:
        """The cohort a cache build left (raises, naming the first reason, when every run was rejected)."""
        reader.n_rois  # noqa: B018
        ids = reader.subject_ids
        return cls(reader, ids, reader.phenotypes.reindex(ids), list(report.skipped))

    def site_of(self, subjects: list[str]) -> list[str]:
        """Each subject's site: its ``site`` value, else :data:`NEW_SITE`."""
        if SITE not in self.phenotypes:
            return [NEW_SITE] * len(subjects)
        return self.phenotypes.loc[subjects, SITE].fillna(NEW_SITE).astype(str).tolist()

    def sites(self, model: BrainAgeModel) -> list[str] | None:
        """The sites the read-out harmonises the subjects as: their own once the model knows
        them (trained or adapted); None (the model's one training site) for a cohort without a
        site column that was not adapted to."""
        if SITE not in self.phenotypes and not self.adapted:
            return None
        return self.site_of(self.ids)

    def skipped_rows(self) -> pd.DataFrame:
        """One flagged row per subject skipped for bad input, the reason as ``ood_reason``."""
        return pd.DataFrame({"subject_id": [s for s, _, _ in self.skipped], "ood_flag": True,
                             "ood_reason": [reason for _, _, reason in self.skipped]})


def read_controls(path: str | Path, cohort: Cohort) -> list[str]:
    """The subjects listed in ``path`` (``participant_id``), each checked to be in the cohort with an age.

    Raises:
        BrainlitDataError: the table has no subject column, a control is not in the cohort (or
            was skipped for bad input), or has no age; each names the subject and the file.
    """
    if not Path(path).is_file():
        raise BrainlitDataError(f"--controls {path} not found: give a TSV with a participant_id column.")
    controls = list(read_phenotype_table(Path(path)).index)
    skipped = {s: reason for s, _, reason in cohort.skipped}
    ages = cohort.phenotypes["age"] if "age" in cohort.phenotypes else pd.Series(dtype=float)
    for control in controls:
        if control in skipped:
            raise BrainlitDataError(f"control {control} ({path}) was skipped for bad input: {skipped[control]}")
        if control not in cohort.ids:
            raise BrainlitDataError(f"control {control} ({path}) is not in the cohort: list subjects of --root.")
        if not np.isfinite(ages.get(control, np.nan)):
            raise BrainlitDataError(f"control {control} ({path}) has no age in the cohort's phenotype table: "
                                    "controls need a known age.")
    return controls


def adapt_to_controls(model: BrainAgeModel, cohort: Cohort, path: str | Path) -> list[str]:
    """Adapt the model to each site of the controls in ``path``; returns the controls.

    Raises:
        BrainlitDataError: see :func:`read_controls`; a site with fewer controls than the
            model's minimum, or one the model was trained on.
    """
    controls = read_controls(path, cohort)
    by_site = pd.Series(cohort.site_of(controls), index=controls)
    for site, members in by_site.groupby(by_site):
        runs = [cohort.reader.timeseries(s).T for s in members.index]
        model.adapt(runs, cohort.phenotypes.loc[members.index, "age"].to_numpy(float), str(site))
        cohort.adapted.append(str(site))
    return controls


COLUMNS = (("site", 12), ("subjects", 8), ("controls", 8), ("age MAE", 8), ("coverage", 8), ("flagged", 7))


def _cells(cells: list[str]) -> str:
    return "  " + "  ".join(c.ljust(width) for c, (_, width) in zip(cells, COLUMNS, strict=True)).rstrip()


def _site_line(site: str, rows: pd.DataFrame) -> str:
    """One site's subjects, controls, age MAE and interval coverage (controls left out), flags."""
    controls = rows["used_for_adaptation"].fillna(False).astype(bool)
    scored = rows[~controls]
    known = scored["age_true"].notna() if "age_true" in scored else pd.Series(False, index=scored.index)
    error = (scored["age_pred"] - scored["age_true"]).abs()[known]
    inside = scored["age_true"].between(scored["age_lower"], scored["age_upper"])[known] if "age_lower" in scored else []
    flagged = int(rows["ood_flag"].fillna(False).astype(bool).sum()) if "ood_flag" in rows else 0
    return _cells([site, str(len(rows)), str(int(controls.sum())), f"{error.mean():.2f}" if len(error) else "n/a",
                   f"{np.mean(inside):.0%}" if len(inside) else "n/a", str(flagged)])


def site_summary(frame: pd.DataFrame, out: str, figure: Path | None) -> str:
    """What ``apply`` prints: the rows written, then per site the subjects, controls, age MAE
    and interval coverage where ages are known (controls left out) and the subjects flagged,
    then the first flags' reasons."""
    lines = [f"Predicted {len(frame)} subjects -> {out}"]
    if "age_pred" in frame:
        sites = frame[SITE].fillna("-") if SITE in frame else pd.Series("all", index=frame.index)
        lines.append(_cells([name for name, _ in COLUMNS]))
        lines += [_site_line(str(site), rows) for site, rows in frame.groupby(sites, sort=True)]
    flagged = frame[frame["ood_flag"].fillna(False).astype(bool)] if "ood_flag" in frame else frame.iloc[:0]
    lines += [f"  flagged {row.subject_id}: {row.ood_reason}" for row in flagged.head(10).itertuples()]
    if len(flagged) > 10:
        lines.append(f"  ... {len(flagged) - 10} more flagged (ood_flag, ood_reason in {out})")
    if figure is not None:
        lines.append(f"Figure: {figure}")
    return "\n".join(lines)
