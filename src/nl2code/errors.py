"""The base of errors that are the user's to fix (a missing input, a bad option).

Library code raises its own subclasses (e.g. :class:`nl2code.eval.tasks.base.TaskError`); only the
CLI (:mod:`nl2code.cli`, where this class is also named ``CLIError``) turns them into a one-line
message and an exit status.
"""


class UserError(Exception):
    """An error shown to the user as one line, with a non-zero exit."""


__all__ = ["UserError"]
