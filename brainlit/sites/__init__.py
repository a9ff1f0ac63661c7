"""What makes a brain-age model trustworthy at a new site: conformal intervals, ComBat
harmonisation with new-site adaptation, and out-of-distribution flags.

Each estimator saves as ``to_state() -> (json_values, arrays)`` and loads with
``from_state(json_values, arrays)``, so a model folder holds it without pickle.
"""

from brainlit.sites.conformal import ConformalIntervals
from brainlit.sites.harmonise import ComBatHarmoniser
from brainlit.sites.ood import OutOfDistribution

__all__ = ["ComBatHarmoniser", "ConformalIntervals", "OutOfDistribution"]
