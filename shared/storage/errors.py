"""What a repository raises when storage says no, in the services' terms (they never
import the SDK's exceptions): the fakes raise the same."""

from __future__ import annotations


class StateChanged(RuntimeError):
    """A guarded write lost: the row changed since it was read, or is gone (another worker
    is on it)."""


class AlreadyExists(RuntimeError):
    """A create found the row there already (another worker made it first)."""
