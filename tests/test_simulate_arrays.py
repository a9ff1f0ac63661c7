"""The arrays layout: one [T, R] .npy per subject that brainlit reads, made block by block."""

import hashlib
import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from brainlit.data.datamodule import FMRIDataModule
from brainlit.data.simulate import (
    LATENTS,
    MARKER,
    GenerativeModel,
    simulate_cohort,
    simulate_roi_timeseries,
    simulate_subjects,
)
from brainlit.data.simulate.cli import main

SMALL = dict(n_rois=8, n_volumes=30, seed=4, layout="arrays")


def test_an_arrays_cohort_is_what_the_datamodule_reads(tmp_path):
    simulate_cohort(tmp_path, n_subjects=12, n_rois=8, n_volumes=120, seed=3, layout="arrays")
    series = np.load(tmp_path / "sub-0005.npy")
    assert series.shape == (120, 8) and series.dtype == np.float32
    assert json.loads((tmp_path / "sub-0005.json").read_text()) == {"RepetitionTime": 2.0}
    assert not list(tmp_path.rglob("*.nii*"))
    core = simulate_roi_timeseries(12, 8, 120, seed=3)
    np.testing.assert_array_equal(series, core.roi_timeseries[4].T)  # the generative core, as is
    participants = pd.read_csv(tmp_path / "participants.tsv", sep="\t")
    assert list(participants.columns) == ["participant_id", "age", "sex", "fluid_intelligence"]
    assert len(pd.read_csv(tmp_path / "simulation" / "atlas_labels.tsv", sep="\t")) == 8

    data = FMRIDataModule(str(tmp_path), layout="arrays", targets=["age"], n_folds=3, crop_len=64)
    report = data.prepare_data()
    data.setup("fit")
    assert report.built == 12 and not report.skipped
    batch = next(iter(data.train_dataloader()))
    assert batch["x"].shape[1:] == (8, 64)
    assert set(batch["subject_id"]) <= set(participants["participant_id"])


def test_cohorts_of_one_seed_nest_across_blocks_and_workers(tmp_path):
    small = simulate_cohort(tmp_path / "small", n_subjects=3, **SMALL, model=GenerativeModel(dynamics="visible"))
    large = simulate_cohort(tmp_path / "large", n_subjects=131, **SMALL, n_jobs=2,
                            model=GenerativeModel(dynamics="visible"))  # two blocks, two workers
    for sid in ("sub-0001", "sub-0003"):
        np.testing.assert_array_equal(np.load(small.out_dir / f"{sid}.npy"), np.load(large.out_dir / f"{sid}.npy"))
    latents = pd.read_csv(large.out_dir / LATENTS, sep="\t")
    assert list(latents["participant_id"][-2:]) == ["sub-0130", "sub-0131"]
    pd.testing.assert_frame_equal(pd.read_csv(small.out_dir / LATENTS, sep="\t"), latents[:3])
    last = simulate_subjects([130], 8, 30, seed=4, model=GenerativeModel(dynamics="visible"))
    np.testing.assert_array_equal(np.load(large.out_dir / "sub-0131.npy"), last.roi_timeseries[0].T)


def test_a_built_cohort_is_reused_and_a_half_written_one_is_rebuilt(tmp_path):
    simulate_cohort(tmp_path, n_subjects=4, **SMALL)
    array = tmp_path / "sub-0002.npy"
    expected, mtime = np.load(array), array.stat().st_mtime_ns
    assert not simulate_cohort(tmp_path, n_subjects=4, **SMALL).generated
    assert array.stat().st_mtime_ns == mtime
    (tmp_path / MARKER).unlink()  # as if killed while writing
    array.unlink()
    assert simulate_cohort(tmp_path, n_subjects=4, **SMALL).generated
    np.testing.assert_array_equal(np.load(array), expected)
    simulate_cohort(tmp_path, n_subjects=2, **SMALL, overwrite=True)
    assert sorted(p.name for p in tmp_path.glob("sub-*")) == ["sub-0001.json", "sub-0001.npy",
                                                               "sub-0002.json", "sub-0002.npy"]


def _digest(out) -> str:
    """The default BIDS cohort's content: voxel data, tables, sidecar and marker."""
    digest = hashlib.sha256()
    for sid in ("sub-0001", "sub-0002", "sub-0003"):
        digest.update(np.asarray(nib.load(out / sid / "func" / f"{sid}_task-rest_bold.nii.gz").dataobj).tobytes())
    for name in ("participants.tsv", LATENTS, "task-rest_bold.json", MARKER, "atlas_labels.tsv"):
        digest.update((out / name).read_bytes())
    return digest.hexdigest()[:16]


@pytest.mark.parametrize(("dynamics", "digest"), [("none", "a3e781f9b4ca8b4f"), ("switching", "fd2a676753cfdd57")])
def test_the_default_bids_cohort_is_bit_identical_to_the_first_release(tmp_path, dynamics, digest):
    """Digests of cohorts written before the arrays layout, ``visible`` and sites existed. If a
    numpy or scipy upgrade alone changes them, say so in the changelog and update them."""
    simulate_cohort(tmp_path, n_subjects=3, n_rois=8, n_volumes=20, seed=7, model=GenerativeModel(dynamics=dynamics))
    assert _digest(tmp_path) == digest


def test_the_cli_writes_arrays_and_explains_option_clashes(tmp_path, capsys):
    main([str(tmp_path / "a"), "--n-subjects", "2", "--n-volumes", "40", "--layout", "arrays", "--n-jobs", "1"])
    assert "2 subjects, 32 regions, 40 volumes" in capsys.readouterr().out
    assert np.load(tmp_path / "a" / "sub-0002.npy").shape == (40, 32)
    for argv, message in ((["--only-site", "1"], "need --sites"), (["--camcan", "--sites", "2"], "--camcan"),
                          (["--sites", "2", "--site-trs", "2.0"], "2 positive TRs")):
        with pytest.raises(SystemExit):
            main([str(tmp_path / "b"), "--n-subjects", "2", "--n-jobs", "1", *argv])
        assert message in capsys.readouterr().err
