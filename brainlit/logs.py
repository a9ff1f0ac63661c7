"""Logging helpers shared by the data layer and the tasks."""

import logging

_SEEN: set[tuple[str, int, str]] = set()


def log_once(logger: logging.Logger, level: int, message: str, *args: object) -> None:
    """Log ``message % args`` the first time this process sees it, and never again.

    An experiment sets up the same cohort for every fold and model: a warning about the cohort
    (confounds it lacks, subjects it skipped) is news once, noise the twentieth time.
    """
    key = (logger.name, level, message % args if args else message)
    if key not in _SEEN:
        _SEEN.add(key)
        logger.log(level, message, *args)


class _DropAdvertisements(logging.Filter):
    """Drops Lightning's tips for its hosted services (LitLogger, litmodels)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return "litlogger" not in message.lower() and "litmodels" not in message.lower()


def quiet_lightning_tips() -> None:
    """Keep Lightning's cloud-service tips out of brainlit's output (idempotent)."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning_fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropAdvertisements) for f in logger.filters):
            logger.addFilter(_DropAdvertisements())
