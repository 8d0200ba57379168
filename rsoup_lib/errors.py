"""Errors the user can fix. The CLI prints them as one line, without a traceback."""


class UserError(Exception):
    """Bad input (an unknown name, a corrupt file, incompatible checkpoints): the message says
    what was wrong and what to do."""
