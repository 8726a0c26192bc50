"""The one exception type for a user mistake, shared by every package and CLI.

A ``UserError`` is something the user can fix (a bad path, an unreadable or damaged file,
a bad flag value): CLIs print its message in one line, naming the thing and the fix, and
exit with code 2, without a traceback. Anything else is a bug and keeps its traceback.
Lean on purpose: the runtime, the data layer, training and export all import it.
"""

from __future__ import annotations


class UserError(ValueError):
    """A user mistake: the message names the file or flag and says how to fix it."""


class ModelError(UserError):
    """A model that loaded but fails at run time or answers NaN/inf: the file, not the image."""


__all__ = ["ModelError", "UserError"]
