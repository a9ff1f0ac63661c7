"""A figure that cannot be drawn costs a warning, never the finished run."""

import logging

import numpy as np
import pandas as pd

from brainlit.cli import BrainlitCLI
from brainlit.data.datamodule import FMRIDataModule
from tests.test_cli import CONFIGS, data_args, small_model


def test_roi_centres_of_the_wrong_length_do_not_fail_the_test_stage(cohort, tmp_path, monkeypatch, caplog):
    # 8 ROIs in the series but 7 centres, as an atlas without background label 0 once gave
    monkeypatch.setattr(FMRIDataModule, "roi_coordinates", property(lambda self: np.zeros((7, 3))))
    args = ["--config", str(CONFIGS / "finetune_age.yaml"), *data_args(cohort, tmp_path / "cache.h5"),
            *small_model("finetune"), "--trainer.logger.init_args.save_dir", str(tmp_path)]
    cli = BrainlitCLI(args=args, run=False)
    with caplog.at_level(logging.WARNING, logger="brainlit.tasks.figures"):
        [metrics] = cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)
    assert np.isfinite(metrics["test/age/mae"])
    assert "Skipped draw_expert_maps: ValueError: roi_coords must be [R, 3] with R=8" in caplog.text
    log_dir = cli.trainer.log_dir
    weights = pd.read_csv(f"{log_dir}/roi_expert_weights.csv")  # written before the maps failed
    assert weights.shape == (8, 4)
