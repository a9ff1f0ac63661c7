"""Classical models run on the same folds as brainlit: brainlit's closed-form read-out,
tangent ridge, kernel ridge, co-skewness ridge, dynamic-FC ridge, the mean; and the oracle of
simulated positive controls. Each is an estimator with ``fit`` and ``predict`` on ROI time
series ``[R, T]``."""

from brainlit.baselines.coskew_ridge import CoskewRidge, coskewness_features
from brainlit.baselines.fc_ridge import FCKernelRidge, fc_features
from brainlit.baselines.mean import MeanPredictor
from brainlit.baselines.readout import ConnectivityRidge
from brainlit.baselines.run import (
    BASELINES,
    PREDICTION_COLUMNS,
    READOUT,
    predict_baselines,
    readout_folds,
)
from brainlit.baselines.tangent_ridge import TangentRidge

__all__ = [
    "BASELINES",
    "PREDICTION_COLUMNS",
    "READOUT",
    "ConnectivityRidge",
    "CoskewRidge",
    "FCKernelRidge",
    "MeanPredictor",
    "TangentRidge",
    "coskewness_features",
    "fc_features",
    "predict_baselines",
    "readout_folds",
]
