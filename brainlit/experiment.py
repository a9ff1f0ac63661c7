"""``python -m brainlit experiment``: the paper's protocol end to end, resumable.

cache -> LMAE pretraining on every subject's imaging (no labels) -> for each target and
each of k subject-disjoint folds: fine-tune RWMOE + SSM from the pretrained encoder and
test -> kernel ridge on FC and a mean predictor on the identical folds -> ``results.csv``
and ``results.md`` beside the paper's numbers. Finished steps are found on disk and skipped.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from pathlib import Path

import pandas as pd
from jsonargparse import ArgumentParser

from brainlit.baselines import run_baselines
from brainlit.cli import BrainlitCLI
from brainlit.data.cache import CacheReader
from brainlit.report import format_table, to_markdown

log = logging.getLogger(__name__)


class Experiment:
    """Runs one cohort through pretraining, k-fold fine-tuning and the baselines.

    Args:
        root: Dataset root (BIDS, fMRIPrep derivatives or a Cam-CAN tree).
        out: Output folder: cache, logs, checkpoints and the results tables.
        configs: Folder holding ``pretrain.yaml`` and one ``finetune_*.yaml`` per target.
        atlas: Atlas image (labels or maps); null uses the datamodule's default.
        quick: Overlay ``<configs>/../quick/*.yaml``: tiny models, few epochs, same code path.
        n_folds: Override the number of cross-validation folds of the configs.
    """

    def __init__(
        self,
        root: str,
        out: str = "runs/camcan",
        configs: str = "configs/camcan",
        atlas: str | None = None,
        quick: bool = False,
        n_folds: int | None = None,
    ) -> None:
        self.out, self.configs = Path(out), Path(configs)
        self.out.mkdir(parents=True, exist_ok=True)
        self.data_args = ["--data.root", root, "--data.cache_path", str(self.out / "cache.h5")]
        if atlas:
            self.data_args += ["--data.atlas", atlas]
        self.n_folds = n_folds
        self.quick = quick

    def _cli(self, config: Path, stage: str, version: str, extra: list[str]) -> BrainlitCLI:
        overlay = []
        if self.quick:
            name = "pretrain.yaml" if config.stem == "pretrain" else "finetune.yaml"
            overlay = ["--config", str(self.configs.parent / "quick" / name)]
        logger = [
            "--trainer.logger.init_args.save_dir", str(self.out / stage),
            "--trainer.logger.init_args.name", "",
            "--trainer.logger.init_args.version", version,
        ]
        args = ["--config", str(config), *overlay, *self.data_args, *logger, *extra]
        return BrainlitCLI(args=args, run=False)

    def pretrain(self) -> Path:
        """LMAE on the imaging of every cached subject; returns the best checkpoint."""
        done = self.out / "pretrain" / "lmae.ckpt"
        if done.exists():
            log.info("Pretraining already done: %s", done)
            return done
        cli = self._cli(self.configs / "pretrain.yaml", "pretrain", "lmae", [])
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        checkpoint = cli.trainer.checkpoint_callback
        best = Path(checkpoint.best_model_path or checkpoint.last_model_path)
        done.write_bytes(best.read_bytes())
        return done

    def finetune_fold(self, config: Path, fold: int, pretrained: Path) -> dict:
        """Fine-tune and test one fold; the result is saved and reused on a re-run."""
        target = target_of(config)
        folder = self.out / target / f"fold{fold}"
        result_path = folder / "result.json"
        if result_path.exists():
            return json.loads(result_path.read_text())
        extra = ["--data.fold", str(fold), "--data.n_folds", str(self._n_folds(config)),
                 "--model.init_args.pretrained", str(pretrained)]
        cli = self._cli(config, target, f"fold{fold}", extra)
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        metrics = cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path="best", verbose=False)[0]
        splits = cli.datamodule.split_table()
        splits.to_csv(folder / "splits.csv", index=False)
        result = {
            "model": "brainlit",
            "target": target,
            "fold": fold,
            "n_test": int((splits["split"] == "test").sum()),
            "mae": float(metrics[f"test/{target}/mae"]),
            "pearson_r": float(metrics[f"test/{target}/pearson"]),
        }
        tmp = result_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(result, indent=2))
        tmp.replace(result_path)
        return result

    def baselines(self, target: str, n_folds: int) -> pd.DataFrame:
        """Kernel ridge on FC and the mean predictor on the brainlit folds of ``target``."""
        reader = CacheReader(self.out / "cache.h5")
        folds, subjects = {}, set()
        for fold in range(n_folds):
            splits = pd.read_csv(self.out / target / f"fold{fold}" / "splits.csv")
            test = splits.loc[splits["split"] == "test", "subject_id"].tolist()
            train = splits.loc[splits["split"] != "test", "subject_id"].tolist()
            folds[fold] = (train, test)
            subjects.update(train + test)
        series = {s: reader.timeseries(s) for s in sorted(subjects)}
        y = reader.phenotypes.loc[sorted(subjects), target]
        return run_baselines(series, {target: y}, folds)

    def run(self) -> pd.DataFrame:
        """Every step, skipping what is already on disk; writes and returns the results."""
        start = time.perf_counter()
        pretrained = self.pretrain()
        rows, baseline_frames = [], []
        for config in sorted(self.configs.glob("finetune_*.yaml")):
            n_folds = self._n_folds(config)
            rows += [self.finetune_fold(config, k, pretrained) for k in range(n_folds)]
            baseline_frames.append(self.baselines(target_of(config), n_folds))
        results = pd.concat([pd.DataFrame(rows), *baseline_frames], ignore_index=True)
        self.write(results)
        log.info("Experiment finished in %.1f min", (time.perf_counter() - start) / 60)
        return results

    def _n_folds(self, config: Path) -> int:
        return self.n_folds or int(_yaml(config).get("data", {}).get("n_folds", 5))

    def write(self, results: pd.DataFrame) -> None:
        """``results.csv``, ``results.md`` and the table on the terminal."""
        results.to_csv(self.out / "results.csv", index=False)
        skipped_path = self.out / "cache.h5.skipped.tsv"
        skipped = None
        if skipped_path.exists():
            skipped = pd.read_csv(skipped_path, sep="\t")[["subject_id", "file", "reason"]]
        (self.out / "results.md").write_text(to_markdown(results, skipped))
        print(format_table(results))
        if skipped is not None and len(skipped):
            print(f"\nSkipped {len(skipped)} subject(s) for bad input:")
            for row in skipped.itertuples():
                print(f"  {row.reason}")
        print(f"\nResults: {self.out / 'results.md'}  TensorBoard: make tensorboard (logs in {self.out})")


def target_of(config: Path) -> str:
    """The single target a fine-tuning config regresses (its ``data.targets``)."""
    targets = _yaml(config).get("data", {}).get("targets", [])
    if len(targets) != 1:
        raise ValueError(f"{config}: a fine-tuning config must name exactly one data.targets entry")
    return targets[0]


def _yaml(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text()) or {}


def experiment_main(argv: list[str]) -> None:
    """Parse ``python -m brainlit experiment`` arguments and run it."""
    # each step hands LightningCLI its own argument list; the process's argv is not for it
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
    parser = ArgumentParser(prog="python -m brainlit experiment", description=__doc__)
    parser.add_class_arguments(Experiment)
    Experiment(**parser.parse_args(argv).as_dict()).run()
