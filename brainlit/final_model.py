"""An experiment's final model: its configuration fit on every labelled subject, as a model folder.

After the cross-validation folds, each fine-tuning config is fit once more (per ensemble
member, from the cohort's LMAE encoder) on all labelled subjects: ``data.n_folds: 1``, so the
network trains on ``1 - val_fraction`` of them and the rest select the checkpoint (the ridge
read-out and its tangent reference see them all). The folder (:mod:`brainlit.model_folder`)
stores the brain-age bias correction fit on the brainlit model's *out-of-fold* predictions of
the same cohort (in-sample ones would understate the gap's age trend) and the CV results.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from brainlit.model_folder import bias_correction, members_of, write_model_folder

if TYPE_CHECKING:
    from brainlit.experiment import Experiment

log = logging.getLogger(__name__)


def write_final_models(experiment: Experiment, results: pd.DataFrame, predictions: pd.DataFrame) -> list[Path]:
    """One model folder per fine-tuning config: ``<out>/model`` (or ``<out>/model/<config>``)."""
    configs = sorted(experiment.configs.glob("finetune*.yaml"))
    folders = []
    for config in configs:
        folder = experiment.out / "model" / (config.stem if len(configs) > 1 else "")
        checkpoints = [fit_final_member(experiment, config, m) for m in range(experiment.ensemble)]
        members, data = members_of(checkpoints)
        correction = out_of_fold_correction(predictions, config.stem, experiment.repeats)
        folders.append(write_model_folder(folder, members, data, correction, cv_summary(results, data["targets"])))
    return folders


def fit_final_member(experiment: Experiment, config: Path, member: int) -> Path:
    """Fit ``config`` on every labelled subject with member ``member``'s seed; saved and reused."""
    from brainlit.experiment import _clear_interrupted, _write_atomically, _yaml

    folder = experiment.out / "final" / config.stem / f"member{member}"
    done = folder / "final.ckpt"
    if done.exists():
        return done
    pretrained = experiment.pretrain("local", experiment.out / "pretrain" / "local")
    seed = int(_yaml(config).get("seed_everything", 0) or 0) + member
    extra = ["--data.n_folds", "1", "--data.fold", "0", "--seed_everything", str(seed),
             "--model.init_args.pretrained", str(pretrained)]
    _clear_interrupted(folder / "logs")
    cli = experiment._cli(config, folder / "logs", extra)
    log.info("Final model of %s, member %d: every labelled subject", config.stem, member)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    callback = cli.trainer.checkpoint_callback
    _write_atomically(done, copy_of=Path(callback.best_model_path or callback.last_model_path))
    return done


def out_of_fold_correction(predictions: pd.DataFrame, config: str, repeats: int) -> dict | None:
    """The bias correction fit on brainlit's out-of-fold age predictions, averaged per subject."""
    rows = predictions[(predictions["model"] == "brainlit") & (predictions["target"] == "age")]
    if rows.empty:
        return None
    per_subject = rows.groupby("subject_id")[["y_true", "y_pred"]].mean()
    fit_on = (f"the training cohort's out-of-fold brainlit predictions ({config}, {repeats} repeat(s) of "
              "cross-validation), averaged per subject")
    return bias_correction(per_subject["y_true"], per_subject["y_pred"], fit_on)


def cv_summary(results: pd.DataFrame, targets: list[str]) -> list[dict]:
    """Mean fold scores per model and target, as stored in the model card."""
    scores = [c for c in ("mae", "pearson_r", "pearson_r_age_partial") if c in results]
    table = results[results["target"].isin(targets)].groupby(["model", "target"], sort=False)[scores].mean()
    return table.reset_index().astype(object).where(table.reset_index().notna(), None).to_dict("records")
