"""Every site estimator goes into a model folder as JSON plus safetensors, and comes back the same."""

import json

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from brainlit.errors import BrainlitCheckpointError
from brainlit.sites import ComBatHarmoniser, ConformalIntervals, OutOfDistribution


def through_a_folder(estimator, folder, name: str):
    """Save ``estimator``'s state as ``name.json`` + ``name.safetensors`` and load it back."""
    json_values, arrays = estimator.to_state()
    (folder / f"{name}.json").write_text(json.dumps(json_values))
    save_file({key: np.ascontiguousarray(value) for key, value in arrays.items()}, str(folder / f"{name}.safetensors"))
    return type(estimator).from_state(json.loads((folder / f"{name}.json").read_text()),
                                      load_file(str(folder / f"{name}.safetensors")))


def test_each_estimator_survives_json_and_safetensors(tmp_path):
    rng = np.random.default_rng(0)
    age = rng.uniform(18, 88, 120)
    features = np.outer(age, rng.normal(size=30)) / 50 + rng.normal(size=(120, 30))
    sites = np.repeat(["a", "b"], 60)
    pred = 0.6 * age + 21 + rng.normal(0, 9, 120)

    intervals = ConformalIntervals(n_bins=1).fit(age, pred)
    loaded = through_a_folder(intervals, tmp_path, "conformal")
    np.testing.assert_allclose(loaded.interval(pred[:5], 0.8), intervals.interval(pred[:5], 0.8))

    combat = ComBatHarmoniser().fit(features, sites, age).adapt(features[:10] + 1.0, "c", age[:10])
    loaded = through_a_folder(combat, tmp_path, "harmonise")
    np.testing.assert_allclose(loaded.transform(features[:5], ["c"] * 5), combat.transform(features[:5], ["c"] * 5))

    detector = OutOfDistribution(min_volumes=100).fit(features)
    loaded = through_a_folder(detector, tmp_path, "ood")
    assert loaded.assess(features[:5] * 3, n_volumes=[90] * 5).equals(detector.assess(features[:5] * 3, n_volumes=[90] * 5))


def test_a_state_of_another_estimator_or_missing_arrays_is_refused():
    json_values, arrays = ConformalIntervals(n_bins=1, min_per_bin=5).fit(np.arange(20.0), np.arange(20.0)).to_state()
    with pytest.raises(BrainlitCheckpointError, match="not a state of OutOfDistribution"):
        OutOfDistribution.from_state(json_values, arrays)
    with pytest.raises(BrainlitCheckpointError, match=r"lacks the arrays \['scores'\]"):
        ConformalIntervals.from_state(json_values, {k: v for k, v in arrays.items() if k != "scores"})
