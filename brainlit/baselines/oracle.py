"""The ceilings of a positive control: the closed-form read-out plus the true latent parameters of a simulation."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import LinearRegression

from brainlit.baselines.fc_ridge import fc_features
from brainlit.baselines.tangent_ridge import fit_tangent, tangent_features
from brainlit.models.readout import autocorrelation, feature_blocks
from brainlit.tasks.closed_form import fit_ridge_combination

ORACLE = "oracle (true latents)"
SCAN_CEILING = "scan ceiling (true state changes)"
ORACLES = (ORACLE, SCAN_CEILING)


def oracle_inputs(latents: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The latent columns each oracle row reads, from a simulated cohort's latent table.

    - ``ORACLE``: the generative parameters (``dynamics_*``, e.g. each subject's log mean
      dwell time). No finite scan shows them exactly: a subject with a 30-s mean dwell may
      switch 15 or 25 times in ten minutes.
    - ``SCAN_CEILING``: what happened in this scan, the log of ``1 +`` the number of state
      changes (``state_switches``). A model that saw every state change of the scan would
      reach it; no model of the BOLD can beat it, so it bounds what a network can add.

    A row whose columns the table lacks is left out.
    """
    parameters = [c for c in latents.columns if c.startswith("dynamics_")]
    inputs = {ORACLE: latents[parameters]} if parameters else {}
    if "state_switches" in latents:
        inputs[SCAN_CEILING] = np.log1p(latents[["state_switches"]].astype(float))
    return inputs


def lag_features(roi_timeseries: Sequence[np.ndarray], lags: int = 3) -> np.ndarray:
    """Each ROI's autocorrelation at lags 1..``lags``, as brainlit's read-out computes it:
    ``[N, lags * R]``."""
    return np.stack([autocorrelation(torch.from_numpy(np.asarray(s, dtype=np.float64))[None], lags)[0].numpy()
                     for s in roi_timeseries])


class LatentOracle:
    """brainlit's closed-form read-out (ridge on correlation FC and on tangent FC, each with the
    autocorrelations, stacked), stacked in turn with the subjects' true latent parameters.

    A simulated positive control knows what the BOLD carries beyond static FC (e.g. each
    subject's mean dwell time in an FC state). The oracle is what a model that reads static FC
    as the closed-form read-out does *and* knows those parameters exactly would reach: a linear
    regression of the target on the read-out's leave-one-out prediction and the latents (only
    the training subjects' targets and latents are seen). Its static part is the read-out's own
    fit (:func:`brainlit.tasks.closed_form.fit_ridge_combination`, ``combine='stack'``), so
    the oracle starts where the read-out is and its distance to the read-out is what the
    dynamics can add; no model reading a finite scan gets all of it.
    """

    def fit(self, roi_timeseries: Sequence[np.ndarray], y: Sequence[float], latents: np.ndarray) -> LatentOracle:
        """Fit on training series ([R, T] each), targets [N] and latent parameters [N, L]."""
        y = np.asarray(y, dtype=np.float64)
        self.tangent_ = fit_tangent(roi_timeseries)
        features = self._static(roi_timeseries)
        n_rois = len(roi_timeseries[0])
        blocks = feature_blocks(n_rois * (n_rois - 1) // 2, 2, features.shape[1])  # correlation | tangent | lags
        fit = fit_ridge_combination(torch.from_numpy(features), torch.from_numpy(y)[:, None], blocks, "stack")
        self.weight_, self.bias_ = fit.weight[0].double().numpy(), float(fit.bias[0])
        self.loo_ = fit.loo[:, 0].double().numpy()  # the read-out's leave-one-out predictions
        self.y_ = y
        self.stack_ = LinearRegression().fit(np.column_stack([self.loo_, latents]), y)
        return self

    def restacked(self, latents: np.ndarray) -> LatentOracle:
        """A copy that stacks other latent parameters ``[N, L']`` of the same training subjects;
        the static read-out, the costly part of :meth:`fit`, is shared, not refit."""
        other = copy.copy(self)
        other.stack_ = LinearRegression().fit(np.column_stack([self.loo_, latents]), self.y_)
        return other

    def _static(self, roi_timeseries: Sequence[np.ndarray]) -> np.ndarray:
        """Correlation FC, tangent FC at the training reference and autocorrelations ``[N, F]``."""
        return np.hstack([fc_features(roi_timeseries), tangent_features(self.tangent_, roi_timeseries),
                          lag_features(roi_timeseries)])

    def readout(self, roi_timeseries: Sequence[np.ndarray]) -> np.ndarray:
        """The static part alone: the stacked read-out's predictions [N]."""
        return self._static(roi_timeseries) @ self.weight_ + self.bias_

    def predict(self, roi_timeseries: Sequence[np.ndarray], latents: np.ndarray) -> np.ndarray:
        """Predictions [N] from series and the same latent parameters as in :meth:`fit`."""
        return self.stack_.predict(np.column_stack([self.readout(roi_timeseries), latents]))
