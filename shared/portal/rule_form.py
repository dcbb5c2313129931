"""A notification rule from the portal's form: the fields a form can show (name,
recipients, channels, severities, when, delivery, on/off) over what the rule already holds, so
editing in the portal never drops what the API set (device groups, tenants, caps...).
The result goes through parse_rule, as the API's JSON does: the same checks, every bad
field named."""

from __future__ import annotations

import re
from dataclasses import asdict
from typing import Any

from shared.alerts.view import PRODUCT_CHOICES
from shared.notify.rules import GLOBAL, Rule, Webhooks, parse_rule

SEVERITIES = ("High", "Medium", "Low", "Informational")
_SPLIT = re.compile(r"[\s,;]+")
_OURS = ("id", "scope")  # never a field of the body


def parse_channels(text: str) -> list[dict[str, str] | str]:
    """The form's channel lines; a line that is not `type name SETTING` is kept as it is
    (parse_rule then names it: channels.N)."""
    found: list[dict[str, str] | str] = []
    for line in text.splitlines():
        words = line.split()
        if not words:
            continue
        if len(words) == 3:
            found.append({"type": words[0].lower(), "name": words[1],
                          "webhook_setting": words[2]})
        else:
            found.append(line.strip())
    return found


def form_body(form: dict[str, str], existing: Rule | None = None) -> dict[str, Any]:
    """The rule's JSON body from the form's fields. Unchecked boxes are absent from a
    form, so a checkbox missing means off; severities none checked means any."""
    body: dict[str, Any] = {}
    if existing is not None:
        body = {k: v for k, v in asdict(existing).items() if k not in _OURS}
    body.update({
        "name": form.get("name", "").strip(),
        "recipients": [a for a in _SPLIT.split(form.get("recipients", "")) if a],
        "severities": [s for s in SEVERITIES if form.get(f"severity_{s}") == "yes"],
        "on_new": form.get("on_new") == "yes",
        "on_update": form.get("on_update") == "yes",
        "enabled": form.get("enabled") == "yes",
        "delivery": form.get("delivery", "each"),
    })
    if form.get("products_shown") == "yes":  # the boxes; products the API set stay
        offered = [source for source, _ in PRODUCT_CHOICES]
        kept = [p for p in body.get("products") or [] if p not in offered]
        body["products"] = [p for p in offered if form.get(f"product_{p}") == "yes"] + kept
    if form.get("channels_shown") == "yes":  # a form from before channels leaves them
        body["channels"] = parse_channels(form.get("channels", ""))
    if form.get("own_shown") == "yes":  # a form from before the option leaves it as is
        body["ignore_own_changes"] = form.get("ignore_own_changes") == "yes"
    if form.get("incidents_shown") == "yes":  # a form from before the option leaves it
        body["incidents"] = form.get("incidents", "off")
    if form.get("clusters_shown") == "yes":  # shown for MSSP-wide rules only
        body["clusters"] = form.get("clusters", "off")
    if body["severities"]:
        body["min_severity"] = None  # the form chooses a set: not both
    return body


def rule_from_form(form: dict[str, str], scope: str, existing: Rule | None = None,
                   webhooks: Webhooks | None = None) -> Rule:
    """The rule to save (raises ValidationError naming each bad field)."""
    return parse_rule(form_body(form, existing), scope or GLOBAL, existing, webhooks)
