"""``python -m brainlit apply``: a model folder applied to a new cohort, at the model's site or a new one.

The new cohort is parcellated with the model's atlas and cleaning options at the model's TR;
runs at another TR (beyond the parcellator's 1 % tolerance) are rejected unless
``--data.resample_tr true`` resamples them to the model's TR (a run from a longer TR then lacks
the frequencies between its Nyquist frequency and the model's). The brain-age bias correction is the
training cohort's unless ``--refit_bias`` refits it on the controls. With ``--controls`` the
read-out's harmonisation learns the new site's scanner effects from those subjects (ages
known), and they are left out of the summary scores.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
from jsonargparse import ArgumentParser

from brainlit.brain_age import BrainAgeModel, load_model
from brainlit.data.card import file_sha256
from brainlit.data.datamodule import FMRIDataModule
from brainlit.data.sources import SITE
from brainlit.errors import BrainlitConfigError
from brainlit.model_folder import bias_correction, read_model_folder
from brainlit.new_site import Cohort, adapt_to_controls, site_summary
from brainlit.viz import plot_brain_age

log = logging.getLogger(__name__)

# FMRIDataModule options that apply sets itself or that only concern training
NOT_FOR_APPLY = {"root", "atlas", "targets", "n_folds", "fold", "val_fraction", "seed", "crop_len", "views",
                 "batch_size", "num_workers", "predict_split", "crops_per_subject", "split_file"}


def _parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python -m brainlit apply", description=apply_command.__doc__)
    parser.add_argument("--model", type=str, required=True, help="model folder (brainlit_model.json)")
    parser.add_argument("--root", type=str, required=True, help="the new cohort (BIDS, fMRIPrep, Cam-CAN, arrays)")
    parser.add_argument("--out", type=str, required=True, help="predictions CSV to write (and a PNG beside it)")
    parser.add_argument("--atlas", type=str | None, default=None,
                        help="the model's atlas file (checked against its checksum); default: its bundled name")
    parser.add_argument("--level", type=float, default=0.9, help="coverage of the prediction intervals")
    parser.add_argument("--controls", type=str | None, default=None,
                        help="TSV with a participant_id column: subjects of the new site, ages known, to adapt to it")
    parser.add_argument("--refit_bias", type=bool, default=False,
                        help="refit the brain-age bias correction on the controls' predictions")
    parser.add_class_arguments(FMRIDataModule, "data", skip=NOT_FOR_APPLY)
    return parser


def _model_defaults(card: dict, out: Path) -> dict:
    """``--data.*`` defaults that parcellate the new cohort as the training cohort was."""
    data = card["data"]
    defaults = {f"data.{k}": v for k, v in data["preprocessing"].items() if k != "atlas"}
    defaults["data.t_r"] = data["t_r"]
    defaults["data.min_timepoints"] = max(data["preprocessing"].get("min_timepoints") or 0, data["window"])
    defaults["data.cache_path"] = str(out.with_suffix(".cache.h5"))
    return defaults


def _checked_atlas(card: dict, atlas: str | None) -> str:
    """The atlas to parcellate with; a file must have the model's checksum."""
    expected = card["data"]["atlas"]
    if atlas is None:
        if expected["sha256"]:
            raise BrainlitConfigError(f"the model was trained with the atlas file {expected['name']}: pass it "
                                      "with --atlas.")
        return expected["name"]
    if expected["sha256"] is None or not Path(atlas).is_file():
        if atlas != expected["name"]:
            raise BrainlitConfigError(f"--atlas {atlas} is not the model's atlas {expected['name']}.")
        return atlas
    found = file_sha256(atlas)
    if found != expected["sha256"]:
        raise BrainlitConfigError(
            f"--atlas {atlas} (sha256 {found[:12]}) differs from the atlas the model was trained with "
            f"({expected['name']}, sha256 {expected['sha256'][:12]}): pass that file.")
    return atlas


