"""brainlit = read-out + w x (network - read-out): the weight is fit on held-out predictions."""

import json

import numpy as np
import pytest

from brainlit.stack import NetworkShare, share_weights


def test_the_share_weight_is_least_squares_clipped_to_zero_and_one():
    rng = np.random.default_rng(0)
    readout, y = np.zeros((50, 3)), rng.standard_normal((50, 3))
    network = np.stack([y[:, 0], 2.0 * y[:, 1], -y[:, 2]], 1)  # exact, twice too large, wrong sign
    np.testing.assert_allclose(share_weights(network, readout, y), [1.0, 0.5, 0.0])
    assert share_weights(readout, readout, y).tolist() == [0.0, 0.0, 0.0]  # no share: the read-out


def test_a_shrunk_weight_drops_a_share_no_clearer_than_its_noise_and_keeps_a_clear_one():
    rng = np.random.default_rng(3)
    readout, y, noise = np.zeros((20, 2)), rng.standard_normal((20, 2)), rng.standard_normal((20, 2))
    network = np.stack([y[:, 0] + 0.3 * noise[:, 0], noise[:, 1]], 1)  # a clear share, a spurious one
    plain, shrunk = share_weights(network, readout, y), share_weights(network, readout, y, shrink=True)
    assert plain[1] > 0.1 and shrunk[1] == 0.0
    assert 0.9 * plain[0] < shrunk[0] <= plain[0]


def test_brainlit_keeps_a_real_gain_of_the_network_and_falls_back_where_there_is_none():
    rng = np.random.default_rng(1)
    n = 150
    static, dynamic = rng.standard_normal(n), rng.standard_normal(n)
    y = np.stack([static + 0.6 * dynamic, static], 1) + 0.3 * rng.standard_normal((n, 2))
    readout = np.stack([static, static], 1)  # reads static FC only
    network = np.stack([static + 0.6 * dynamic, static], 1) + rng.standard_normal((n, 2))  # noisy, sees more
    share = NetworkShare().fit(readout[:100], network[:100], y[:100], ["age", "fluid"])
    assert share.weights_[0] > 0.15 and share.weights_[1] < 0.1
    pred = share.predict(readout[100:], network[100:])
    mae = np.abs(pred - y[100:]).mean(0)
    readout_mae = np.abs(readout[100:] - y[100:]).mean(0)
    assert mae[0] < readout_mae[0] and mae[1] <= readout_mae[1] + 0.02


def test_readout_only_targets_keep_the_readout_and_the_fit_round_trips():
    rng = np.random.default_rng(2)
    y = rng.standard_normal((40, 2))
    share = NetworkShare(readout_only=["fluid"]).fit(np.zeros((40, 2)), y, y, ["age", "fluid"])
    assert share.weights_.tolist() == [1.0, 0.0]
    restored = NetworkShare.from_state(json.loads(json.dumps(share.to_state())))
    np.testing.assert_array_equal(restored.predict(np.zeros((3, 2)), np.ones((3, 2))), [[1.0, 0.0]] * 3)
    assert "age 1.00, fluid 0.00 (fit on 40 out-of-sample predictions)" in restored.describe()
    with pytest.raises(ValueError, match="readout_only"):
        NetworkShare(readout_only=["iq"]).fit(np.zeros((4, 1)), y[:4, :1], y[:4, :1], ["age"])
