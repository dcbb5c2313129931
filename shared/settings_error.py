"""The error every setting check raises, in a module of its own.

It sits below `shared.config` so that the modules config.py composes (the storage
connection, the SIEM outputs) can raise it without importing config.py back.
"""

from __future__ import annotations


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names it but never its value."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"app setting {name}: {problem}")
        self.setting = name