def apply_command(argv: list[str]) -> None:
    """``python -m brainlit apply --model DIR --root NEW_ROOT --out FILE.csv [--controls TSV] [--data.* ...]``.

    Parcellates the new cohort with the model's atlas, TR and cleaning (the ``--data.*``
    defaults come from the model; a cache is kept beside FILE.csv) and predicts every subject
    with usable imaging, labelled or not: ``<target>_pred`` with its interval
    (``_lower``/``_upper`` at ``--level``), ``<target>_true`` where known and, for age, the
    brain-age gap, its correction and interval; ``ood_flag`` and its reason for subjects unlike
    the training cohort; subjects skipped for bad input appear flagged, with the reason.
    ``--controls`` adapts the model to the new site first. A PNG beside FILE.csv shows
    predicted against true age with the intervals and the flags.
    """
    parser = _parser()
    folder = _option(argv, "--model")
    if folder is not None:  # the model's settings become the --data.* defaults
        card = read_model_folder(folder)[0]
        parser.set_defaults(_model_defaults(card, Path(_option(argv, "--out") or "predictions.csv")))
    args = parser.parse_args(argv)
    model = load_model(args.model)
    cohort = _cohort(model, args)
    controls = adapt_to_controls(model, cohort, args.controls) if args.controls else []
    frame = predictions(model, cohort, args.level, controls, args.refit_bias)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out, index=False)
    figure = Path(args.out).with_suffix(".png")
    if "age_pred" in frame:
        plot_brain_age(frame).savefig(figure, dpi=120, bbox_inches="tight")
    print(site_summary(frame, args.out, figure if figure.exists() else None))


def _cohort(model: BrainAgeModel, args) -> Cohort:  # noqa: ANN001 - the parsed namespace
    """The new cohort parcellated as the model's training cohort was."""
    options = args.data.as_dict()
    t_r = model.card["data"]["t_r"]
    if t_r and options["t_r"] and abs(options["t_r"] / t_r - 1) > 0.01:
        raise BrainlitConfigError(f"--data.t_r {options['t_r']} s differs from the model's TR {t_r} s: keep the "
                                  "model's, and pass --data.resample_tr true to resample runs of another TR to it.")
    datamodule = FMRIDataModule(root=args.root, atlas=_checked_atlas(model.card, args.atlas), targets=[], **options)
    report = datamodule.prepare_data()
    return Cohort.from_cache(datamodule.reader, report)


def predictions(model: BrainAgeModel, cohort: Cohort, level: float, controls: list[str],
                refit_bias: bool) -> pd.DataFrame:
    """Every subject's row: predictions, truths, gap, intervals and flags; controls marked."""
    phenotypes = cohort.phenotypes
    age = phenotypes["age"] if "age" in phenotypes else None
    frame = model.predict([cohort.reader.timeseries(s).T for s in cohort.ids], cohort.ids, age,
                          cohort.sites(model), level)
    if refit_bias and controls:
        rows = frame["subject_id"].isin(controls)
        fit_on = f"{len(controls)} controls of the new site (apply --refit_bias)"
        model.card["bias_correction"] = bias_correction(frame.loc[rows, "age_true"], frame.loc[rows, "age_pred"], fit_on)
        frame = model.predict([cohort.reader.timeseries(s).T for s in cohort.ids], cohort.ids, age,
                              cohort.sites(model), level)
    for target in model.targets:
        if target != "age" and target in phenotypes:
            frame.insert(frame.columns.get_loc(f"{target}_pred") + 1, f"{target}_true", phenotypes[target].to_numpy())
    if SITE in phenotypes:
        frame.insert(1, SITE, phenotypes[SITE].to_numpy())
    frame["used_for_adaptation"] = frame["subject_id"].isin(controls)
    return pd.concat([frame, cohort.skipped_rows()], ignore_index=True)


def _option(argv: list[str], name: str) -> str | None:
    """The value of ``name`` in ``argv`` (``--name VALUE`` or ``--name=VALUE``), if given."""
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None
