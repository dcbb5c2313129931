"""Adaptive Cards as a Teams Workflows webhook takes them, checked by hand.

No JSON Schema for Adaptive Cards is served to this project offline (the `adaptivecards`
npm package ships none, no PyPI package carries adaptive-card.json), so the documented
rules are encoded here. Sources:

* the schema explorer, adaptivecards.io/explorer (each element's required properties and
  the schema version that introduced it: Media 1.1; ActionSet, RichTextBlock,
  Action.ToggleVisibility 1.2; Action.Execute 1.4; Table 1.5);
* Teams' card reference (learn.microsoft.com, "Cards reference"): Teams renders schema
  versions up to 1.5 (this project's target), and "for Adaptive Cards in Incoming
  Webhooks, all native Adaptive Card schema elements, except Action.Submit, are fully
  supported";
* the Microsoft Teams connector's known limits (learn.microsoft.com/connectors/teams): a
  posted message is limited to about 28 KB, beyond which the action fails with "Request
  Entity too large";
* the Workflows template "Post to a channel when a webhook request is received": the body
  is a message, `{"type": "message", "attachments": [{"contentType":
  "application/vnd.microsoft.card.adaptive", "content": <AdaptiveCard>}]}`.
"""

from __future__ import annotations

from typing import Any

CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
SCHEMA_URLS = ("http://adaptivecards.io/schemas/adaptive-card.json",
               "https://adaptivecards.io/schemas/adaptive-card.json")
VERSIONS = ("1.0", "1.1", "1.2", "1.3", "1.4", "1.5")
MAX_MESSAGE_BYTES = 28 * 1024

# element type -> (version introduced, required properties)
ELEMENTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "TextBlock": ("1.0", ("text",)),
    "Image": ("1.0", ("url",)),
    "Container": ("1.0", ("items",)),
    "ColumnSet": ("1.0", ()),
    "FactSet": ("1.0", ("facts",)),
    "ImageSet": ("1.0", ("images",)),
    "Input.Text": ("1.0", ("id",)),
    "Input.Number": ("1.0", ("id",)),
    "Input.Date": ("1.0", ("id",)),
    "Input.Time": ("1.0", ("id",)),
    "Input.Toggle": ("1.0", ("id", "title")),
    "Input.ChoiceSet": ("1.0", ("id", "choices")),
    "Media": ("1.1", ("sources",)),
    "ActionSet": ("1.2", ("actions",)),
    "RichTextBlock": ("1.2", ("inlines",)),
    "Table": ("1.5", ()),
}
ACTIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "Action.OpenUrl": ("1.0", ("url",)),
    "Action.Submit": ("1.0", ()),
    "Action.ShowCard": ("1.0", ("card",)),
    "Action.ToggleVisibility": ("1.2", ("targetElements",)),
    "Action.Execute": ("1.4", ()),
}
NOT_FROM_A_WEBHOOK = {"Action.Submit"}  # nothing would receive what it submits
TEXT_ONLY = {"TextRun"}  # inside RichTextBlock.inlines (a plain string is allowed too)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


