"""What an analyst or a caller names: a pasted value, with the kind it must be (or none:
detected). The one way the portal and the API turn text into an Indicator, so both refuse
the same values with the same reason."""

from __future__ import annotations

from shared.correlation.indicators import parse_indicator
from shared.correlation.model import KINDS, Indicator


def indicator_of(value: str, kind: str = "") -> Indicator:
    """The indicator `value` is (of `kind` when given), or ValueError saying why not.
    A file name is never detected (it looks like a domain): it is asked for by kind."""
    if kind and kind not in KINDS:
        raise ValueError(f"the kind must be one of {', '.join(KINDS)}")
    text = (value or "").strip()
    return parse_indicator(f"{kind}:{text}" if kind and text else text)
