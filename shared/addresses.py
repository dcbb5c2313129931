"""One email address check for every place one is accepted (invitations, rules,
settings): a bare address that a mail header cannot be smuggled through."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email

# never in a bare address: header injection (line breaks, controls), a display name or
# a second address (`<`, `>`, `,`, `;`, quotes)
_FORBIDDEN = frozenset([*map(chr, range(0x20)), "\x7f", "<", ">", ",", ";", '"'])


def parse_address(text: str) -> str:
    """The normalized address, or ValueError saying what is wrong (no DNS lookup)."""
    if not isinstance(text, str) or not text:
        raise ValueError("must be an email address")
    if len(text) > 254:
        raise ValueError("is longer than 254 characters")
    if any(c in _FORBIDDEN for c in text):
        raise ValueError("must be one bare address, without a name, quotes or "
                         "control characters")
    try:
        return validate_email(text, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None
