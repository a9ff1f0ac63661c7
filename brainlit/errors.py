"""Exceptions raised where input enters brainlit.

The command line prints the message of a :class:`BrainlitError` as ``error: <message>`` and
exits with status 2; ``python -m brainlit --verbose ...`` shows the traceback as well.
"""


class BrainlitError(Exception):
    """An error the user can act on; its message says what is wrong, where, and what to do."""


class BrainlitDataError(BrainlitError, ValueError):
    """Bad or missing input data.

    The message names the subject and the file concerned and says what to do about it.
    """


class BrainlitConfigError(BrainlitDataError):
    """A setting that makes the whole run impossible: a missing atlas, data root or phenotype file.

    Raised once, before any subject is processed, with the path and the option to fix. It is a
    :class:`BrainlitDataError`, so code that reports data errors reports it too; it is never
    turned into a per-subject skip.
    """


class BrainlitCheckpointError(BrainlitError, ValueError):
    """A checkpoint or exported encoder that is missing, corrupt, of the wrong kind or unsafe."""


class BrainlitOutputError(BrainlitError, OSError):
    """An output (cache, table, checkpoint) that cannot be written: read-only or full disk."""
