"""FMRIDataModule: dataset root -> HDF5 cache -> seeded subject-disjoint folds -> batches."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Literal

import lightning as L
import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split
from torch.utils.data import DataLoader, Dataset

from brainlit.data.arrays import ArrayLayout
from brainlit.data.cache import CacheReader, CacheReport, build_cache
from brainlit.data.card import data_card
from brainlit.data.parallel import Backend
from brainlit.data.parcellate import Confounds, Parcellator
from brainlit.data.sources import Layout, discover_subjects, load_phenotypes
from brainlit.errors import BrainlitDataError

log = logging.getLogger(__name__)


class SubjectDataset(Dataset):
    """Items ``{"x": [R, L], "y": [n_targets], "subject_id"}`` read lazily from the cache.

    With ``crop_len`` each item is a random window (training), read from the HDF5 file alone
    (:meth:`~brainlit.data.cache.CacheReader.window`): nothing holds a corpus in memory, and under
    DDP each rank's sampler hands it a shard of the subjects. Otherwise the first
    ``n_timepoints`` of the run (evaluation). ``repeats`` lists every subject that many times
    (each time with its own random window). ``views: 2`` adds ``"x2"``, a second window of the
    same run (the contrastive pretext's positive pair), disjoint from ``"x"`` when the run holds
    two windows.
    """

    def __init__(self, reader: CacheReader, subject_ids: list[str], targets: np.ndarray,
                 n_timepoints: int, crop_len: int | None = None, repeats: int = 1, views: int = 1) -> None:
        if views not in (1, 2):
            raise ValueError(f"data.views must be 1 or 2, got {views}.")
        self.reader, self.subject_ids, self.targets = reader, subject_ids, targets
        self.n_timepoints, self.crop_len, self.repeats, self.views = n_timepoints, crop_len, repeats, views

    def __len__(self) -> int:
        return len(self.subject_ids) * self.repeats

    def _window(self, sid: str, n_timepoints: int, start: int | None = None) -> torch.Tensor:
        """The ``crop_len`` window of a run of ``n_timepoints`` at ``start`` (None: a random
        one), or its first ``self.n_timepoints`` without cropping."""
        if self.crop_len is not None and n_timepoints > self.crop_len:
            if start is None:
                start = int(torch.randint(0, n_timepoints - self.crop_len + 1, ()))
            series = self.reader.window(sid, start, self.crop_len)
        else:
            series = self.reader.window(sid, 0, self.n_timepoints)
        return torch.from_numpy(np.ascontiguousarray(series))

    def _pair_starts(self, n_timepoints: int) -> tuple[int | None, int | None]:
        """Starts of two windows that do not overlap, uniform over such pairs in random order;
        ``(None, None)`` (independent windows) when the run cannot hold two. Shared time points
        would let the contrastive pretext match the views without learning the subject."""
        if self.crop_len is None or n_timepoints < 2 * self.crop_len:
            return None, None
        first, second = sorted(torch.randint(0, n_timepoints - 2 * self.crop_len + 1, (2,)).tolist())
        starts = (first, second + self.crop_len)
        return starts if bool(torch.rand(()) < 0.5) else starts[::-1]

    def __getitem__(self, index: int) -> dict:
        index %= len(self.subject_ids)
        sid = self.subject_ids[index]
        n_timepoints = self.reader.n_timepoints(sid)
        if self.views == 1:
            item = {"x": self._window(sid, n_timepoints)}
        else:
            first, second = self._pair_starts(n_timepoints)
            item = {"x": self._window(sid, n_timepoints, first), "x2": self._window(sid, n_timepoints, second)}
        return {**item, "y": torch.from_numpy(self.targets[index].copy()), "subject_id": sid}


class FMRIDataModule(L.LightningDataModule):
    """Parcellated resting-state fMRI with phenotypes, cached in HDF5, split into k folds.

    Args:
        root: Dataset root: BIDS, fMRIPrep derivatives, a Cam-CAN tree or array files.
        cache_path: HDF5 cache file; null means ``<root>/brainlit_cache.h5``.
        atlas: Labels/maps NIfTI, coordinates table, or power264/dosenbach160/seitzman300.
        layout: ``auto`` prefers fMRIPrep preprocessed runs, then BIDS raw.
        bold_glob: Glob under root for the BOLD runs; overrides the layout's patterns.
        phenotypes_path: One phenotype table to use instead of those found under root.
        sphere_radius: Sphere radius (mm) for coordinate atlases.
        confounds: Confound strategy when fMRIPrep confounds exist (none/motion/simple/scrubbing/
            compcor): nilearn's ``load_confounds`` strategies, mapped in :mod:`brainlit.data.confounds`.
        global_signal: Also regress out the global signal.
        detrend: Remove linear trends.
        standardize: z-score each ROI series over time at cache time.
        low_pass: Low-pass cut-off in Hz, or null.
        high_pass: High-pass cut-off in Hz, or null.
        t_r: Cohort TR in seconds; null takes the most common header TR.
        resample_tr: Resample runs of another TR to the cohort's instead of skipping them
            (filtered at their own TR, polyphase-resampled, z-scored again): a site scanned at
            another TR joins the cohort, or a model's TR at ``apply``.
        min_timepoints: Shorter runs are rejected.
        on_error: ``skip`` lists bad subjects in ``<cache>.skipped.tsv``; ``raise`` stops.
        n_jobs: Worker processes for parcellation.
        targets: Phenotypes to regress. Training, validation and test use the subjects with a
            value of every one; ``predict`` (``predict_split: all``) also predicts the others,
            every target, with no ``*_true`` where the value is missing. ``[]`` for pretraining.
        n_folds: Cross-validation folds; 1 means no test set (pretraining on every subject).
        fold: Which fold is the test set.
        val_fraction: Share of the training subjects held out for validation.
        seed: Seed of the splits.
        crop_len: Training window in time points; evaluation covers whole runs.
        batch_size: Subjects per batch.
        num_workers: DataLoader worker processes.
        predict_split: Subjects ``predict`` runs on: the test fold, the validation and test
            subjects (``heldout``), or every subject with imaging (``all``), labelled or not.
        crops_per_subject: Random windows drawn from each training subject per epoch. Small
            cohorts give few optimiser steps per epoch; more windows per epoch give the
            schedule more steps without more validation passes.
        split_file: CSV of ``subject_id, split`` (train/val/test) that replaces the computed
            folds: subjects it does not list are left out (``n_folds``, ``fold`` and
            ``val_fraction`` are then unused). The experiment runner uses it to pretrain on a
            fold's training subjects only.
        array_key: ``layout: arrays``: the variable (``.mat``) or dataset (HDF5) holding each
            subject's series; null takes the file's only numeric matrix.
        array_layout: ``layout: arrays``: ``TR`` (time points x ROIs) or ``RT``. An array that
            looks stored the other way round is rejected with a message naming this option.
        backend: Where the cache's parcellation runs: ``loky`` (``n_jobs`` local processes) or
            ``dask`` (a ``dask.distributed`` cluster; needs the ``cluster`` extra). Only this
            process writes the HDF5 file either way.
        scheduler: Dask scheduler address (``tcp://host:8786``) or scheduler file for
            ``backend: dask``; null starts a local cluster of ``n_jobs`` workers.
        views: Windows per training item: 2 adds ``x2``, a second random ``crop_len`` window
            of the same run, disjoint from ``x`` when the run is at least ``2 * crop_len`` long
            (``model.pretext: contrastive`` or ``both`` needs it). Evaluation items stay whole runs.
    """

    def __init__(
        self,
        root: str,
        cache_path: str | None = None,
        atlas: str | None = None,
        layout: Layout = "auto",
        bold_glob: str | None = None,
        phenotypes_path: str | None = None,
        sphere_radius: float = 5.0,
        confounds: Confounds = "none",
        global_signal: bool = False,
        detrend: bool = True,
        standardize: bool = True,
        low_pass: float | None = None,
        high_pass: float | None = None,
        t_r: float | None = None,
        resample_tr: bool = False,
        min_timepoints: int = 100,
        on_error: Literal["skip", "raise"] = "skip",
        n_jobs: int = 1,
        targets: list[str] | None = None,
        n_folds: int = 5,
        fold: int = 0,
        val_fraction: float = 0.1,
        seed: int = 0,
        crop_len: int = 128,
        batch_size: int = 16,
        num_workers: int = 0,
        predict_split: Literal["test", "heldout", "all"] = "all",
        crops_per_subject: int = 1,
        split_file: str | None = None,
        array_key: str | None = None,
        array_layout: ArrayLayout = "TR",
        backend: Backend = "loky",
        scheduler: str | None = None,
        views: Literal[1, 2] = 1,
    ) -> None:
        super().__init__()
        if not 0 <= fold < max(n_folds, 1):
            raise ValueError(f"data.fold {fold} is outside 0..{n_folds - 1}")
        self.root, self.layout, self.bold_glob, self.phenotypes_path = Path(root), layout, bold_glob, phenotypes_path
        self.cache_path = Path(cache_path) if cache_path else self.root / "brainlit_cache.h5"
        self.parcellator = Parcellator(atlas, sphere_radius, confounds, global_signal, detrend,
                                       standardize, low_pass, high_pass, t_r, min_timepoints,
                                       array_key, array_layout, resample_tr)
        self.on_error, self.n_jobs = on_error, n_jobs
        self.targets = ["age"] if targets is None else list(targets)
        self.n_folds, self.fold, self.val_fraction, self.seed = n_folds, fold, val_fraction, seed
        self.crop_len, self.batch_size, self.num_workers = crop_len, batch_size, num_workers
        self.predict_split, self.crops_per_subject = predict_split, crops_per_subject
        self.split_file = Path(split_file) if split_file else None
        self.backend, self.scheduler, self.views = backend, scheduler, views
        self.dropped = pd.DataFrame(columns=["subject_id", "reason"])
        self.reader = CacheReader(self.cache_path)
        self._prepared = False
        self._kept: tuple[list[str], pd.DataFrame] | None = None
        self.unlabelled: list[str] = []  # imaging without every target: predicted, never fit
        self._card: dict | None = None
        self.splits: dict[str, list[str]] | None = None
        self.target_mean: np.ndarray | None = None
        self.target_std: np.ndarray | None = None

    # ---------------------------------------------------------------- cache
    def prepare_data(self) -> CacheReport:
        """Build or update the cache (a no-op for unchanged inputs); returns the report."""
        self.reader.close()
        records = discover_subjects(self.root, self.layout, self.bold_glob, self.phenotypes_path,
                                    **self.parcellator.discovery_options())
        phenotypes = load_phenotypes(self.root, self.phenotypes_path)
        report = build_cache(records, self.parcellator, self.cache_path, phenotypes, self.n_jobs, self.on_error,
                             backend=self.backend, scheduler=self.scheduler)
        self._prepared, self._kept = True, None
        return report

    def _ensure_cache(self) -> CacheReader:
        if not self._prepared:
            self.prepare_data()
        return self.reader

    @property
    def n_rois(self) -> int:
        """Number of ROIs (builds the cache on first use)."""
        return self._ensure_cache().n_rois

    @property
    def repetition_time(self) -> float | None:
        """Cohort TR in seconds: ``t_r`` when configured, else the first cached subject's."""
        if self.parcellator.t_r:
            return float(self.parcellator.t_r)
        reader = self._ensure_cache()
        t_r = reader.h5["subjects"][reader.subject_ids[0]].attrs.get("t_r")  # set per subject group
        return float(t_r) if t_r is not None and t_r == t_r else None

    @property
    def target_names(self) -> list[str]:
        """The regressed phenotypes."""
        return self.targets

    @property
    def roi_coordinates(self) -> np.ndarray | None:
        """ROI centres ``[R, 3]`` for brain maps, if the atlas has them (None for array files,
        whose ROIs the default atlas does not describe)."""
        reader = self._ensure_cache()
        coords = reader.roi_coordinates
        return coords if coords is not None and len(coords) == reader.n_rois else None

    @property
    def n_timepoints(self) -> int:
        """Common run length used for evaluation: the shortest kept run."""
        ids = self._kept_subjects()[0]
        return min(self.reader.n_timepoints(s) for s in ids)

    def data_card(self) -> dict:
        """Atlas, TR, cleaning and training cohort as JSON values (see :mod:`brainlit.data.card`);
        computed once, then stored in every checkpoint of a model trained on this data."""
        if self._card is None:
            self._card = data_card(self)
        return self._card

    # ---------------------------------------------------------------- splits
    def _kept_subjects(self) -> tuple[list[str], pd.DataFrame]:
        if self._kept is None:
            self._kept = self._select_subjects()
        return self._kept

    def _select_subjects(self) -> tuple[list[str], pd.DataFrame]:
        reader = self._ensure_cache()
        ids = reader.subject_ids
        table = reader.phenotypes.reindex(ids)
        missing = [t for t in self.targets if t not in table]
        if missing:
            raise BrainlitDataError(f"{self.cache_path}: no phenotype column {missing}; available: {list(table.columns)}.")
        complete = table[self.targets].notna().all(axis=1)
        dropped = [s for s, ok in complete.items() if not ok]
        if dropped:
            message = (f"{len(dropped)} subject(s) with imaging but no {self.targets} in the phenotype "
                       f"tables of {self.phenotypes_path or self.root}: {', '.join(dropped)}")
            if self.on_error == "raise":
                raise BrainlitDataError(f"{message}; add their values or set data.on_error: skip.")
            log.warning("Dropping from training and evaluation (predict still predicts them) %s", message)
            reason = f"no value of {', '.join(self.targets)} in the phenotype tables"
            self.dropped = pd.DataFrame({"subject_id": dropped, "reason": reason})
        kept = [s for s in ids if complete[s]]
        self.unlabelled, self._all_targets = dropped, table[self.targets]
        if len(kept) < 3:
            raise BrainlitDataError(f"only {len(kept)} subjects with imaging and {self.targets} in {self.cache_path}.")
        return kept, table.loc[kept, self.targets]

    def _folds(self, ids: list[str], y: pd.DataFrame) -> tuple[list[str], list[str]]:
        if self.n_folds <= 1:
            return ids, []
        if self.targets:
            bins = pd.qcut(y[self.targets[0]].rank(method="first"), q=min(5, len(ids) // self.n_folds), labels=False)
            splitter = StratifiedKFold(self.n_folds, shuffle=True, random_state=self.seed)
            folds = list(splitter.split(ids, bins))
        else:
            folds = list(KFold(self.n_folds, shuffle=True, random_state=self.seed).split(ids))
        train, test = folds[self.fold]
        return [ids[i] for i in train], [ids[i] for i in test]

    def _computed_splits(self, ids: list[str], y: pd.DataFrame) -> dict[str, list[str]]:
        trainval, test = self._folds(ids, y)
        n_val = max(1, round(self.val_fraction * len(trainval)))
        train, val = train_test_split(trainval, test_size=n_val, random_state=self.seed)
        return {"train": sorted(train), "val": sorted(val), "test": sorted(test)}

    def _file_splits(self, ids: list[str]) -> dict[str, list[str]]:
        """Splits read from ``split_file``; unknown split names and empty training sets are errors."""
        try:
            table = pd.read_csv(self.split_file)
        except (OSError, ValueError) as err:
            raise BrainlitDataError(f"data.split_file {self.split_file} cannot be read: {err}") from err
        if not {"subject_id", "split"} <= set(table.columns):
            raise BrainlitDataError(f"data.split_file {self.split_file} needs columns subject_id and split.")
        unknown = set(table["split"]) - {"train", "val", "test"}
        if unknown:
            raise BrainlitDataError(f"data.split_file {self.split_file}: unknown split(s) {sorted(unknown)}.")
        kept = set(ids)
        splits = {name: sorted(set(table.loc[table["split"] == name, "subject_id"]) & kept)
                  for name in ("train", "val", "test")}
        if not splits["train"]:
            raise BrainlitDataError(f"data.split_file {self.split_file} lists no training subject of {self.cache_path}.")
        return splits

    def setup(self, stage: str | None = None) -> None:
        """Seeded subject-disjoint folds; target scaling fit on the training subjects only."""
        ids, y = self._kept_subjects()
        self.splits = self._file_splits(ids) if self.split_file else self._computed_splits(ids, y)
        train, val, test = self.splits["train"], self.splits["val"], self.splits["test"]
        train_y = y.loc[self.splits["train"]].to_numpy(np.float64)
        self.target_mean = train_y.mean(0).astype(np.float32) if self.targets else np.zeros(0, np.float32)
        std = train_y.std(0) if self.targets else np.ones(0)
        self.target_std = np.where(std > 0, std, 1.0).astype(np.float32)
        # every subject with imaging, NaN where a target is missing (predict only)
        self._y = ((self._all_targets - self.target_mean) / self.target_std).astype(np.float32)
        log.info("Fold %d/%d: %d train, %d val, %d test subjects", self.fold, self.n_folds,
                 len(train), len(val), len(test))

    def inverse_transform_targets(self, y_z: torch.Tensor) -> torch.Tensor:
        """z-scored targets back to original units."""
        return y_z * torch.as_tensor(self.target_std) + torch.as_tensor(self.target_mean)

    def fold_subject_ids(self, split: Literal["train", "val", "test"]) -> list[str]:
        """Subject ids of one split of the current fold."""
        if self.splits is None:
            self.setup()
        return list(self.splits[split])

    def split_runs(self, split: Literal["train", "val", "test"]) -> tuple[list[np.ndarray], np.ndarray]:
        """Whole runs ``[R, T]`` of one split and their z-scored targets ``[N, n_targets]``."""
        ids = self.fold_subject_ids(split)
        targets = self._y.loc[ids].to_numpy(np.float32) if self.targets else np.zeros((len(ids), 0), np.float32)
        return [self.reader.timeseries(s) for s in ids], targets

    def split_table(self) -> pd.DataFrame:
        """``subject_id, split, fold`` of every kept subject, for baselines on identical folds."""
        rows = [(s, split) for split in ("train", "val", "test") for s in self.fold_subject_ids(split)]
        return pd.DataFrame(rows, columns=["subject_id", "split"]).assign(fold=self.fold)

    # ---------------------------------------------------------------- loaders
    def _loader(self, ids: list[str], train: bool, n_timepoints: int | None = None) -> DataLoader:
        if not ids:
            raise BrainlitDataError("this split is empty: with data.n_folds 1 there is no test set.")
        targets = self._y.loc[ids].to_numpy(np.float32) if self.targets else np.zeros((len(ids), 0), np.float32)
        crop, repeats, views = (self.crop_len, self.crops_per_subject, self.views) if train else (None, 1, 1)
        dataset = SubjectDataset(self.reader, ids, targets, n_timepoints or self.n_timepoints, crop, repeats, views)
        # Under DDP each rank sees ceil(n / world_size) samples (the sampler pads): dropping the
        # last partial batch is safe only while every rank still keeps a full one.
        world_size = self.trainer.world_size if self.trainer is not None else 1
        per_rank = math.ceil(len(dataset) / world_size)
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=train, drop_last=train and per_rank > self.batch_size,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        """Random crops of the training subjects."""
        return self._loader(self.fold_subject_ids("train"), train=True)

    def val_dataloader(self) -> DataLoader:
        """Whole runs of the validation subjects."""
        return self._loader(self.fold_subject_ids("val"), train=False)

    def test_dataloader(self) -> DataLoader:
        """Whole runs of the test fold."""
        return self._loader(self.fold_subject_ids("test"), train=False)

    def predict_dataloader(self) -> DataLoader:
        """Whole runs of the subjects ``predict_split`` names.

        With ``all``, subjects without every target are predicted too; a run of theirs shorter
        than the labelled subjects' common length shortens the predicted length for all.
        """
        splits = {"test": ("test",), "heldout": ("val", "test"), "all": ("train", "val", "test")}[self.predict_split]
        ids = [s for sp in splits for s in self.fold_subject_ids(sp)]
        if self.predict_split == "all" and self.unlabelled:
            ids += self.unlabelled
        length = min([self.n_timepoints, *(self.reader.n_timepoints(s) for s in ids)])
        return self._loader(ids, train=False, n_timepoints=length)
