"""The refine-perception command line."""


class CliError(Exception):
    """A user error worth one line on stderr, not a traceback."""
