"""Bad input, field by field, for the JSON errors of every API."""

from __future__ import annotations


class ValidationError(ValueError):
    """Bad input; `errors` names each field and what is wrong with it."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))
        self.errors = errors
