"""The one exception type for bad input: its message is the single line a user sees."""


class ConfigError(Exception):
    """Bad input: the message names the problem and the fix."""
