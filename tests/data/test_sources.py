"""Subject discovery and phenotypes, as a user's folders present them."""

import logging

import numpy as np
import pandas as pd
import pytest

from brainlit.data.simulate import write_camcan_tree
from brainlit.data.sources import discover_subjects, read_cattell_summary
from brainlit.errors import BrainlitDataError
from tests.data.conftest import write_bold


def test_bids_runs_and_participants(bids):
    records = discover_subjects(bids)
    assert [r.subject_id for r in records] == [f"sub-{i:02d}" for i in range(1, 6)]
    first = records[0]
    assert first.bold_path.name == "sub-01_task-rest_bold.nii.gz"
    assert first.phenotypes == {"age": 25.0, "sex": 1.0}
    assert "age" not in records[2].phenotypes  # n/a is missing, never 0
    assert records[4].phenotypes == {}  # imaging without a phenotype row


def test_task_match_is_case_insensitive_and_non_rest_runs_are_ignored(bids):
    write_bold(bids / "sub-06/func/sub-06_task-REST_bold.nii.gz")
    write_bold(bids / "sub-07/func/sub-07_task-nback_bold.nii.gz")
    ids = [r.subject_id for r in discover_subjects(bids)]
    assert "sub-06" in ids and "sub-07" not in ids


def test_duplicate_runs_keep_the_first_and_warn(bids, caplog):
    write_bold(bids / "sub-01/func/sub-01_task-rest_run-2_bold.nii.gz")
    with caplog.at_level(logging.WARNING):
        records = discover_subjects(bids)
    assert records[0].bold_path.name == "sub-01_task-rest_bold.nii.gz"
    assert "sub-01: duplicate runs" in caplog.text and "run-2" in caplog.text


def test_empty_folder_says_what_was_searched(tmp_path):
    with pytest.raises(BrainlitDataError, match="no runs found under .*rest"):
        discover_subjects(tmp_path)


def test_camcan_tree_messy_cattell_and_fmriprep_confounds(tmp_path):
    root = write_camcan_tree(tmp_path / "cc", n_subjects=6, n_rois=8, n_volumes=30, corrupt_subjects=0)
    cattell = read_cattell_summary(root / "cc700-scored/Cattell/release001/summary/Cattell_summary.txt")
    assert list(cattell.index[:2]) == ["sub-CC110001", "sub-CC110002"]
    assert len(cattell) == 6  # the footer is not a record
    assert cattell["fluid_intelligence"].isna().sum() == 3  # n/a, empty, "absent"
    records = {r.subject_id: r for r in discover_subjects(root)}
    standard = pd.read_csv(root / "standard_data.csv")
    assert records["sub-CC110001"].phenotypes["age"] == standard["Age"][0]
    assert records["sub-CC110001"].confounds_path.name.endswith("desc-confounds_timeseries.tsv")
    assert "fluid_intelligence" not in records["sub-CC110002"].phenotypes
    assert records["sub-CC110005"].phenotypes["fluid_intelligence"] == cattell.loc["sub-CC110005"].item()


def test_pre_extracted_arrays(tmp_path):
    for i in range(3):
        np.save(tmp_path / f"sub-{i}.npy", np.zeros((50, 4)))
    pd.DataFrame({"participant_id": ["sub-0", "sub-1", "sub-2"], "age": [20, 30, 40]}).to_csv(
        tmp_path / "phenotypes.csv", index=False)
    records = discover_subjects(tmp_path, layout="arrays", phenotypes_path=tmp_path / "phenotypes.csv")
    assert [r.timeseries_path.name for r in records] == ["sub-0.npy", "sub-1.npy", "sub-2.npy"]
    assert [r.phenotypes["age"] for r in records] == [20.0, 30.0, 40.0]
