"""What "brainlit" is: two models and a combination.

- The **read-out** (:class:`~brainlit.baselines.readout.ConnectivityRidge`): ridge on static
  connectivity, fit in closed form.
- The **network** (:class:`~brainlit.tasks.regress.RegressionTask`): the pretrained encoder,
  RWMOE and the Mamba predictor, trained on the targets alone.
- The **combination** (:class:`NetworkShare`, this module): per target, the read-out plus a
  weight in [0, 1] times the network's difference from it, the weight fit on out-of-fold
  predictions of every subject the fold may use (cross-fitting, :mod:`brainlit.experiment`).

So brainlit predicts what its read-out predicts unless the network's predictions of held-out
subjects show that they add something, and then by as much as they show.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

NETWORK = "brainlit network"  # the networks alone, averaged: the second model brainlit combines
NO_PRETRAINING = " (no pretraining)"  # ends the names of the models fine-tuned from scratch


def share_weights(network: np.ndarray, readout: np.ndarray, y: np.ndarray, shrink: bool = False) -> np.ndarray:
    """Per target, the weight in [0, 1] on the network's share that fits held-out subjects best.

    The network's share is ``network - readout``; the weight is the least-squares coefficient of
    the read-out's residual ``y - readout`` on it (no intercept), clipped to [0, 1]: 1 keeps the
    network's prediction, 0 the read-out's (a stacking weight, Breiman 1996). A share that is
    zero for every subject gets weight 0. With ``shrink`` the coefficient ``w`` is first shrunk
    by the positive-part James-Stein factor ``max(0, 1 - 1 / t^2)``, ``t = w / se(w)``.

    Args:
        network: ``[N, T]`` the network's out-of-sample predictions.
        readout: ``[N, T]`` the read-out's out-of-sample predictions of the same subjects.
        y: ``[N, T]`` their targets.
        shrink: Shrink each weight towards 0 by its standard error.
    """
    share, residual = network - readout, y - readout
    power = (share**2).sum(0)
    weight = (share * residual).sum(0) / np.maximum(power, 1e-12)
    if shrink:
        noise = ((residual - weight * share) ** 2).sum(0) / max(len(share) - 1, 1)
        t_squared = weight**2 * power / np.maximum(noise, 1e-12)
        weight = weight * np.clip(1 - 1 / np.maximum(t_squared, 1e-12), 0.0, None)
    return np.where(power > 1e-12, np.clip(weight, 0.0, 1.0), 0.0)


class NetworkShare:
    """brainlit's combination: ``read-out + w * (network - read-out)`` per target, ``w`` in [0, 1].

    Args:
        shrink: Shrink each weight by its standard error (:func:`share_weights`), a prior that
            the network adds nothing until the held-out subjects show it clearly.
        readout_only: Targets whose weight is 0 whatever the evidence: the read-out alone.

    Attributes (after :meth:`fit`):
        targets_: Target names. weights_ ``[T]``: the weight on the network's share.
        n_subjects_: Out-of-sample predictions the weights were fit on.
    """

    def __init__(self, shrink: bool = False, readout_only: list[str] | None = None) -> None:
        self.shrink, self.readout_only = shrink, list(readout_only or [])

    def fit(self, readout: np.ndarray, network: np.ndarray, y: np.ndarray, targets: Sequence[str]) -> NetworkShare:
        """Fit the weights on out-of-sample predictions ``[N, T]`` of the same subjects and targets ``[N, T]``."""
        readout, network, y = (np.asarray(a, np.float64).reshape(len(a), -1) for a in (readout, network, y))
        self.targets_ = [str(t) for t in targets]
        unknown = set(self.readout_only) - set(self.targets_)
        if unknown:
            raise ValueError(f"NetworkShare readout_only {sorted(unknown)} are not among the targets {self.targets_}.")
        kept = np.array([t not in self.readout_only for t in self.targets_])
        self.weights_ = share_weights(network, readout, y, self.shrink) * kept
        self.n_subjects_ = len(y)
        return self

    def predict(self, readout: np.ndarray, network: np.ndarray) -> np.ndarray:
        """brainlit's predictions ``[N, T]`` from the read-out's and the network's ``[N, T]``."""
        readout, network = np.asarray(readout, np.float64), np.asarray(network, np.float64)
        return readout + self.weights_ * (network - readout)

    def describe(self) -> str:
        """One line: each target's weight and the evidence behind it."""
        weights = ", ".join(f"{t} {w:.2f}" for t, w in zip(self.targets_, self.weights_, strict=True))
        return f"network share {weights} (fit on {self.n_subjects_} out-of-sample predictions)"

    def to_state(self) -> dict[str, Any]:
        """The fitted combination as JSON values."""
        return {"shrink": self.shrink, "readout_only": self.readout_only, "targets": self.targets_,
                "weights": [float(w) for w in self.weights_], "n_subjects": int(self.n_subjects_)}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> NetworkShare:
        """A fitted combination from :meth:`to_state`'s output."""
        share = cls(state["shrink"], state["readout_only"])
        share.targets_, share.n_subjects_ = list(state["targets"]), int(state["n_subjects"])
        share.weights_ = np.asarray(state["weights"], np.float64)
        return share
