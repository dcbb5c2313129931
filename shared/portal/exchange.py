"""A portal request and response as plain data: functions/portal.py maps them to HTTP, so
the pages are tested without the Functions runtime."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Request:
    method: str
    headers: dict[str, str]  # lower-case names
    params: dict[str, str] = field(default_factory=dict)  # query string
    route: dict[str, str] = field(default_factory=dict)
    form: dict[str, str] = field(default_factory=dict)  # POSTed fields
    form_lists: dict[str, list[str]] = field(default_factory=dict)  # every value of each


@dataclass
class Response:
    status: int
    body: str = ""
    headers: dict[str, str] = field(default_factory=dict)
