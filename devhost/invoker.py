"""Run one invocation the way the Python worker does, and log it the way the host does."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import inspect
import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import azure.functions as func
from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueClient

from devhost.loader import FunctionDef
from shared.logsafe import clean

log = logging.getLogger("devhost")


class OutValue(func.Out):
    """The worker's `func.Out[T]`: what the function sets is written after it succeeds."""

    def __init__(self) -> None:
        self._value: Any = None

    def set(self, val: Any) -> None:
        self._value = val

    def get(self) -> Any:
        return self._value


class InvocationContext(func.Context):
    """`context` argument: the invocation id and names, as the worker passes them."""

    def __init__(self, invocation_id: str, function_name: str, directory: str) -> None:
        self._id, self._name, self._dir = invocation_id, function_name, directory
        self._local = threading.local()

    invocation_id = property(lambda self: self._id)
    function_name = property(lambda self: self._name)
    function_directory = property(lambda self: self._dir)
    thread_local_storage = property(lambda self: self._local)
    trace_context = property(lambda self: None)
    retry_context = property(lambda self: None)


@dataclass(frozen=True)
class Outcome:
    invocation_id: str
    ok: bool
    value: Any = None
    error: BaseException | None = None
    duration_ms: float = 0.0


QueueFactory = Callable[[str, str], QueueClient]  # (connection name, queue name) -> client


def encode_message(value: str | bytes, encoding: str) -> str:
    """A message body as the host puts it on the wire (base64 unless encoding is none)."""
    raw = value.encode("utf-8") if isinstance(value, str) else bytes(value)
    return base64.b64encode(raw).decode("ascii") if encoding == "base64" else raw.decode()


class Invoker:
    """Calls user functions on a thread pool (as the worker runs sync functions)."""

    def __init__(self, queue_factory: QueueFactory, message_encoding: str,
                 script_root: str, max_workers: int | None = None) -> None:
        self._queues = queue_factory
        self._encoding = message_encoding
        self._root = script_root
        self._created: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self.pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="worker")

    def submit(self, fdef: FunctionDef, trigger_value: Any,
               reason: str = "") -> Future[Outcome]:
        return self.pool.submit(self.invoke, fdef, trigger_value, reason)

    def invoke(self, fdef: FunctionDef, trigger_value: Any, reason: str = "") -> Outcome:
        invocation_id = str(uuid.uuid4())
        kwargs: dict[str, Any] = {fdef.trigger.name: trigger_value}
        outs = {b.name: OutValue() for b in fdef.outputs if b.name != "$return"}
        kwargs.update(outs)
        if "context" in inspect.signature(fdef.user_function).parameters:
            kwargs["context"] = InvocationContext(invocation_id, fdef.name, self._root)
        log.debug("Executing 'Functions.%s' (Reason='%s', Id=%s)", fdef.name, reason,
                 invocation_id)
        started = time.perf_counter()
        try:
            value = fdef.user_function(**kwargs)
            if inspect.isawaitable(value):
                value = asyncio.run(value)
            for binding in fdef.outputs:
                produced = value if binding.name == "$return" else outs[binding.name].get()
                self._write_queue_output(binding, produced)
        except Exception as exc:
            ms = (time.perf_counter() - started) * 1000
            log.error("Executed 'Functions.%s' (Failed, Id=%s, Duration=%dms) %s",
                      fdef.name, invocation_id, ms, clean(f"{type(exc).__name__}: {exc}"),
                      exc_info=exc)
            return Outcome(invocation_id, False, error=exc, duration_ms=ms)
        ms = (time.perf_counter() - started) * 1000
        log.info("Executed 'Functions.%s' (Succeeded, Id=%s, Duration=%dms)",
                 fdef.name, invocation_id, ms)
        return Outcome(invocation_id, True, value=value, duration_ms=ms)

    def _write_queue_output(self, binding: Any, produced: Any) -> None:
        if produced is None:
            return
        items = produced if isinstance(produced, list) else [produced]
        client = self.queue(binding.connection or "AzureWebJobsStorage", binding.queue_name)
        for item in items:
            if not isinstance(item, (str, bytes)):
                raise TypeError(f"queue output {binding.name}: expected str, bytes or a list "
                                f"of them, got {type(item).__name__}")
            client.send_message(encode_message(item, self._encoding))

    def queue(self, connection: str, name: str) -> QueueClient:
        """A raw (no encode policy) queue client; the queue is created on first use."""
        client = self._queues(connection, name)
        with self._lock:
            if (connection, name) not in self._created:
                with contextlib.suppress(ResourceExistsError):
                    client.create_queue()
                self._created.add((connection, name))
        return client

    def shutdown(self, wait: bool = True) -> None:
        self.pool.shutdown(wait=wait, cancel_futures=True)
