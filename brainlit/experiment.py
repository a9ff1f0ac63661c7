"""``python -m brainlit experiment``: the paper's protocol end to end, resumable.

cache -> LMAE pretraining (label-free; on every subject, or on each fold's training subjects)
-> for each fine-tuning config, repeat and subject-disjoint fold: fine-tune RWMOE + SSM from
the pretrained encoder and predict the test subjects -> tangent ridge, kernel ridge on FC and
the mean predictor on the identical folds (and brainlit's closed-form read-out alone, where it
has one, as ``brainlit read-out``) -> their averages (:mod:`brainlit.ensembles`) ->
every model scored the same way from its predictions -> ``predictions.csv``, ``results.csv``
and ``results.md`` beside the paper's numbers -> the final model, fit on every labelled subject,
as a model folder (:mod:`brainlit.final_model`). Each finished step is saved atomically and found
on disk by a re-run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Literal

import pandas as pd
import yaml
from jsonargparse import ArgumentParser

from brainlit.baselines import predict_baselines
from brainlit.baselines.oracle import oracle_inputs
from brainlit.cli import BrainlitCLI, datamodule_from_args
from brainlit.config_check import check_config, data_options
from brainlit.data.cache import CacheReader
from brainlit.data.simulate.cohort import LATENTS
from brainlit.ensembles import add_ensembles
from brainlit.errors import BrainlitConfigError, BrainlitOutputError
from brainlit.final_model import write_final_models
from brainlit.metrics import score_predictions
from brainlit.report import READOUT, format_table, to_markdown
from brainlit.tasks.pretrain import format_diagnostics

log = logging.getLogger(__name__)

# pretraining variant -> model name in the results; "none" fine-tunes from scratch
VARIANTS = {
    "local": "brainlit",
    "random": "brainlit (random masking)",
    "none": "brainlit (no pretraining)",
}


def _write_atomically(path: Path, text: str | None = None, copy_of: Path | None = None) -> None:
    """Write ``text`` (or a copy of the file ``copy_of``) to ``path``: whole or not at all.

    Raises:
        BrainlitOutputError: the folder is read-only or the disk full (no ``.tmp`` is left).
    """
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if copy_of is not None:
            shutil.copyfile(copy_of, tmp)
        else:
            tmp.write_text(text)
        tmp.replace(path)
    except OSError as error:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise BrainlitOutputError(
            f"cannot write {path} ({error.strerror or error}): make the folder writable and free "
            "some space, or choose another --out. Finished steps are kept and reused."
        ) from error


def _clear_interrupted(logs: Path) -> None:
    """Remove what an interrupted attempt at a step left (TensorBoard events, checkpoints)."""
    if logs.exists():
        log.info("Removing %s, left by an interrupted run: the step starts again", logs)
        shutil.rmtree(logs)


def _yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text()) or {}


def targets_of(config: Path) -> list[str]:
    """The targets a fine-tuning config regresses (its ``data.targets``)."""
    targets = _yaml(config).get("data", {}).get("targets", [])
    if not targets:
        raise ValueError(f"{config}: a fine-tuning config must name its data.targets")
    return list(targets)


class Experiment:
    """Runs one cohort through pretraining, k-fold fine-tuning and the baselines.

    Args:
        root: Dataset root (BIDS, fMRIPrep derivatives, a Cam-CAN tree or array files).
        out: Output folder: cache, logs, checkpoints, predictions and the results tables.
        configs: Folder holding ``pretrain.yaml`` and one or more ``finetune*.yaml``.
        atlas: Atlas image (labels or maps); null uses the datamodule's default.
        quick: Overlay ``<configs>/../quick/*.yaml``: tiny models, few epochs, same code path.
        n_folds: Override the number of cross-validation folds of the configs.
        repeats: Repeated k-fold: repeat r splits with ``data.seed + r``.
        pretrain: ``cohort`` pretrains once on every subject's imaging (label-free, the
            paper's setting); ``per_fold`` pretrains on each fold's training and validation
            subjects only, so no test subject's imaging is ever seen before testing.
        pretrain_ablation: Also fine-tune after random-masking pretraining and without
            pretraining, on the same folds (rows ``brainlit (random masking)`` and
            ``brainlit (no pretraining)``).
        ensemble: Models fine-tuned per fold, each from its own seed; their predictions are
            averaged (seed ensembling: it cuts the variance small training sets leave).
        data_options: Datamodule options for every config, as on the command line
            (``["--data.layout", "arrays"]``); ``experiment --data.layout arrays`` fills it.
        final_model: After the folds, fit each fine-tuning config (``ensemble`` members) on
            every labelled subject and write it as a model folder, ``<out>/model`` (see
            :mod:`brainlit.final_model`), for ``python -m brainlit apply``.
    """

    def __init__(
        self,
        root: str,
        out: str = "runs/camcan",
        configs: str = "configs/camcan",
        atlas: str | None = None,
        quick: bool = False,
        n_folds: int | None = None,
        repeats: int = 1,
        pretrain: Literal["cohort", "per_fold"] = "cohort",
        pretrain_ablation: bool = False,
        ensemble: int = 1,
        data_options: list[str] | None = None,
        final_model: bool = True,
    ) -> None:
        if repeats < 1 or ensemble < 1 or pretrain not in ("cohort", "per_fold"):
            raise ValueError("need repeats >= 1, ensemble >= 1 and pretrain in {cohort, per_fold}.")
        self.root, self.out, self.configs = Path(root), Path(out), Path(configs)
        self.out.mkdir(parents=True, exist_ok=True)
        self.data_args = ["--data.root", root, "--data.cache_path", str(self.out / "cache.h5")]
        if atlas:
            self.data_args += ["--data.atlas", atlas]
        self.data_args += list(data_options or [])
        self.n_folds, self.quick, self.repeats, self.pretrain_mode = n_folds, quick, repeats, pretrain
        self.ensemble, self.final_model = ensemble, final_model
        self.variants = tuple(VARIANTS) if pretrain_ablation else ("local",)

    # ------------------------------------------------------------------ helpers
    def _overlay(self, config: Path) -> list[str]:
        if not self.quick:
            return []
        name = "pretrain.yaml" if config.stem == "pretrain" else "finetune.yaml"
        return ["--config", str(self.configs.parent / "quick" / name)]

    def _cli(self, config: Path, folder: Path, extra: list[str]) -> BrainlitCLI:
        """A LightningCLI for ``config`` logging to ``folder`` (TensorBoard, checkpoints)."""
        logger = [
            "--trainer.logger.init_args.save_dir", str(folder.parent),
            "--trainer.logger.init_args.name", "",
            "--trainer.logger.init_args.version", folder.name,
        ]  # fmt: skip
        args = ["--config", str(config), *self._overlay(config), *self.data_args, *logger, *extra]
        return BrainlitCLI(args=args, run=False)

    def _n_folds(self, config: Path) -> int:
        return self.n_folds or int(_yaml(config).get("data", {}).get("n_folds", 5))

    def _fold_args(self, config: Path, repeat: int, fold: int) -> list[str]:
        seed = int(_yaml(config).get("data", {}).get("seed", 0)) + repeat
        return ["--data.fold", str(fold), "--data.n_folds", str(self._n_folds(config)),
                "--data.seed", str(seed)]

    def _fold_dir(self, config: Path, repeat: int, fold: int) -> Path:
        return self.out / config.stem / f"repeat{repeat}" / f"fold{fold}"

    def check_configs(self) -> None:
        """Parse every config with the overlays and data options and build its classes, before
        any work: a rejected option is one error naming the file (:mod:`brainlit.config_check`)."""
        finetune = sorted(self.configs.glob("finetune*.yaml"))
        if not finetune:
            raise BrainlitConfigError(f"no finetune*.yaml in {self.configs}: set --configs to a config folder.")
        pretrain = [self.configs / "pretrain.yaml"] if set(self.variants) - {"none"} else []
        for config in pretrain + finetune:
            check_config(config, [*self._overlay(config), *self.data_args])

    # ------------------------------------------------------------------ steps
    def fold_splits(self, config: Path, repeat: int, fold: int) -> Path:
        """Write (once) and return ``splits.csv`` (subject_id, split) of one fold of ``config``."""
        path = self._fold_dir(config, repeat, fold) / "splits.csv"
        if not path.exists():
            argv = ["--config", str(config), *self.data_args, *self._fold_args(config, repeat, fold)]
            datamodule = datamodule_from_args(argv)
            datamodule.setup()
            _write_atomically(path, datamodule.split_table().to_csv(index=False))
            dropped = datamodule.dropped.assign(config=config.stem)
            _write_atomically(self.out / config.stem / "dropped.csv", dropped.to_csv(index=False))
        return path

    def pretrain(self, variant: str, folder: Path, split_file: Path | None = None) -> Path | None:
        """LMAE with the ``variant`` masking; returns the best checkpoint (None for ``none``)."""
        if variant == "none":
            return None
        done = folder / "lmae.ckpt"
        if not done.exists():
            extra = ["--model.init_args.mask_strategy", variant]
            extra += ["--data.split_file", str(split_file)] if split_file else []
            _clear_interrupted(folder / "logs")
            cli = self._cli(self.configs / "pretrain.yaml", folder / "logs", extra)
            log.info("Pretraining LMAE (%s masking) -> %s", variant, done)
            cli.trainer.fit(cli.model, datamodule=cli.datamodule)
            best = cli.trainer.checkpoint_callback.best_model_path
            cli.trainer.validate(cli.model, datamodule=cli.datamodule, ckpt_path=best or None, verbose=False)
            diagnostics = cli.model.diagnostics.get("val", {})
            _write_atomically(folder / "diagnostics.json", json.dumps(diagnostics, indent=2))
            _write_atomically(done, copy_of=Path(best or cli.trainer.checkpoint_callback.last_model_path))
        return done

    def pretrained(self, variant: str, config: Path, repeat: int, fold: int) -> Path | None:
        """The checkpoint a fold starts from under the chosen ``pretrain`` mode."""
        if self.pretrain_mode == "cohort":
            return self.pretrain(variant, self.out / "pretrain" / variant)
        folder = self.out / "pretrain" / variant / config.stem / f"repeat{repeat}" / f"fold{fold}"
        return self.pretrain(variant, folder, self.fold_splits(config, repeat, fold))

    def finetune(self, config: Path, repeat: int, fold: int, variant: str) -> pd.DataFrame:
        """The test predictions of one fold: the mean over the ensemble's members."""
        members = [self.finetune_member(config, repeat, fold, variant, m) for m in range(self.ensemble)]
        keys = ["target", "subject_id", "fold"]
        values = [c for c in ("y_true", "y_pred", "y_readout") if c in members[0]]
        return pd.concat(members).groupby(keys, sort=False, as_index=False)[values].mean()

    def finetune_member(self, config: Path, repeat: int, fold: int, variant: str, member: int) -> pd.DataFrame:
        """Fine-tune one model and predict the fold's test subjects; saved and reused on a re-run.

        Each (repeat, member) trains with its own seed: ``seed_everything + repeat * ensemble
        + member``.
        """
        folder = self._fold_dir(config, repeat, fold) / variant / f"member{member}"
        path = folder / "predictions.csv"
        if path.exists():
            return pd.read_csv(path)
        pretrained = self.pretrained(variant, config, repeat, fold)
        seed = int(_yaml(config).get("seed_everything", 0) or 0) + repeat * self.ensemble + member
        extra = [*self._fold_args(config, repeat, fold), "--data.predict_split", "test",
                 "--seed_everything", str(seed)]
        # from scratch the encoder must learn: a frozen random encoder would be no baseline
        extra += (["--model.init_args.pretrained", str(pretrained)] if pretrained else
                  ["--model.init_args.freeze_encoder", "false", "--model.init_args.encoder_lr_scale", "1.0"])
        _clear_interrupted(folder / "logs")
        cli = self._cli(config, folder / "logs", extra)
        log.info("Fine-tuning %s, repeat %d, fold %d, member %d (%s)", config.stem, repeat, fold,
                 member, VARIANTS[variant])
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        best = cli.trainer.checkpoint_callback.best_model_path or None
        cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path=best, verbose=False)
        batches = cli.trainer.predict(cli.model, datamodule=cli.datamodule, ckpt_path=best)
        frame = _prediction_frame(batches, cli.model.hparams.target_names).assign(fold=fold)
        _write_atomically(path, frame.to_csv(index=False))
        return frame

    def baselines(self, config: Path, repeat: int) -> pd.DataFrame:
        """The classical models on the folds of ``config`` (same train and test subjects)."""
        path = self.out / config.stem / f"repeat{repeat}" / "baselines.csv"
        if path.exists():
            return pd.read_csv(path)
        folds = {}
        for fold in range(self._n_folds(config)):
            splits = pd.read_csv(self.fold_splits(config, repeat, fold))
            test = splits["split"] == "test"
            folds[fold] = (splits.loc[~test, "subject_id"].tolist(), splits.loc[test, "subject_id"].tolist())
        reader = CacheReader(self.out / "cache.h5")
        subjects = sorted({s for train, test in folds.values() for s in train + test})
        series = {s: reader.timeseries(s) for s in subjects}
        frame = predict_baselines(series, reader.phenotypes.loc[subjects, targets_of(config)], folds,
                                  latents=self.latents(subjects))
        _write_atomically(path, frame.to_csv(index=False))
        return frame

    def latents(self, subjects: list[str]) -> pd.DataFrame | None:
        """A simulated cohort's true latent parameters, for the oracle rows
        (:func:`brainlit.baselines.oracle.oracle_inputs` picks the columns each reads); None
        for any other cohort."""
        path = self.root / LATENTS
        if not path.exists():
            return None
        table = pd.read_csv(path, sep="\t").set_index("participant_id")
        if not oracle_inputs(table) or not set(subjects) <= set(table.index):
            return None
        return table.loc[subjects]

    def run(self) -> pd.DataFrame:
        """Every step, skipping what is already on disk; writes and returns the fold scores."""
        start = time.perf_counter()
        self.check_configs()
        frames = []
        configs = sorted(self.configs.glob("finetune*.yaml"))
        for repeat in range(self.repeats):
            for config in configs:
                suffix = config_suffix(config, configs)
                for fold in range(self._n_folds(config)):
                    self.fold_splits(config, repeat, fold)
                    for variant in self.variants:
                        frame = self.finetune(config, repeat, fold, variant).assign(repeat=repeat)
                        frames.append(frame.assign(model=VARIANTS[variant] + suffix))
                        if variant == "local" and "y_readout" in frame:
                            frames.append(frame.assign(model=READOUT + suffix, y_pred=frame["y_readout"]))
                frames.append(self.baselines(config, repeat).assign(repeat=repeat))
        keys = ["model", "target", "repeat", "fold", "subject_id"]  # configs on the same folds share baselines
        predictions = pd.concat(frames, ignore_index=True).drop_duplicates(keys)
        predictions = add_ensembles(self._with_age(predictions))
        results = score_predictions(predictions)
        self.write(results, predictions)
        if self.final_model:
            for folder in write_final_models(self, results, predictions):
                print(f"Model folder: {folder}  (python -m brainlit apply --model {folder} --root NEW --out FILE.csv)")
        log.info("Experiment finished in %.1f min", (time.perf_counter() - start) / 60)
        return results

    def _with_age(self, predictions: pd.DataFrame) -> pd.DataFrame:
        """Add each subject's true age (for the age-partialled r), NaN where unknown."""
        phenotypes = CacheReader(self.out / "cache.h5").phenotypes
        age = phenotypes["age"] if "age" in phenotypes else pd.Series(dtype=float)
        columns = ["model", "target", "repeat", "fold", "subject_id", "y_true", "y_pred"]
        return predictions[columns].assign(age=predictions["subject_id"].map(age).astype(float))

    def mean_diagnostics(self) -> dict[str, dict[str, float]]:
        """LMAE diagnostics per masking variant on disk, averaged over its pretrainings."""
        found = {}
        for variant in self.variants:
            paths = sorted((self.out / "pretrain" / variant).rglob("diagnostics.json"))
            values = [json.loads(p.read_text()) for p in paths]
            if values:
                found[variant] = pd.DataFrame(values).mean().to_dict()
        return found

    def dropped_subjects(self) -> pd.DataFrame:
        """Subjects with imaging but no value of a fine-tuning config's targets."""
        frames = [pd.read_csv(p) for p in sorted(self.out.glob("*/dropped.csv"))]
        frames = [f for f in frames if len(f)]
        return pd.concat(frames).drop_duplicates() if frames else pd.DataFrame(columns=["subject_id", "reason"])

    def write(self, results: pd.DataFrame, predictions: pd.DataFrame) -> None:
        """``predictions.csv``, ``results.csv``, ``results.md`` and the table on the terminal."""
        _write_atomically(self.out / "predictions.csv", predictions.to_csv(index=False))
        _write_atomically(self.out / "results.csv", results.to_csv(index=False))
        skipped_path = self.out / "cache.h5.skipped.tsv"
        skipped = None
        if skipped_path.exists():
            skipped = pd.read_csv(skipped_path, sep="\t")[["subject_id", "file", "reason"]]
        diagnostics = self.mean_diagnostics()
        markdown = to_markdown(results, skipped, diagnostics=diagnostics, dropped=self.dropped_subjects())
        _write_atomically(self.out / "results.md", markdown)
        print(format_table(results))
        for variant, values in diagnostics.items():
            print(f"\nLMAE reconstruction ({variant} masking), masked-patch MSE on held-out runs:")
            print(format_diagnostics(values))
        if skipped is not None and len(skipped):
            print(f"\nSkipped {len(skipped)} subject(s) for bad input:")
            for row in skipped.itertuples():
                print(f"  {row.reason}")
        print(f"\nResults: {self.out / 'results.md'}  TensorBoard: make tensorboard (logs in {self.out})")


