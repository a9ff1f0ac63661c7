"""Out-of-distribution flags: features unlike the training cohort's, runs too short, too much motion."""

import json

import numpy as np
import pytest

from brainlit.baselines.fc_ridge import fc_features
from brainlit.baselines.tangent_ridge import fit_tangent, tangent_features
from brainlit.data.simulate import simulate_roi_timeseries
from brainlit.errors import BrainlitDataError
from brainlit.sites.ood import OutOfDistribution

MIXING = np.random.default_rng(7).normal(size=(8, 120))  # 8 shared factors over 120 features


def cohort(n: int, seed: int) -> np.ndarray:
    """``[n, 120]`` correlated features: shared factors plus independent noise."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 8)) @ MIXING + rng.normal(size=(n, 120))


@pytest.fixture(scope="module")
def detector() -> OutOfDistribution:
    return OutOfDistribution(min_volumes=144).fit(cohort(300, seed=0))


def test_about_the_stated_share_of_a_like_cohort_is_flagged_and_a_shifted_one_is(detector):
    like = detector.assess(cohort(2000, seed=1))
    assert 0.02 <= like["ood_flag"].mean() <= 0.07
    assert like["ood_score"].median() == pytest.approx(1.0, abs=0.2)
    shifted = cohort(200, seed=2)
    shifted[:, :20] += 3.0  # a site effect on a sixth of the features
    result = detector.assess(shifted)
    assert result["ood_flag"].mean() >= 0.9
    assert result["ood_reason"][0].startswith("features far from the training cohort (p=")


def test_short_runs_and_motion_are_flagged_with_their_reason(detector):
    features = cohort(3, seed=3)
    result = detector.assess(features, n_volumes=[90, 200, 200], mean_fd=[0.1, 0.8, np.nan])
    assert "run too short: 90 < 144 volumes" in result["ood_reason"][0]
    assert "mean FD 0.8 mm > 0.5 mm" in result["ood_reason"][1]
    assert "FD" not in result["ood_reason"][2]  # unknown motion is not a flag
    assert result["ood_flag"][:2].all()


def test_state_is_json_and_arrays_and_gives_the_same_flags_back(detector):
    json_values, arrays = detector.to_state()
    loaded = OutOfDistribution.from_state(json.loads(json.dumps(json_values)), arrays)
    features = cohort(50, seed=4)
    assert loaded.assess(features, n_volumes=[100] * 50).equals(detector.assess(features, n_volumes=[100] * 50))


def test_features_of_another_size_and_too_small_a_cohort_are_refused(detector):
    with pytest.raises(BrainlitDataError, match=r"features must be \[N, 120\]"):
        detector.assess(np.zeros((2, 100)))
    with pytest.raises(BrainlitDataError, match="too few for false_flag_rate=0.05"):
        OutOfDistribution().fit(cohort(15, seed=5))


def readout_like(series: np.ndarray, tangent) -> np.ndarray:
    """Fisher-z FC edges and tangent FC at the training reference: ``[N, R (R - 1)]``."""
    return np.hstack([fc_features(series), tangent_features(tangent, list(series))])


@pytest.fixture(scope="module")
def simulated() -> dict[str, np.ndarray]:
    """A training cohort (16 ROIs), one like it (another seed) and that one with its ROI order shuffled."""
    train = simulate_roi_timeseries(150, 16, 100, seed=0).roi_timeseries.astype(float)
    same = simulate_roi_timeseries(150, 16, 100, seed=1).roi_timeseries.astype(float)
    return {"train": train, "same": same, "shuffled": same[:, np.random.default_rng(0).permutation(16)]}


def test_simulated_cohorts_a_shuffled_roi_order_is_flagged_and_another_seed_is_not(simulated):
    tangent = fit_tangent(list(simulated["train"]))
    detector = OutOfDistribution().fit(readout_like(simulated["train"], tangent), fc_features(simulated["train"]))
    flags = {name: detector.assess(readout_like(simulated[name], tangent), profiles=fc_features(simulated[name]))
             for name in ("same", "shuffled")}
    assert flags["same"]["ood_flag"].mean() <= 0.05
    assert flags["shuffled"]["ood_flag"].mean() >= 0.9
    assert flags["shuffled"]["ood_reason"].str.contains("FC unlike the training cohort's pattern").mean() >= 0.9
    assert flags["shuffled"]["ood_typicality"].median() < flags["same"]["ood_typicality"].quantile(0.05)


def test_typicality_alone_flags_a_shuffled_roi_order_and_is_blind_to_fc_scaling(simulated):
    """The features here carry no ROI order (sorted edges), so only the FC pattern can tell."""
    def orderless(series: np.ndarray) -> np.ndarray:
        return np.sort(fc_features(series), axis=1)

    detector = OutOfDistribution().fit(orderless(simulated["train"]), fc_features(simulated["train"]))
    shuffled = detector.assess(orderless(simulated["shuffled"]), profiles=fc_features(simulated["shuffled"]))
    assert shuffled["ood_reason"].str.contains("FC unlike").mean() >= 0.9
    assert shuffled["ood_reason"].str.contains("features far").mean() <= 0.1  # sorted edges: like any other
    scaled = fc_features(simulated["same"]) * 0.5  # a site that halves every edge
    assert np.allclose(detector.typicality_of(scaled, len(scaled)),
                       detector.typicality_of(fc_features(simulated["same"]), len(scaled)))


def test_a_typicality_detector_keeps_its_template_and_asks_for_profiles(simulated):
    features, profiles = fc_features(simulated["train"]), fc_features(simulated["train"])
    detector = OutOfDistribution().fit(features, profiles)
    json_values, arrays = detector.to_state()
    loaded = OutOfDistribution.from_state(json.loads(json.dumps(json_values)), arrays)
    new = fc_features(simulated["shuffled"][:20])
    assert loaded.assess(new, profiles=new).equals(detector.assess(new, profiles=new))
    with pytest.raises(BrainlitDataError, match="pass each subject's FC edges"):
        detector.assess(new)
    with pytest.raises(BrainlitDataError, match="10 profiles for 150 subjects"):
        OutOfDistribution().fit(features, profiles[:10])


def test_short_runs_are_judged_against_training_runs_cut_as_short(simulated):
    tangent = fit_tangent(list(simulated["train"]))

    def checks(series: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return readout_like(series, tangent), fc_features(series)

    train, short = simulated["train"], {name: simulated[name][:, :, :40] for name in ("same", "shuffled")}
    full_only = OutOfDistribution().fit(*checks(train))
    by_length = OutOfDistribution().fit(*checks(train), volumes=100, cropped={40: checks(train[:, :, :40]),
                                                                              70: checks(train[:, :, :70])})
    assert by_length._calibrated_lengths([30, 40, 69, 70, 99, 100, 300], 7) == [40, 40, 40, 70, 70, 100, 100]
    flagged = {(name, detector): detector.assess(*checks(short[name])[:1], n_volumes=[40] * 150,
                                                 profiles=checks(short[name])[1])["ood_flag"].mean()
               for name in short for detector in (full_only, by_length)}
    assert flagged[("same", full_only)] >= 0.5  # noisier FC of short runs lies far from full runs'
    assert flagged[("same", by_length)] <= 0.1
    assert flagged[("shuffled", by_length)] >= 0.9
    json_values, arrays = by_length.to_state()
    loaded = OutOfDistribution.from_state(json.loads(json.dumps(json_values)), arrays)
    features, profiles = checks(simulated["same"][:20, :, :70])
    assert loaded.assess(features, [70] * 20, profiles=profiles).equals(by_length.assess(features, [70] * 20, profiles=profiles))
    with pytest.raises(BrainlitDataError, match="must lie below the training runs' fewest volumes"):
        OutOfDistribution().fit(*checks(train), cropped={40: checks(train[:, :, :40])})


def test_a_final_model_s_reference_is_calibrated_from_its_window_to_its_shortest_training_run():
    from brainlit.baselines.readout import ConnectivityRidge
    from brainlit.experiment.final import ood_reference

    simulated = simulate_roi_timeseries(60, 8, 100, seed=3)
    runs = list(simulated.roi_timeseries.astype(float))
    runs[0] = runs[0][:, :90]
    readout = ConnectivityRidge().fit(runs, simulated.phenotypes[["age"]])
    detector = ood_reference(readout, runs, None, window=40)
    assert detector.volumes_ == 90 and list(detector.calibrations_) == [40, 52, 69, 90]
