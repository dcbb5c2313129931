"""Helpers shared by the queue adapters: parse a message or keep it with the reason."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import azure.functions as func

from shared import services
from shared.messages import BadMessage

T = TypeVar("T")


def text(msg: func.QueueMessage) -> str:
    return msg.get_body().decode("utf-8", "replace")


def parse_or_record(msg: func.QueueMessage, queue: str, parse: Callable[[str], T]) -> T | None:
    """The parsed message, or None after recording why it can never be processed."""
    body = text(msg)
    try:
        return parse(body)
    except BadMessage as exc:  # no retry can fix it: keep it with the reason
        services.poison_log().record(queue, body, f"bad message: {exc}")
        return None
