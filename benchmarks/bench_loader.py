"""Share of a training step spent waiting for data, from Lightning's SimpleProfiler.

A small simulated cohort is cached, then ``Trainer.fit`` runs the regression task for a few
batches with ``profiler=SimpleProfiler()``. The share is the time in
``[_TrainingEpochLoop].train_dataloader_next`` over that plus ``run_training_batch``
(forward, backward and optimiser step). The first batch is left out: it includes starting
the loader's worker processes. Run through ``bench_models.py --sections loader``.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.profilers import SimpleProfiler

from brainlit.data.datamodule import FMRIDataModule
from brainlit.data.simulate import simulate_cohort
from brainlit.tasks import RegressionTask
from brainlit.tasks.specs import EncoderSpec

LOAD, STEP = "[_TrainingEpochLoop].train_dataloader_next", "run_training_batch"


def _fit_with_profiler(
    data: FMRIDataModule,
    model: L.LightningModule,
    device: torch.device,
    precision: str,
    batches: int,
    folder: Path,
) -> SimpleProfiler:
    profiler = SimpleProfiler(dirpath=folder, filename="profile")  # its report goes to a file
    trainer = L.Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu",
        devices=1,
        precision=precision,
        max_epochs=1,
        limit_train_batches=batches,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        profiler=profiler,
        default_root_dir=folder,
    )
    trainer.fit(model, datamodule=data)
    return profiler


def profile_loading(args: argparse.Namespace, device: torch.device) -> list[dict]:
    """One record per DataLoader worker count: ms per batch loading and stepping, and the share."""
    logging.getLogger("lightning").setLevel(logging.WARNING)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "cohort"
        simulate_cohort(
            root,
            n_subjects=args.loader_subjects,
            n_rois=args.loader_rois,
            n_volumes=args.loader_volumes,
            seed=0,
        )
        for workers in args.loader_workers:
            data = FMRIDataModule(
                str(root),
                atlas=str(root / "atlas.nii.gz"),
                cache_path=str(Path(folder) / "cache.h5"),
                n_folds=1,
                val_fraction=0.1,
                crop_len=args.loader_crop,
                batch_size=args.loader_batch,
                num_workers=workers,
                crops_per_subject=8,
                min_timepoints=args.loader_crop,
            )
            model = RegressionTask(
                data.n_rois,
                ["age"],
                crop_len=args.loader_crop,
                encoder=EncoderSpec(**args.loader_encoder),
            )
            precision = "bf16-mixed" if device.type == "cuda" else "32-true"
            profiler = _fit_with_profiler(
                data, model, device, precision, args.loader_batches, Path(folder) / f"fit{workers}"
            )
            load = profiler.recorded_durations[LOAD][1:]
            step = profiler.recorded_durations[STEP][1:]
            load_ms, step_ms = 1e3 * sum(load) / len(load), 1e3 * sum(step) / len(step)
            rows.append(
                {
                    "section": "loader",
                    "workers": workers,
                    "rois": data.n_rois,
                    "length": args.loader_crop,
                    "batch": args.loader_batch,
                    "batches": len(step),
                    "precision": precision,
                    "load_ms": load_ms,
                    "step_ms": step_ms,
                    "load_share": load_ms / (load_ms + step_ms),
                    "status": "ok",
                }
            )
    return rows
