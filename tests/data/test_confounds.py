"""fMRIPrep confounds through nilearn, on tables with and without fMRIPrep's expansion columns."""

import logging
import shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from nilearn.interfaces.fmriprep.load_confounds_strategy import preset_strategies

from brainlit.data.confounds import MOTION, complete_columns, load_run_confounds, needed_columns
from brainlit.data.datamodule import FMRIDataModule
from brainlit.data.simulate import write_camcan_tree
from brainlit.data.sources import discover_subjects
from brainlit.errors import BrainlitConfigError

COMPUTED = "computed from the base columns as fMRIPrep defines them"


@pytest.fixture(scope="module")
def camcan_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four Cam-CAN-shaped subjects, 60 volumes, confounds with motion derivatives only."""
    return write_camcan_tree(tmp_path_factory.mktemp("cc"), n_subjects=4, n_rois=8, n_volumes=60,
                             corrupt_subjects=0)


def confounds_files(root: Path) -> list[Path]:
    return sorted(root.glob("derivatives/fmriprep/sub-*/func/*_desc-confounds_*.tsv"))


def copy_without(tree: Path, tmp_path: Path, drop) -> Path:  # noqa: ANN001 - a column predicate
    """A copy of the tree whose confounds files lack the columns ``drop`` selects."""
    root = tmp_path / "cc"
    shutil.copytree(tree, root)
    for path in confounds_files(root):
        table = pd.read_csv(path, sep="\t")
        table.drop(columns=[c for c in table if drop(c)]).to_csv(path, sep="\t", index=False, na_rep="n/a")
    return root


def test_strategies_read_nilearns_columns():
    assert len(needed_columns("motion", False)) == 12
    simple = needed_columns("simple", False)
    assert len(simple) == 26 and {"trans_x_derivative1_power2", "csf", "white_matter"} <= set(simple)
    assert preset_strategies["simple"]["motion"] == "full"  # what the 26 above rest on
    scrubbing = needed_columns("scrubbing", True)
    assert {"csf_power2", "framewise_displacement", "std_dvars", "global_signal"} <= set(scrubbing)
    assert needed_columns("none", True) == []


def test_missing_expansions_are_computed_as_fmriprep_defines_them():
    rng = np.random.default_rng(0)
    table = pd.DataFrame(rng.standard_normal((5, 8)), columns=[*MOTION, "csf", "white_matter"])
    done, added = complete_columns(table, needed_columns("scrubbing", False))

    x = table["trans_x"].to_numpy()
    np.testing.assert_allclose(done["trans_x_derivative1"], [np.nan, *np.diff(x)])
    np.testing.assert_allclose(done["trans_x_power2"], x**2)
    np.testing.assert_allclose(done["trans_x_derivative1_power2"], [np.nan, *np.diff(x) ** 2])
    np.testing.assert_allclose(done["csf_derivative1_power2"], [np.nan, *np.diff(table["csf"]) ** 2])
    delta = np.abs(np.diff(table[list(MOTION)].to_numpy(), axis=0))
    np.testing.assert_allclose(done["framewise_displacement"][1:], delta[:, :3].sum(1) + 50 * delta[:, 3:].sum(1))
    assert done["std_dvars"].isna().all() and "trans_x" not in added and len(added) == 32 - 8 + 2


def test_scrubbing_removes_the_volumes_nilearn_flags(tmp_path):
    rng = np.random.default_rng(1)
    scale = [0.01] * 3 + [0.0002] * 3 + [1.0] * 2  # mm, radians, signal units
    table = pd.DataFrame(scale * rng.standard_normal((80, 8)).cumsum(0), columns=[*MOTION, "csf", "white_matter"])
    table.loc[40:, "trans_x"] += 2.0  # a 2 mm jump at volume 40
    path = tmp_path / "sub-01_task-rest_desc-confounds_timeseries.tsv"
    table.to_csv(path, sep="\t", index=False)
    regressors, sample_mask = load_run_confounds(path, "scrubbing", global_signal=False)

    assert regressors.shape == (80, 32)  # 24 motion + 8 WM/CSF, no cosines in this table
    assert 40 not in sample_mask and len(sample_mask) == 79
    np.testing.assert_allclose(regressors[sample_mask].mean(0), 0, atol=1e-10)  # demeaned on kept volumes


def test_confounds_without_expansion_columns_denoise_every_subject_with_one_warning(camcan_tree, tmp_path, caplog):
    root = copy_without(camcan_tree, tmp_path, lambda c: c.endswith("_derivative1"))
    older = confounds_files(root)[0]  # fMRIPrep < 20.2 name, no space entity: found as nilearn would
    older.rename(older.parent / "sub-CC110001_task-Rest_desc-confounds_regressors.tsv")
    data = FMRIDataModule(str(root), atlas=str(root / "atlas.nii.gz"), confounds="simple", targets=[],
                          min_timepoints=50)
    with caplog.at_level(logging.WARNING):
        report = data.prepare_data()

    assert report.built == 4 and report.skipped == []
    warnings = [r.getMessage() for r in caplog.records if COMPUTED in r.getMessage()]
    assert len(warnings) == 1 and "4 of 4 subjects" in warnings[0] and "trans_x_power2" in warnings[0]
    assert "(18 columns)" in warnings[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        data.prepare_data()  # what every fold of an experiment does: said once, not again
    assert not [r for r in caplog.records if COMPUTED in r.getMessage()]
    table = pd.read_csv(confounds_files(root)[1], sep="\t")
    with h5py.File(data.cache_path) as h5:
        series = h5["subjects/sub-CC110002/timeseries"][()]  # [R, T]
    # regressed out: orthogonal to a column brainlit computed (and to the mean and trend)
    np.testing.assert_allclose(series @ table["trans_x"].to_numpy() ** 2, 0, atol=1e-3)


def test_a_column_no_confounds_file_has_is_one_configuration_error(camcan_tree, tmp_path):
    root = copy_without(camcan_tree, tmp_path, lambda c: c.startswith("csf"))
    with pytest.raises(BrainlitConfigError, match=r"no confounds file of the cohort has \['csf'\].*data.confounds simple"):
        discover_subjects(root, confounds="simple")
    assert len(discover_subjects(root, confounds="motion")) == 4  # motion does not need it
