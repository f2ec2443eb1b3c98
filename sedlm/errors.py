"""Errors a user can cause; the CLI prints them as one line, without a traceback."""


class SedlmError(Exception):
    """A problem with user input (path, config, checkpoint, name) whose message names the fix."""
