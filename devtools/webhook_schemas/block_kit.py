"""Block Kit messages as a Slack incoming webhook takes them, checked by hand.

Slack publishes no JSON Schema for Block Kit; the limits below are from its reference
(docs.slack.dev, "Blocks", "Block elements", "Composition objects") and the incoming
webhooks page: a message holds at most 50 blocks; block_id at most 255 characters;
section text at most 3000 and fields at most 10 of at most 2000 each (text or fields
required); header text plain_text at most 150; context at most 10 elements; actions at
most 25 elements; image alt_text at most 2000 and image_url at most 3000; button text
plain_text at most 75, url at most 3000, value at most 2000, action_id at most 255, style
`primary` or `danger`; a text object is `plain_text` or `mrkdwn` with non-empty text.
A payload with neither `text` nor `blocks` is refused with `no_text`; a broken block with
`invalid_blocks`.
"""

from __future__ import annotations

from typing import Any

MAX_BLOCKS = 50
MESSAGE_BLOCKS = {"section", "divider", "header", "context", "actions", "image",
                  "rich_text", "markdown", "video", "file", "input"}
INTERACTIVE = {"button", "checkboxes", "datepicker", "datetimepicker", "overflow",
               "radio_buttons", "static_select", "external_select", "users_select",
               "conversations_select", "channels_select", "multi_static_select",
               "multi_external_select", "multi_users_select", "multi_conversations_select",
               "multi_channels_select", "timepicker", "image", "plain_text_input",
               "email_text_input", "url_text_input", "number_input", "workflow_button",
               "rich_text_input"}


class _Check:
    def __init__(self) -> None:
        self.problems: list[str] = []

    def fail(self, path: str, why: str) -> None:
        self.problems.append(f"{path}: {why}")

    def limit(self, path: str, value: Any, most: int) -> None:
        if isinstance(value, str) and len(value) > most:
            self.fail(path, f"{len(value)} characters, more than {most}")

    def text(self, path: str, obj: Any, most: int, plain_only: bool = False) -> None:
        """A text composition object."""
        allowed = ("plain_text",) if plain_only else ("plain_text", "mrkdwn")
        if not isinstance(obj, dict) or obj.get("type") not in allowed:
            self.fail(path, f"must be a text object of type {' or '.join(allowed)}")
            return
        text = obj.get("text")
        if not isinstance(text, str) or not text:
            self.fail(path, "text is required and must be a non-empty string")
            return
        self.limit(f"{path}.text", text, most)

    def element(self, path: str, element: Any) -> None:
        if not isinstance(element, dict) or element.get("type") not in INTERACTIVE:
            kind = element.get("type") if isinstance(element, dict) else element
            self.fail(path, f"unknown element type {kind!r}")
            return
        self.limit(f"{path}.action_id", element.get("action_id"), 255)
        if element["type"] == "button":
            self.text(f"{path}.text", element.get("text"), 75, plain_only=True)
            self.limit(f"{path}.url", element.get("url"), 3000)
            self.limit(f"{path}.value", element.get("value"), 2000)
            if element.get("style") not in (None, "primary", "danger"):
                self.fail(f"{path}.style", "must be 'primary' or 'danger'")
        elif element["type"] == "image":
            self.image(path, element)

    def image(self, path: str, obj: dict) -> None:
        if not (obj.get("image_url") or obj.get("slack_file")):
            self.fail(path, "an image needs image_url or slack_file")
        self.limit(f"{path}.image_url", obj.get("image_url"), 3000)
        alt = obj.get("alt_text")
        if not isinstance(alt, str) or not alt:
            self.fail(f"{path}.alt_text", "is required")
        self.limit(f"{path}.alt_text", alt, 2000)

    def block(self, path: str, block: Any) -> None:
        if not isinstance(block, dict) or block.get("type") not in MESSAGE_BLOCKS:
            kind = block.get("type") if isinstance(block, dict) else block
            self.fail(path, f"unknown block type {kind!r}")
            return
        self.limit(f"{path}.block_id", block.get("block_id"), 255)
        kind = block["type"]
        if kind == "section":
            self.section(path, block)
        elif kind == "header":
            self.text(f"{path}.text", block.get("text"), 150, plain_only=True)
        elif kind == "context":
            self.context(path, block.get("elements"))
        elif kind == "actions":
            elements = block.get("elements")
            if not isinstance(elements, list) or not elements:
                self.fail(f"{path}.elements", "at least one element is required")
                return
            if len(elements) > 25:
                self.fail(f"{path}.elements", f"{len(elements)} elements, more than 25")
            for i, element in enumerate(elements):
                self.element(f"{path}.elements[{i}]", element)
        elif kind == "image":
            self.image(path, block)
            if "title" in block:
                self.text(f"{path}.title", block["title"], 2000, plain_only=True)
        elif kind == "markdown":
            if not isinstance(block.get("text"), str) or not block["text"]:
                self.fail(f"{path}.text", "is required")
            self.limit(f"{path}.text", block.get("text"), 12000)

    def section(self, path: str, block: dict) -> None:
        if "text" not in block and not block.get("fields"):
            self.fail(path, "a section needs text or fields")
        if "text" in block:
            self.text(f"{path}.text", block["text"], 3000)
        fields = block.get("fields")
        if fields is not None:
            if not isinstance(fields, list):
                self.fail(f"{path}.fields", "must be an array of text objects")
            else:
                if len(fields) > 10:
                    self.fail(f"{path}.fields", f"{len(fields)} fields, more than 10")
                for i, field in enumerate(fields):
                    self.text(f"{path}.fields[{i}]", field, 2000)
        if "accessory" in block:
            self.element(f"{path}.accessory", block["accessory"])

    def context(self, path: str, elements: Any) -> None:
        if not isinstance(elements, list) or not elements:
            self.fail(f"{path}.elements", "at least one element is required")
            return
        if len(elements) > 10:
            self.fail(f"{path}.elements", f"{len(elements)} elements, more than 10")
        for i, element in enumerate(elements):
            where = f"{path}.elements[{i}]"
            if isinstance(element, dict) and element.get("type") == "image":
                self.image(where, element)
            else:
                self.text(where, element, 3000)


def message_problems(body: Any) -> tuple[str, list[str]]:
    """("", []) for a payload Slack posts, else its error string and the reasons."""
    if not isinstance(body, dict):
        return "invalid_payload", ["payload: must be a JSON object"]
    text, blocks = body.get("text"), body.get("blocks")
    if text is not None and not isinstance(text, str):
        return "invalid_payload", ["text: must be a string"]
    if blocks is None:
        return ("no_text", ["payload: neither text nor blocks"]) if not text else ("", [])
    if not isinstance(blocks, list):
        return "invalid_blocks", ["blocks: must be an array"]
    if not blocks and not text:
        return "no_text", ["payload: no text and no blocks"]
    check = _Check()
    if len(blocks) > MAX_BLOCKS:
        check.fail("blocks", f"{len(blocks)} blocks, more than {MAX_BLOCKS}")
    for i, block in enumerate(blocks):
        check.block(f"blocks[{i}]", block)
    return ("invalid_blocks", check.problems) if check.problems else ("", [])
