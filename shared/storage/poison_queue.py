"""A `<queue>-poison` queue: where the host moves a message it gave up on
(maxDequeueCount). A timer drains these (shared/ops/poison.py) instead of queue triggers,
so they are not polled every `maxPollingInterval` like the queues whose work is waiting.

Read without the SDK's base64 decoding: the host copies a message as it was on the wire,
and one that was never valid base64 (it went to poison for that) must still be read, as
its text."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.storage.queue import QueueClient

PER_REQUEST = 32  # the most messages the Queue service returns a request


@dataclass(frozen=True)
class Poisoned:
    """One message taken from a poison queue, hidden until removed or `hide` passes."""

    message_id: str  # the same each time the message is taken again
    body: str
    poisoned_at: datetime  # when it was put on the poison queue
    receipt: str


def message_text(content: str) -> str:
    """The text of a message as the host wrote it: base64 of UTF-8, else as it is."""
    try:
        return base64.b64decode(content, validate=True).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return content


class PoisonQueue:
    def __init__(self, client: QueueClient) -> None:
        self.client = client  # a client without decode policy (StorageConnection.queue(
        # name, base64=False)): message_text decodes

    def put(self, text: str) -> None:
        """What the host does when it gives up on a message (tests; the local host does
        it in devhost/queues.py)."""
        self.client.send_message(base64.b64encode(text.encode("utf-8")).decode("ascii"))

    def take(self, limit: int, hide_seconds: int) -> list[Poisoned]:
        """Up to `limit` messages, oldest first, each hidden for `hide_seconds` (then
        visible again, if not removed meanwhile)."""
        taken: list[Poisoned] = []
        while len(taken) < limit:
            batch = list(self.client.receive_messages(
                messages_per_page=min(PER_REQUEST, limit - len(taken)),
                max_messages=min(PER_REQUEST, limit - len(taken)),
                visibility_timeout=hide_seconds))
            taken += [Poisoned(m.id, message_text(m.content or ""),
                               m.inserted_on or datetime.now(UTC), m.pop_receipt or "")
                      for m in batch]
            if len(batch) < PER_REQUEST:
                break
        return taken

    def remove(self, message: Poisoned) -> None:
        """Delete a taken message; gone already (or taken again since) is fine: whoever
        holds it keeps the same record."""
        try:
            self.client.delete_message(message.message_id, message.receipt)
        except ResourceNotFoundError:
            pass
        except HttpResponseError as exc:
            if exc.error_code != "PopReceiptMismatch":
                raise
