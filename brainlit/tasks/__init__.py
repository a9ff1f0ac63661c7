"""LightningModules that wire brainlit models to losses, metrics and logging."""

from brainlit.tasks.base import BrainTask
from brainlit.tasks.predictions import PredictionWriter
from brainlit.tasks.pretrain import LMAEPretrainer
from brainlit.tasks.regress import RegressionTask
from brainlit.tasks.specs import EncoderSpec, MoESpec, SSMSpec

__all__ = [
    "BrainTask",
    "EncoderSpec",
    "LMAEPretrainer",
    "MoESpec",
    "PredictionWriter",
    "RegressionTask",
    "SSMSpec",
]
