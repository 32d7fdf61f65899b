"""The one error type users see. The CLI prints ``Error: <message>`` on one line and exits non-zero."""


class HwnasError(Exception):
    """An error caused by the user's input or environment, with a message fit to show as it is."""

    exit_code = 2
