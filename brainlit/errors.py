"""Exceptions raised where input enters brainlit."""


class BrainlitDataError(ValueError):
    """Bad or missing input data.

    The message names the subject and the file concerned and says what to do about it.
    """


class BrainlitConfigError(BrainlitDataError):
    """A setting that makes the whole run impossible: a missing atlas, data root or phenotype file.

    Raised once, before any subject is processed, with the path and the option to fix. It is a
    :class:`BrainlitDataError`, so code that reports data errors reports it too; it is never
    turned into a per-subject skip.
    """
