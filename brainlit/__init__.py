"""brainlit: brain age and cognition from resting-state fMRI on PyTorch Lightning."""

__version__ = "0.1.0"
