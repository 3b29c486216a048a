"""One exception type for bad input, so every entry point can turn it into a one-line error."""


class PlatformError(Exception):
    """Bad input from the user (spec, data, model source, request); the message names the culprit."""
