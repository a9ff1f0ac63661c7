"""Classical references run on the same folds as brainlit: kernel ridge on FC and the mean."""

from brainlit.baselines.fc_ridge import FCKernelRidge, fc_features
from brainlit.baselines.mean import MeanPredictor
from brainlit.baselines.run import BASELINES, RESULT_COLUMNS, pearson_r, run_baselines

__all__ = [
    "BASELINES",
    "RESULT_COLUMNS",
    "FCKernelRidge",
    "MeanPredictor",
    "fc_features",
    "pearson_r",
    "run_baselines",
]
