r"""A Slack incoming-webhook message (Block Kit). Alert text is inert: `&`, `<`, `>` are
escaped as Slack asks (so `<!channel>`, `<!here>`, `<@U…>` and `<url|text>` stay text),
a bare `@channel`/`@here`/`@everyone` gets a zero-width joiner, and mrkdwn's `*_~\``
a zero-width space before it. Limits (Slack's documented ones) are kept by cutting, which
the text says: header 150, section text 3000, field 2000, 10 fields, 50 blocks, button
text 75; the whole payload under PAYLOAD_BYTES like Teams'."""

from __future__ import annotations

import json
import re
from typing import Any

from shared.notify.channels.text import SEVERITY_EMOJI, AlertFacts, Linked, cut

HEADER_MAX = 150
SECTION_MAX = 3000
FIELD_MAX = 2000
BLOCKS_MAX = 50
BUTTON_MAX = 75
PAYLOAD_BYTES = 28_000
_BROADCAST = re.compile(r"@(channel|here|everyone)\b", re.IGNORECASE)
_FORMAT = re.compile(r"([*_~`])")


def escape(text: str) -> str:
    """Plain text as inert mrkdwn."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _BROADCAST.sub(lambda m: "@\u2060" + m.group(1), text)
    return _FORMAT.sub("\u200b\\1", text)


def plain(text: str, limit: int) -> dict[str, Any]:
    """A plain_text object (no mrkdwn at all); mention syntax broken up all the same."""
    text = _BROADCAST.sub(lambda m: "@\u2060" + m.group(1), text).replace("<", "<\u200b")
    return {"type": "plain_text", "text": cut(text, limit), "emoji": False}


def mrkdwn(label: str, value: str, limit: int = FIELD_MAX) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": cut(f"*{label}*\n{escape(value) or '—'}", limit)}


def link_buttons(item: Linked, mssp_name: str) -> list[dict[str, Any]]:
    """The message's buttons: the portal's page, then Defender's (those it has)."""
    found = []
    if item.hub_url:
        found.append({"type": "button", "text": plain(f"Open in {mssp_name}", BUTTON_MAX),
                      "url": item.hub_url[:3000], "style": "primary"})
    if item.defender_url:
        found.append({"type": "button", "text": plain("Open in Microsoft Defender",
                                                      BUTTON_MAX),
                      "url": item.defender_url[:3000]})
    return found


def alert_message(item: AlertFacts, mssp_name: str, rule_name: str) -> dict[str, Any]:
    emoji = SEVERITY_EMOJI.get(item.severity, "⚪")
    change = "Updated alert" if item.change == "updated" else "New alert"
    fields = [mrkdwn("Severity", f"{emoji} {item.severity}"),
              mrkdwn("Tenant", item.tenant), mrkdwn("Device", item.device),
              mrkdwn("User", item.user), mrkdwn("Category", item.category),
              mrkdwn("Time", item.time)]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": plain(f"{emoji} {item.title}", HEADER_MAX)},
        {"type": "section", "fields": fields},
        {"type": "context", "elements": [
            {"type": "mrkdwn", "text": cut(escape(
                f"{change} · {item.severity} · rule {rule_name} · {mssp_name}"), SECTION_MAX)}]}]
    buttons = link_buttons(item, mssp_name)
    if buttons:
        blocks.append({"type": "actions", "elements": buttons})
    tenant = f"{escape(item.tenant)}: " if item.tenant else ""
    return {"text": cut(f"{emoji} [{item.severity}] {tenant}{escape(item.title)}", SECTION_MAX),
            "blocks": blocks}


def digest_message(groups: list[tuple[str, list[tuple[str, list[AlertFacts]]]]], count: int,
                   mssp_name: str, rule_name: str) -> dict[str, Any]:
    """One message: a section per tenant and severity listing its alerts, as many as fit
    in the blocks and bytes Slack takes, then a line saying how many were left out."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": plain(f"Digest: {count} alerts for rule {rule_name}",
                                         HEADER_MAX)}]
    shown, size = 0, _size(blocks)
    for tenant, severities in groups:
        for severity, items in severities:
            lines = [f"• <{i.hub_url or i.defender_url}|{escape(cut(i.title, 200))}>"
                     if (i.hub_url or i.defender_url) else f"• {escape(cut(i.title, 200))}"
                     for i in items]
            head = f"*{escape(tenant)}* · {SEVERITY_EMOJI.get(severity, '⚪')} {severity}\n"
            text, taken = head, 0
            for line in lines:
                if len(text) + len(line) + 1 > SECTION_MAX - 40:
                    break
                text, taken = text + line + "\n", taken + 1
            if taken < len(lines):
                text += f"…and {len(lines) - taken} more (cut)"
            block = {"type": "section", "text": {"type": "mrkdwn", "text": text}}
            size += _size([block])
            if len(blocks) >= BLOCKS_MAX - 2 or size > PAYLOAD_BYTES - 2000:
                break
            blocks.append(block)
            shown += taken
    context = f"{mssp_name} · rule {rule_name}"
    if shown < count:
        context = f"{count - shown} of {count} alerts not listed here (cut) · " + context
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn",
                                                    "text": escape(context)}]})
    return {"text": escape(f"Digest: {count} alerts for rule {rule_name}"), "blocks": blocks}


def _size(blocks: list[dict[str, Any]]) -> int:
    return len(json.dumps({"blocks": blocks}).encode())
