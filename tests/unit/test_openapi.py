"""The OpenAPI document describes exactly the HTTP routes the app registers."""

from __future__ import annotations

import importlib
import re
import sys

from shared.web.openapi import document


def _routes(monkeypatch) -> set[tuple[str, str]]:
    for name in [m for m in sys.modules if m == "function_app" or m.startswith("functions")]:
        monkeypatch.delitem(sys.modules, name)
    app = importlib.import_module("function_app").app
    found = set()
    for fn in app.get_functions():
        trigger = fn.get_trigger()
        if trigger.type != "httpTrigger":
            continue
        path = "/api/" + re.sub(r"\{(\w+)(:\w+)?\}", r"{\1}", trigger.route)
        for method in trigger.methods or ["GET", "POST"]:
            found.add((path, str(getattr(method, "value", method)).lower()))
    return found


def test_every_route_is_documented_and_nothing_else(monkeypatch):
    documented = {(path, method) for path, item in document()["paths"].items()
                  for method in item if method != "parameters"}
    assert documented == _routes(monkeypatch)


def test_keyed_routes_say_so_and_references_resolve():
    doc = document()
    schemas = doc["components"]["schemas"]
    text = str(doc)
    for ref in re.findall(r"#/components/schemas/(\w+)", text):
        assert ref in schemas
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method == "parameters":
                continue
            anonymous = path.startswith(("/api/health", "/api/openapi", "/api/onboard",
                                         "/api/consent", "/api/portal/login"))
            portal = path.startswith("/api/portal") and not anonymous
            assert (op["security"] == []) == anonymous, (path, method)
            # the portal is anonymous to the Functions host but checks its own sign-in
            assert ({"appServicePrincipal", "portalSession"} <= {
                name for s in op["security"] for name in s}) == portal, (path, method)