class _Check:
    """Walks one card, collecting every problem with the path where it is."""

    def __init__(self, version: str) -> None:
        self.version = version
        self.problems: list[str] = []

    def fail(self, path: str, why: str) -> None:
        self.problems.append(f"{path}: {why}")

    def typed(self, path: str, item: Any, known: dict[str, tuple[str, tuple[str, ...]]],
              what: str) -> str | None:
        """The item's type if it is a known one of `known` allowed at this card version."""
        if not isinstance(item, dict):
            self.fail(path, f"an {what} must be an object")
            return None
        kind = item.get("type")
        if kind not in known:
            self.fail(path, f"unknown {what} type {kind!r}")
            return None
        since, required = known[kind]
        if _version(since) > _version(self.version):
            self.fail(path, f"{kind} needs schema version {since}, the card declares "
                            f"{self.version}")
        for name in required:
            if item.get(name) in (None, "", []):
                self.fail(path, f"{kind} requires {name!r}")
        return kind

    def elements(self, path: str, items: Any) -> None:
        if items is None:
            return
        if not isinstance(items, list):
            self.fail(path, "must be an array of elements")
            return
        for i, item in enumerate(items):
            self.element(f"{path}[{i}]", item)

    def actions(self, path: str, actions: Any) -> None:
        if actions is None:
            return
        if not isinstance(actions, list):
            self.fail(path, "must be an array of actions")
            return
        for i, action in enumerate(actions):
            where = f"{path}[{i}]"
            kind = self.typed(where, action, ACTIONS, "action")
            if kind in NOT_FROM_A_WEBHOOK:
                self.fail(where, f"{kind} is not supported in a card posted by a webhook")
            if kind == "Action.ShowCard" and isinstance(action.get("card"), dict):
                self.card(f"{where}.card", action["card"], nested=True)
            if kind == "Action.OpenUrl" and not isinstance(action.get("url"), str):
                self.fail(where, "Action.OpenUrl url must be a string")

    def element(self, path: str, item: Any) -> None:
        kind = self.typed(path, item, ELEMENTS, "element")
        if kind is None:
            return
        if kind == "TextBlock" and not isinstance(item.get("text"), str):
            self.fail(path, "TextBlock text must be a string")
        elif kind == "Container":
            self.elements(f"{path}.items", item.get("items"))
        elif kind == "ColumnSet":
            for i, column in enumerate(item.get("columns") or []):
                where = f"{path}.columns[{i}]"
                if not isinstance(column, dict) or column.get("type", "Column") != "Column":
                    self.fail(where, "a ColumnSet holds only Column objects")
                    continue
                self.elements(f"{where}.items", column.get("items"))
        elif kind == "FactSet":
            for i, fact in enumerate(item.get("facts") or []):
                if not (isinstance(fact, dict) and isinstance(fact.get("title"), str)
                        and isinstance(fact.get("value"), str)):
                    self.fail(f"{path}.facts[{i}]", "a Fact requires title and value strings")
        elif kind == "ImageSet":
            for i, image in enumerate(item.get("images") or []):
                if not (isinstance(image, dict) and image.get("url")):
                    self.fail(f"{path}.images[{i}]", "an Image requires 'url'")
        elif kind == "ActionSet":
            self.actions(f"{path}.actions", item.get("actions"))
        elif kind == "RichTextBlock":
            for i, inline in enumerate(item.get("inlines") or []):
                if not (isinstance(inline, str) or (isinstance(inline, dict) and inline.get(
                        "type") in TEXT_ONLY and isinstance(inline.get("text"), str))):
                    self.fail(f"{path}.inlines[{i}]", "inlines are strings or TextRuns")
        elif kind == "Table":
            for r, row in enumerate(item.get("rows") or []):
                for c, cell in enumerate((row or {}).get("cells") or []):
                    self.elements(f"{path}.rows[{r}].cells[{c}].items",
                                  (cell or {}).get("items"))
        select = item.get("selectAction")
        if select is not None:
            self.actions(f"{path}.selectAction", [select])

    def card(self, path: str, card: Any, nested: bool = False) -> None:
        if not isinstance(card, dict):
            self.fail(path, "the card must be an object")
            return
        if card.get("type") != "AdaptiveCard":
            self.fail(path, "type must be 'AdaptiveCard'")
        self.elements(f"{path}.body", card.get("body"))
        self.actions(f"{path}.actions", card.get("actions"))
        if not nested and not card.get("body") and not card.get("actions"):
            self.fail(path, "the card shows nothing (no body, no actions)")


def card_problems(card: Any) -> list[str]:
    """Every way `card` breaks the Adaptive Card schema as Teams renders it ([] if none)."""
    if not isinstance(card, dict):
        return ["card: the card must be an object"]
    problems = []
    version = card.get("version")
    if version not in VERSIONS:
        problems.append(f"card.version: {version!r} is not one of {', '.join(VERSIONS)} "
                        "(Teams renders up to 1.5)")
        version = VERSIONS[-1]
    schema = card.get("$schema")
    if schema is not None and schema not in SCHEMA_URLS:
        problems.append(f"card.$schema: {schema!r} is not the Adaptive Card schema")
    check = _Check(version)
    check.card("card", card)
    return problems + check.problems


def message_problems(body: Any, size: int) -> list[str]:
    """What a Teams Workflows webhook would refuse in a posted message of `size` bytes."""
    if size > MAX_MESSAGE_BYTES:
        return [f"message: {size} bytes, over the {MAX_MESSAGE_BYTES} byte limit "
                "(Request Entity too large)"]
    if not isinstance(body, dict):
        return ["message: the body must be a JSON object"]
    problems = []
    if body.get("type") != "message":
        problems.append("message.type: must be 'message'")
    attachments = body.get("attachments")
    if not isinstance(attachments, list) or not attachments:
        return [*problems, "message.attachments: one Adaptive Card attachment is required"]
    for i, attachment in enumerate(attachments):
        where = f"attachments[{i}]"
        if not isinstance(attachment, dict):
            problems.append(f"{where}: must be an object")
            continue
        if attachment.get("contentType") != CARD_CONTENT_TYPE:
            problems.append(f"{where}.contentType: must be {CARD_CONTENT_TYPE!r}")
        problems += [f"{where}.{p}" for p in card_problems(attachment.get("content"))]
    return problems
