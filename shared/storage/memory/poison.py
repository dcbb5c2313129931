"""In-memory poison queues (shared/storage/poison_queue.py): messages with ids, hidden
while taken, back after the hide time unless removed."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from shared.storage import poison_queue
from shared.storage.memory import next_number


@dataclass
class _Message:
    message_id: str
    body: str
    poisoned_at: datetime
    visible_at: float = 0.0
    receipt: str = ""


class MemoryPoisonQueue(poison_queue.PoisonQueue):
    def __init__(self) -> None:
        self.messages: list[_Message] = []

    def put(self, text: str) -> None:
        self.messages.append(_Message(f"m{next_number():08x}", text, datetime.now(UTC)))

    def take(self, limit: int, hide_seconds: int) -> list[poison_queue.Poisoned]:
        now = time.monotonic()
        taken = []
        for message in self.messages:
            if len(taken) >= limit:
                break
            if message.visible_at <= now:
                message.visible_at = now + hide_seconds
                message.receipt = f"r{next_number():08x}"
                taken.append(poison_queue.Poisoned(message.message_id, message.body,
                                                   message.poisoned_at, message.receipt))
        return taken

    def remove(self, message: poison_queue.Poisoned) -> None:
        self.messages = [m for m in self.messages
                         if (m.message_id, m.receipt) != (message.message_id, message.receipt)]
