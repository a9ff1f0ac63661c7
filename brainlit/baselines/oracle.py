"""The ceilings of a positive control: brainlit's read-out stacked with the true latents of a simulation."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.linear_model import LinearRegression

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


class LatentOracle:
    """A linear regression of the target on brainlit's read-out and the true latent parameters.

    The read-out's prediction is the static part: what a model that reads static connectivity
    in closed form reaches. The oracle is what such a model that *also* knew the latents
    exactly would reach, so its distance to the read-out is what the dynamics can add. It is fit
    on the read-out's leave-one-out predictions of the training subjects
    (:attr:`~brainlit.baselines.readout.ConnectivityRidge.oof_`), never on in-sample ones, and
    applied to its predictions of the test subjects.
    """

    def fit(self, readout_oof: np.ndarray, latents: np.ndarray, y: np.ndarray) -> LatentOracle:
        """Fit on the read-out's out-of-sample predictions ``[N]``, latents ``[N, L]`` and targets ``[N]``."""
        self.stack_ = LinearRegression().fit(np.column_stack([readout_oof, latents]), y)
        return self

    def predict(self, readout: np.ndarray, latents: np.ndarray) -> np.ndarray:
        """Predictions ``[N]`` from the read-out's predictions and the same latents as in :meth:`fit`."""
        return self.stack_.predict(np.column_stack([readout, latents]))
