"""ComBat with age as a smooth covariate: site effects go, the age effect stays, new sites adapt."""

import contextlib
import io
import json

import numpy as np
import pandas as pd
import pytest
from neuroCombat import neuroCombat
from sklearn.linear_model import RidgeCV

from brainlit.errors import BrainlitDataError
from brainlit.sites.harmonise import ComBatHarmoniser

N_FEATURES = 40
WEIGHTS = np.random.default_rng(99).normal(0, 0.5, N_FEATURES)


def site(n: int, ages: tuple[float, float], shift: float, log_scale: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(features [n, F], age [n])``: a nonlinear age effect plus the site's shift and noise scale."""
    rng = np.random.default_rng(seed)
    age = rng.uniform(*ages, n)
    a = (age - 53) / 20
    offset = rng.normal(0, shift, N_FEATURES)
    scale = np.exp(rng.normal(log_scale, 0.2, N_FEATURES))
    return np.outer(a + 0.4 * a**2, WEIGHTS) + offset + scale * rng.normal(size=(n, N_FEATURES)), age


@pytest.fixture(scope="module")
def training():
    """A young site and an old site: site and age are confounded, as in pooled cohorts."""
    (young, young_age), (old, old_age) = site(120, (18, 60), 1.0, 0.0, 1), site(120, (40, 88), 1.0, 0.3, 2)
    return np.vstack([young, old]), np.repeat(["young", "old"], 120), np.r_[young_age, old_age]


def ridge_mae(train_x, train_age, test_x, test_age) -> float:
    ridge = RidgeCV(alphas=np.logspace(-2, 4, 13)).fit(train_x, train_age)
    return float(np.mean(np.abs(ridge.predict(test_x) - test_age)))


def test_harmonised_training_data_equal_neurocombat_with_the_age_spline(training):
    features, sites, age = training
    combat = ComBatHarmoniser().fit(features, sites, age)
    basis = pd.DataFrame(combat._basis(age)).add_prefix("age_spline")
    with contextlib.redirect_stdout(io.StringIO()):
        reference = neuroCombat(features.T, basis.assign(site=sites), "site", continuous_cols=list(basis))["data"].T
    np.testing.assert_allclose(combat.transform(features, sites, age), reference, atol=1e-6)


def test_site_differences_go_and_the_age_signal_stays(training):
    features, sites, age = training
    harmonised = ComBatHarmoniser().fit(features, sites, age).transform(features, sites, age)
    middle = (age > 40) & (age < 60)  # both sites scan these ages
    gap = lambda x: np.abs(x[middle & (sites == "young")].mean(0) - x[middle & (sites == "old")].mean(0)).mean()  # noqa: E731
    assert gap(harmonised) < 0.35 * gap(features)
    signal = np.abs(WEIGHTS) > 0.3
    r_before = [abs(np.corrcoef(features[sites == s][:, signal].T, age[sites == s])[-1, :-1]).mean() for s in ("young", "old")]
    r_after = [abs(np.corrcoef(harmonised[sites == s][:, signal].T, age[sites == s])[-1, :-1]).mean() for s in ("young", "old")]
    assert r_after == pytest.approx(r_before, abs=0.05)


def test_adapting_a_new_site_from_few_controls_improves_a_ridge_there(training):
    features, sites, age = training
    new, new_age = site(140, (18, 88), 1.5, 0.4, 3)
    combat = ComBatHarmoniser().fit(features, sites, age).adapt(new[:20], "scanner-3", new_age[:20])
    assert combat.n_training_sites_ == 2 and list(combat.sites_)[-1] == "scanner-3"
    patients = combat.transform(new[20:], ["scanner-3"] * 120)  # their ages are not used
    raw = ridge_mae(features, age, new[20:], new_age[20:])
    harmonised = ridge_mae(combat.transform(features, sites, age), age, patients, new_age[20:])
    assert harmonised < 0.9 * raw
    some_known = combat.transform(new[20:22], ["scanner-3"] * 2, [np.nan, new_age[21]])
    np.testing.assert_allclose(some_known[0], patients[0])  # an unknown age: the location alone
    np.testing.assert_allclose(some_known[1], combat.transform(new[21:22], ["scanner-3"], new_age[21:22])[0])


def test_a_model_of_one_site_maps_a_new_site_onto_it():
    reference, reference_age = site(150, (18, 88), 0.0, 0.0, 4)
    new, new_age = site(60, (18, 88), 2.0, 0.5, 5)
    mapped = {}
    for shrink in (False, True):
        combat = ComBatHarmoniser(shrink_noisier=shrink).fit(reference, ["home"] * 150, reference_age)
        np.testing.assert_allclose(combat.transform(reference, ["home"] * 150, reference_age), reference)
        mapped[shrink] = combat.adapt(new[:30], "away", new_age[:30]).transform(new[30:], ["away"] * 30, new_age[30:])
    shift_before = np.abs(new[30:].mean(0) - reference.mean(0)).mean()
    shift_after = np.abs(mapped[False].mean(0) - reference.mean(0)).mean()
    assert shift_after < 0.3 * shift_before
    assert mapped[False].std(0).mean() == pytest.approx(reference.std(0).mean(), rel=0.2)
    # the noisier site's extra residual variance treated as noise: shrunk below the reference's spread
    assert mapped[True].std(0).mean() < 0.85 * mapped[False].std(0).mean()


def test_state_is_json_and_arrays_and_keeps_adapted_sites(training):
    features, sites, age = training
    combat = ComBatHarmoniser().fit(features, sites, age).adapt(features[:12] + 1, "new", age[:12])
    json_values, arrays = combat.to_state()
    loaded = ComBatHarmoniser.from_state(json.loads(json.dumps(json_values)), arrays)
    for site_label in ("young", "new"):
        np.testing.assert_allclose(loaded.transform(features[:5], [site_label] * 5, age[:5]),
                                   combat.transform(features[:5], [site_label] * 5, age[:5]))
    with pytest.raises(BrainlitDataError, match="'young' is a training site"):
        loaded.adapt(features[:12], "young", age[:12])


def test_too_few_controls_a_control_without_age_and_unknown_sites_are_refused(training):
    features, sites, age = training
    combat = ComBatHarmoniser(min_controls=10).fit(features, sites, age)
    with pytest.raises(BrainlitDataError, match="9 controls, fewer than min_controls=10"):
        combat.adapt(features[:9], "new", age[:9])
    with pytest.raises(BrainlitDataError, match=r"missing at rows \[3\]"):
        combat.adapt(features[:12], "new", np.r_[age[:3], np.nan, age[4:12]])
    with pytest.raises(BrainlitDataError, match=r"sites \['elsewhere'\] were neither trained on nor adapted"):
        combat.transform(features[:2], ["elsewhere"] * 2)
