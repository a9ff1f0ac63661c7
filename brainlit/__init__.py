"""brainlit: brain age and cognition from resting-state fMRI on PyTorch Lightning."""

from brainlit.version import __version__

__all__ = ["__version__", "load_model"]


def load_model(path: str):  # noqa: ANN201 - imported late so `import brainlit` stays light
    """Load a model folder (see :func:`brainlit.brain_age.load_model`)."""
    from brainlit.brain_age import load_model as load

    return load(path)