def config_suffix(config: Path, configs: list[Path]) -> str:
    """``" (<config stem>)"`` when another fine-tuning config regresses one of the same targets
    (an ablation folder), so that each config's rows keep a name of their own; else ``""``."""
    others = {t for c in configs if c != config for t in targets_of(c)}
    return f" ({config.stem})" if others & set(targets_of(config)) else ""


def _prediction_frame(batches: list[dict], target_names: list[str]) -> pd.DataFrame:
    """Long table (target, subject_id, y_true, y_pred) of ``RegressionTask.predict_step`` outputs,
    with ``y_readout`` where the model has a closed-form read-out."""
    readout = all("readout" in batch for batch in batches)
    rows = []
    for batch in batches:
        for i, subject_id in enumerate(batch["subject_id"]):
            for j, target in enumerate(target_names):
                row = [target, subject_id, float(batch["true"][i, j]), float(batch["pred"][i, j])]
                rows.append(row + ([float(batch["readout"][i, j])] if readout else []))
    return pd.DataFrame(rows, columns=["target", "subject_id", "y_true", "y_pred"] + (["y_readout"] if readout else []))


def experiment_main(argv: list[str]) -> None:
    """Parse ``python -m brainlit experiment`` arguments and run it."""
    description = f"{__doc__}\nAny --data.* option (`python -m brainlit cache --help`) applies to every config."
    parser = ArgumentParser(prog="python -m brainlit experiment", description=description)
    parser.add_class_arguments(Experiment, skip={"data_options"})
    argv, data = data_options(argv)
    Experiment(**parser.parse_args(argv).as_dict(), data_options=data).run()
