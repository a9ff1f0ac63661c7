"""Exceptions raised where input enters brainlit."""


class BrainlitDataError(ValueError):
    """Bad or missing input data.

    The message names the subject and the file concerned and says what to do about it.
    """
