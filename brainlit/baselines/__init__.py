"""Classical references run on the same folds as brainlit: tangent ridge, kernel ridge, dynamic-FC
ridge, co-skewness ridge, the mean; and the oracle of simulated positive controls."""

from brainlit.baselines.coskew_ridge import CoskewRidge, coskewness_features
from brainlit.baselines.fc_ridge import FCKernelRidge, fc_features
from brainlit.baselines.mean import MeanPredictor
from brainlit.baselines.run import BASELINES, PREDICTION_COLUMNS, predict_baselines
from brainlit.baselines.tangent_ridge import TangentRidge

__all__ = [
    "BASELINES",
    "PREDICTION_COLUMNS",
    "CoskewRidge",
    "FCKernelRidge",
    "MeanPredictor",
    "TangentRidge",
    "coskewness_features",
    "fc_features",
    "predict_baselines",
]
