"""``python -m brainlit experiment``: the paper's protocol end to end, as resumable steps.

:class:`Experiment` is the run context; :func:`run` runs the steps in order (see
:mod:`brainlit.experiment.run`); :func:`experiment_main` is the command line.
"""

from brainlit.experiment.context import Experiment
from brainlit.experiment.main import experiment_main
from brainlit.experiment.run import run

__all__ = ["Experiment", "experiment_main", "run"]
