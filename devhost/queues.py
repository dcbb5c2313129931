"""Queue triggers: poll, decode, invoke, then delete, retry later or move to poison.

The host's documented behaviour, reproduced: up to `batchSize` messages are fetched at
once and run concurrently, a new batch is fetched when the number still running falls to
`newBatchThreshold`; an empty queue is polled with exponential back-off up to
`maxPollingInterval`; a failed message becomes visible again after `visibilityTimeout`,
and once it has been dequeued `maxDequeueCount` times its original text is copied to
`<queue>-poison` and it is deleted. A message that is not valid base64 (when the encoding
is base64) goes straight to poison. A message whose dequeue count is already above the
maximum (its worker died) goes to poison without running again.
"""

from __future__ import annotations

import base64
import binascii
import logging
import threading
from dataclasses import dataclass

from azure.core.exceptions import ResourceNotFoundError
from azure.functions.queue import QueueMessage as FuncQueueMessage
from azure.storage.queue import QueueClient, QueueMessage

from devhost.config import QueueOptions
from devhost.invoker import Invoker
from devhost.loader import FunctionDef

log = logging.getLogger("devhost")

LEASE_SECONDS = 600  # the host receives with a 10-minute visibility and renews it
RENEW_EVERY = 300
MIN_POLL = 0.1
POLLER_FINISH_SECONDS = 1.0  # at a stop, for the poller to finish the batch it took


def decode_body(text: str, encoding: str) -> bytes:
    """The message body the function sees; ValueError if base64 is expected and absent."""
    if encoding == "none":
        return text.encode("utf-8")
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError("message is not valid base64") from exc


@dataclass
class _Held:
    """A message this host holds invisible: waiting for a worker, running, being settled,
    or handed back to the queue by a stop."""

    message: QueueMessage
    renewer: _LeaseRenewer | None = None
    state: str = "waiting"  # waiting | running | settling | returned

    @property
    def pop_receipt(self) -> str:
        return self.renewer.pop_receipt if self.renewer else self.message.pop_receipt


