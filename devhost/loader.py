"""Index the app: import `function_app`, read `get_functions()` once, sort by trigger."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HTTP, TIMER, QUEUE = "httpTrigger", "timerTrigger", "queueTrigger"
SUPPORTED_TRIGGERS = (HTTP, TIMER, QUEUE)


@dataclass(frozen=True)
class FunctionDef:
    """One indexed function: its trigger binding, other bindings and the user callable."""

    name: str
    trigger: Any
    bindings: tuple[Any, ...]
    user_function: Callable[..., Any]

    @property
    def trigger_type(self) -> str:
        return self.trigger.type

    @property
    def outputs(self) -> tuple[Any, ...]:
        """Output bindings other than the HTTP response."""
        return tuple(b for b in self.bindings
                     if int(b.direction) == 1 and b.type != "http")


def load_app(spec: str, script_root: Path) -> list[FunctionDef]:
    """`module:attribute` (default `function_app:app`) to its function definitions."""
    module_name, _, attr = spec.partition(":")
    root = str(script_root.resolve())
    if root not in sys.path:
        sys.path.insert(0, root)
    app = getattr(importlib.import_module(module_name), attr or "app")
    found = []
    for fn in app.get_functions():  # may be called only once per app object
        trigger = fn.get_trigger()
        if trigger.type not in SUPPORTED_TRIGGERS:
            raise ValueError(f"function {fn.get_function_name()}: trigger {trigger.type} "
                             "is not supported by the local host")
        for binding in fn.get_bindings():
            if binding is not trigger and binding.type not in ("http", "queue"):
                raise ValueError(f"function {fn.get_function_name()}: binding {binding.type} "
                                 "is not supported by the local host")
        found.append(FunctionDef(fn.get_function_name(), trigger, tuple(fn.get_bindings()),
                                 fn.get_user_function()))
    return found
