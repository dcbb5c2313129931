"""Typed senders for the ingest queues: a service asks for a fetch or a relay, or hands an
event on, and never writes a message's text itself (the text is `shared/messages.py`'s).

Each wraps whatever puts messages on its queue: the SDK's `QueueClient`, or the lean
`QueueSender` where many messages go at once (the fan-out)."""

from __future__ import annotations

from typing import Any, Protocol

from shared.messages import BulkTriageRequest, ChannelPost, FetchRequest, RelayRequest


class Sender(Protocol):
    def send_message(self, content: str, *args: Any, **kwargs: Any) -> Any: ...


class FetchQueue:
    """fetch-requests: one message asks a worker to fetch one tenant."""

    def __init__(self, sender: Sender) -> None:
        self.sender = sender

    def request(self, request: FetchRequest, delay: int | None = None) -> None:
        """Queue the fetch; with `delay`, invisible for that many seconds."""
        if delay is None:
            self.sender.send_message(request.to_message())
        else:
            self.sender.send_message(request.to_message(), visibility_timeout=delay)


class RelayQueue:
    """alert-relay: one message asks the relay to send a tenant's outbox."""

    def __init__(self, sender: Sender) -> None:
        self.sender = sender

    def request(self, tenant_id: str, delay: int | None = None) -> None:
        """Ask for the tenant's relay; with `delay`, invisible for that many seconds."""
        if delay is None:
            self.sender.send_message(RelayRequest(tenant_id).to_message())
        else:
            self.sender.send_message(RelayRequest(tenant_id).to_message(),
                                     visibility_timeout=delay)


class EventQueue:
    """notify-events or siem-events: one message per alert event."""

    def __init__(self, sender: Sender) -> None:
        self.sender = sender

    def send(self, text: str) -> None:
        """One event's queue text, `messages.relay_text` of an outbox event (made once by
        the relay for both queues)."""
        self.sender.send_message(text)


class BulkQueue:
    """bulk-triage: one message asks a worker to go on with one tenant's part of a job."""

    def __init__(self, sender: Sender) -> None:
        self.sender = sender

    def request(self, request: BulkTriageRequest, delay: int | None = None) -> None:
        """Queue the tenant's work; with `delay`, invisible for that many seconds."""
        if delay is None:
            self.sender.send_message(request.to_message())
        else:
            self.sender.send_message(request.to_message(), visibility_timeout=delay)


class ChannelQueue:
    """notify-channels: one message per post to one Teams or Slack channel."""

    def __init__(self, sender: Sender) -> None:
        self.sender = sender

    def post(self, request: ChannelPost, delay: int | None = None) -> None:
        """Queue the post; with `delay` (a 429's Retry-After), invisible that long."""
        if delay is None:
            self.sender.send_message(request.to_message())
        else:
            self.sender.send_message(request.to_message(), visibility_timeout=delay)
