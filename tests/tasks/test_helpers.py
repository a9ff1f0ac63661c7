"""Small pure functions of the tasks: windows, schedule, brain-age gap."""

import numpy as np
import pandas as pd
import pytest
import torch

from brainlit.tasks.base import sliding_windows, warmup_cosine
from brainlit.tasks.predictions import bias_corrected_gap


def test_sliding_windows_cover_the_whole_run():
    x = torch.arange(2 * 3 * 10, dtype=torch.float32).view(2, 3, 10)
    windows = sliding_windows(x, length=4)  # half a window apart: 0, 2, 4, then 6 (aligned to the end)
    assert windows.shape == (2, 4, 3, 4)
    assert torch.equal(windows[:, 1], x[..., 2:6])
    assert torch.equal(windows[:, -1], x[..., 6:10])
    assert sliding_windows(x[..., :9], length=4).shape[1] == 4  # 0, 2, 4 and the end-aligned 5


def test_sliding_windows_shorter_run_than_window_gives_one_window():
    x = torch.randn(1, 2, 5)
    windows = sliding_windows(x, length=8)
    assert windows.shape == (1, 1, 2, 5)


def test_warmup_then_cosine_decay():
    factors = [warmup_cosine(step, total_steps=100, warmup_fraction=0.1) for step in range(100)]
    assert factors[0] == pytest.approx(0.1)
    assert factors[9] == pytest.approx(1.0)
    assert factors[-1] < 0.01
    assert all(a >= b for a, b in zip(factors[10:], factors[11:], strict=False))


def test_bias_correction_removes_the_age_trend_of_the_gap():
    rng = np.random.default_rng(0)
    age = rng.uniform(20, 80, 200)
    pred = 0.6 * age + 0.4 * age.mean() + rng.normal(0, 3, 200)  # regression to the mean
    frame = pd.DataFrame({"age_true": age, "age_pred": pred})
    train = pd.Series(np.arange(200) < 150)
    out = bias_corrected_gap(frame, train)
    raw_slope = np.polyfit(age, out["brain_age_gap"], 1)[0]
    corrected_slope = np.polyfit(age, out["brain_age_gap_corrected"], 1)[0]
    assert raw_slope < -0.3
    assert abs(corrected_slope) < 0.05
