"""One email address, checked the same way wherever one comes in or goes out."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email

_FORBIDDEN = set('<>,;"')


def parse_address(text: str) -> str:
    """The normalized address, or ValueError saying why not (never the address itself:
    callers decide whether to show it).

    Refuses control characters anywhere (a trailing newline passed the old pattern and
    broke the To header) and the characters that make one header value several addresses.
    """
    if not isinstance(text, str) or not text:
        raise ValueError("is empty")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise ValueError("contains a control character (a line break?)")
    if _FORBIDDEN.intersection(text):
        raise ValueError('contains one of < > , ; "')
    try:
        return validate_email(text, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None