class QueueListener:
    """One polling thread per queue-triggered function; runs go to the invoker's pool."""

    def __init__(self, fdef: FunctionDef, invoker: Invoker, options: QueueOptions) -> None:
        self.fdef, self.invoker, self.options = fdef, invoker, options
        connection = fdef.trigger.connection or "AzureWebJobsStorage"
        self.queue_name = fdef.trigger.queue_name
        self.client: QueueClient = invoker.queue(connection, self.queue_name)
        self.poison_name = f"{self.queue_name}-poison"
        self._connection = connection
        self._stop = threading.Event()
        self._inflight = 0
        self._held: dict[str, _Held] = {}
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name=f"queue:{fdef.name}",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Take no more messages; the ones fetched but not started go back to the queue."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the poller, then for the runs it started (a clean drain); True if
        nothing is left running."""
        self._thread.join(timeout)
        with self._cond:
            return self._cond.wait_for(lambda: self._inflight == 0, timeout)

    def hand_back(self) -> int:
        """Make every message still held visible again at once (a run still going will not
        settle it): after a stop, nothing waits out a 10-minute lease. Returns how many.
        The poller is given a moment to finish the batch it took, which it hands back
        itself from the stop on."""
        self._thread.join(POLLER_FINISH_SECONDS)
        with self._cond:
            held = list(self._held.values())
        returned = sum(self._hand_back(h) for h in held)
        if returned:
            log.warning("queue %s: %d message(s) handed back to the queue", self.queue_name,
                        returned)
        return returned

    def _hand_back(self, held: _Held) -> bool:
        with self._cond:
            if held.state in ("settling", "returned"):
                return False
            held.state = "returned"
        if held.renewer:
            held.renewer.stop()
        try:
            self.client.update_message(held.message.id, held.pop_receipt, visibility_timeout=0)
        except Exception as exc:  # the lease runs out on its own
            log.warning("queue %s: message %s not handed back (%s)", self.queue_name,
                        held.message.id, type(exc).__name__)
            return False
        return True

    def _settle(self, held: _Held) -> bool:
        """True if this run may settle its message (it was not handed back meanwhile)."""
        with self._cond:
            if held.state == "returned":
                return False
            held.state = "settling"
            return True

    def _run(self) -> None:
        delay = MIN_POLL
        while not self._stop.is_set():
            with self._cond:
                self._cond.wait_for(lambda: self._stop.is_set()
                                    or self._inflight <= self.options.new_batch_threshold)
            if self._stop.is_set():
                return
            try:
                batch = list(self.client.receive_messages(
                    messages_per_page=self.options.batch_size,
                    max_messages=self.options.batch_size,
                    visibility_timeout=LEASE_SECONDS))
            except ResourceNotFoundError:
                batch = []
            except Exception:
                log.exception("queue %s: receive failed", self.queue_name)
                batch = []
            if not batch:
                self._stop.wait(delay)
                delay = min(delay * 2, self.options.max_polling_interval)
                continue
            delay = MIN_POLL
            for message in batch:
                held = _Held(message)
                with self._cond:
                    self._inflight += 1
                    self._held[message.id] = held
                if self._stop.is_set():  # taken as the host stopped: back at once, unrun
                    self._hand_back(held)
                    self._done(held)
                    continue
                try:
                    future = self.invoker.pool.submit(self._process_guarded, held)
                except RuntimeError:  # the pool was shut down: a stop
                    self._hand_back(held)
                    self._done(held)
                    continue
                # cancelled by the pool's shutdown: never run, so counted out here
                future.add_done_callback(lambda f, h=held: self._done(h) if f.cancelled()
                                         else None)

    def _done(self, held: _Held) -> None:
        with self._cond:
            self._inflight -= 1
            self._held.pop(held.message.id, None)
            self._cond.notify_all()

    def _process_guarded(self, held: _Held) -> None:
        try:
            if self._stop.is_set():  # stopping: not started, so straight back to the queue
                self._hand_back(held)
            else:
                self._process(held)
        except Exception:
            log.exception("queue %s: message %s could not be settled", self.queue_name,
                          held.message.id)
        finally:
            self._done(held)

    def _process(self, held: _Held) -> None:
        message = held.message
        if message.dequeue_count > self.options.max_dequeue_count:
            if self._settle(held):
                self._poison(message, "dequeue count above maxDequeueCount")
            return
        try:
            body = decode_body(message.content, self.options.message_encoding)
        except ValueError as exc:
            if self._settle(held):
                self._poison(message, str(exc))
            return
        request = FuncQueueMessage(
            id=message.id, body=body, dequeue_count=message.dequeue_count,
            pop_receipt=message.pop_receipt, insertion_time=message.inserted_on,
            expiration_time=message.expires_on, time_next_visible=message.next_visible_on)
        with self._cond:
            if held.state == "returned":
                return
            held.renewer = _LeaseRenewer(self.client, message)
            held.state = "running"
        renewer = held.renewer
        try:
            outcome = self.invoker.invoke(self.fdef, request,
                                          reason=f"New queue message detected on "
                                                 f"'{self.queue_name}'.")
        finally:
            renewer.stop()
        if not self._settle(held):  # handed back by a stop while it ran: not ours to settle
            return
        if outcome.ok:
            self.client.delete_message(message.id, renewer.pop_receipt)
        elif message.dequeue_count >= self.options.max_dequeue_count:
            self._poison(message, "maxDequeueCount reached", renewer.pop_receipt)
        else:
            self.client.update_message(message.id, renewer.pop_receipt,
                                       visibility_timeout=int(self.options.visibility_timeout))

    def _poison(self, message: QueueMessage, reason: str, pop_receipt: str | None = None
                ) -> None:
        log.warning("queue %s: message %s moved to %s (%s)", self.queue_name, message.id,
                    self.poison_name, reason)
        self.invoker.queue(self._connection, self.poison_name).send_message(message.content)
        self.client.delete_message(message.id, pop_receipt or message.pop_receipt)


class _LeaseRenewer:
    """Keeps a long-running message invisible, as the host renews its lease."""

    def __init__(self, client: QueueClient, message: QueueMessage) -> None:
        self.client, self.message_id = client, message.id
        self.pop_receipt = message.pop_receipt
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(RENEW_EVERY):
            try:
                updated = self.client.update_message(self.message_id, self.pop_receipt,
                                                     visibility_timeout=LEASE_SECONDS)
                self.pop_receipt = updated.pop_receipt
            except Exception:
                log.exception("could not renew the lease of message %s", self.message_id)
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

