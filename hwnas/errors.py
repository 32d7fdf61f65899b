"""The one error type users see. The CLI prints ``Error: <message>`` on one line and exits non-zero."""


class HwnasError(Exception):
    """An error caused by the user's input or environment, with a message fit to show as it is."""

    exit_code = 2


class TrainingDiverged(HwnasError):
    """A training whose loss went non-finite: a result for a comparison of trainings, an error for a user's run."""
