"""A configuration error is one error, raised before any subject is processed."""

import pytest

from brainlit.data.datamodule import FMRIDataModule
from brainlit.errors import BrainlitConfigError, BrainlitDataError


def test_a_missing_atlas_stops_at_once_and_builds_nothing(bids, tmp_path):
    cache = tmp_path / "cache.h5"
    data = FMRIDataModule(str(bids), atlas=str(tmp_path / "nope.nii.gz"), cache_path=str(cache))
    with pytest.raises(BrainlitConfigError) as error:
        data.prepare_data()
    assert str(error.value).startswith(f"atlas {tmp_path / 'nope.nii.gz'} not found: set --data.atlas")
    assert not cache.exists() and not (tmp_path / "cache.h5.skipped.tsv").exists()


def test_a_missing_data_root_stops_at_once(tmp_path):
    with pytest.raises(BrainlitConfigError, match=f"data root {tmp_path / 'nope'} is not a folder: set --data.root"):
        FMRIDataModule(str(tmp_path / "nope"), cache_path=str(tmp_path / "cache.h5")).prepare_data()


def test_a_missing_phenotype_file_stops_at_once(bids, tmp_path):
    data = FMRIDataModule(str(bids), atlas=str(bids / "atlas.nii.gz"), cache_path=str(tmp_path / "cache.h5"),
                          phenotypes_path=str(tmp_path / "nope.csv"))
    with pytest.raises(BrainlitConfigError, match=f"phenotype file {tmp_path / 'nope.csv'} not found: set --data.phenotypes_path"):
        data.prepare_data()
    assert not (tmp_path / "cache.h5").exists()


def test_configuration_errors_are_data_errors_for_callers_that_report_those():
    assert issubclass(BrainlitConfigError, BrainlitDataError)
