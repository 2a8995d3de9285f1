"""The project's exception hierarchy.

It lives in `models`, the bottom room that every other room may import, and imports nothing
itself. The CLI shows any `SarsweepError` as one line and exits with code 2; anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations


class SarsweepError(Exception):
    """Root of every error sarsweep reports to a user as one line."""


class ModelError(SarsweepError, ValueError):
    """A model was asked for with a name, argument or input shape it cannot serve."""
