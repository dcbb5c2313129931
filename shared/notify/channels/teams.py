"""A Teams Workflows post ("post to a channel when a webhook request is received"): an
Adaptive Card 1.5 in the message envelope the flow expects. Alert text is inert: markdown
characters are backslash-escaped and a `<` gets a zero-width space after it, so `<at>`
mentions and HTML stay text. The card stays under PAYLOAD_BYTES (Teams takes ~28 KB);
what does not fit is cut, and the card says so."""

from __future__ import annotations

import json
import re
from typing import Any

from shared.notify.channels.text import SEVERITY_COLOUR, AlertFacts, Linked, cut

PAYLOAD_BYTES = 28_000
SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
VERSION = "1.5"
CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
_MARKDOWN = re.compile(r"([\\*_~`#\[\]>|])")  # "(" and "!" need a "[" to mean anything
_LIST_START = re.compile(r"^(\s*)([-+]|\d+\.)(\s)")


def escape(text: str) -> str:
    """Plain text as inert Adaptive Card markdown."""
    text = _MARKDOWN.sub(r"\\\1", text).replace("<", "<\u200b")
    return _LIST_START.sub(lambda m: m.group(1) + "\\" + m.group(2) + m.group(3), text)


def envelope(body: list[dict[str, Any]], actions: list[dict[str, Any]]) -> dict[str, Any]:
    card: dict[str, Any] = {"$schema": SCHEMA, "type": "AdaptiveCard", "version": VERSION,
                            "msteams": {"width": "Full"}, "body": body}
    if actions:
        card["actions"] = actions
    return {"type": "message",
            "attachments": [{"contentType": CONTENT_TYPE, "contentUrl": None,
                             "content": card}]}


def link_actions(item: Linked, mssp_name: str) -> list[dict[str, Any]]:
    """The card's buttons: the portal's page, then Defender's (those it has)."""
    found = []
    if item.hub_url:
        found.append({"type": "Action.OpenUrl", "title": cut(f"Open in {mssp_name}", 60),
                      "url": item.hub_url, "style": "positive"})
    if item.defender_url:
        found.append({"type": "Action.OpenUrl", "title": "Open in Microsoft Defender",
                      "url": item.defender_url})
    return found


def alert_card(item: AlertFacts, mssp_name: str, rule_name: str) -> dict[str, Any]:
    change = "Updated alert" if item.change == "updated" else "New alert"
    body = [
        {"type": "TextBlock", "text": escape(f"{item.severity} · {change}"),
         "color": SEVERITY_COLOUR.get(item.severity, "default"), "weight": "Bolder",
         "size": "Small", "wrap": True},
        {"type": "TextBlock", "text": escape(cut(item.title, 500)), "weight": "Bolder",
         "size": "Medium", "wrap": True},
        {"type": "FactSet", "facts": [
            {"title": title, "value": escape(value) or "—"} for title, value in (
                ("Severity", item.severity), ("Tenant", item.tenant),
                ("Device", item.device), ("User", item.user),
                ("Category", item.category), ("Time", item.time))]},
        {"type": "TextBlock", "text": escape(f"Rule {rule_name} · {mssp_name}"),
         "isSubtle": True, "size": "Small", "wrap": True}]
    return envelope(body, link_actions(item, mssp_name))


def digest_card(groups: list[tuple[str, list[tuple[str, list[AlertFacts]]]]], count: int,
                mssp_name: str, rule_name: str) -> dict[str, Any]:
    """One card: per tenant, per severity, a line per alert (a link to its page), as many
    as fit in PAYLOAD_BYTES, then how many were left out."""
    body: list[dict[str, Any]] = [
        {"type": "TextBlock", "text": escape(f"Digest: {count} alerts for rule {rule_name}"),
         "weight": "Bolder", "size": "Medium", "wrap": True}]
    shown, size = 0, _size(body)

    def add(block: dict[str, Any]) -> bool:
        """Append `block` if the card stays under the limit (room kept for the note)."""
        nonlocal size
        grown = size + len(json.dumps(block).encode()) + 2
        if grown > PAYLOAD_BYTES - 1500:
            return False
        body.append(block)
        size = grown
        return True

    for tenant, severities in groups:
        if not add({"type": "TextBlock", "text": escape(tenant), "weight": "Bolder",
                    "separator": True, "wrap": True}):
            break
        for severity, items in severities:
            if not add({"type": "TextBlock", "text": escape(f"{severity} ({len(items)})"),
                        "color": SEVERITY_COLOUR.get(severity, "default"), "wrap": True}):
                break
            for item in items:
                url = item.hub_url or item.defender_url
                title = escape(cut(item.title, 200))
                if not add({"type": "TextBlock", "wrap": True, "spacing": "None",
                            "text": f"• [{title}]({url})" if url else f"• {title}"}):
                    break
                shown += 1
    note = escape(f"Rule {cut(rule_name, 200)} · {cut(mssp_name, 200)}")
    if shown < count:
        note = f"{count - shown} of {count} alerts not listed here (cut) · " + note
    body.append({"type": "TextBlock", "text": note, "isSubtle": True,
                 "size": "Small", "wrap": True})
    return envelope(body, [])


def _size(body: list[dict[str, Any]]) -> int:
    return len(json.dumps(envelope(body, [])).encode())
