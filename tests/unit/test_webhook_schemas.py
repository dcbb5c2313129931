"""The local receiver's schema checks: the platforms' own documented examples pass, and
each documented rule or limit, broken, is refused with a reason naming where."""

from __future__ import annotations

import copy
import json

import pytest

from devtools.webhook_schemas import card_problems, slack_problems, teams_problems

# Microsoft's example, "Send Adaptive Cards using an Incoming Webhook" (Teams docs)
TEAMS_EXAMPLE = {
    "type": "message",
    "attachments": [{
        "contentType": "application/vnd.microsoft.card.adaptive",
        "contentUrl": None,
        "content": {
            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "type": "AdaptiveCard",
            "version": "1.2",
            "body": [{"type": "TextBlock", "text": "For Samples and Templates, see "
                      "[https://adaptivecards.io/samples](https://adaptivecards.io/samples)"}],
        },
    }],
}

# Slack's example on the incoming webhooks page (docs.slack.dev), with an actions block
# from the Block Kit reference
SLACK_EXAMPLE = {
    "text": "Danny Torrence left a 1 star review for your property.",
    "blocks": [
        {"type": "section", "text": {"type": "mrkdwn", "text":
                                     "Danny Torrence left the following review for your "
                                     "property:"}},
        {"type": "section", "block_id": "section567",
         "text": {"type": "mrkdwn", "text": "<https://example.com|Overlook Hotel> \n :star: "
                  "\n Doors had too many axe holes, guest in room 237 was far too rowdy."},
         "accessory": {"type": "image", "image_url": "https://example.com/256x256bb.jpg",
                       "alt_text": "Haunted hotel image"}},
        {"type": "section", "block_id": "section789",
         "fields": [{"type": "mrkdwn", "text": "*Average Rating*\n1.0"}]},
        {"type": "header", "text": {"type": "plain_text", "text": "A header"}},
        {"type": "divider"},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": "Last updated today"}]},
        {"type": "actions", "elements": [
            {"type": "button", "text": {"type": "plain_text", "text": "Open alert"},
             "url": "https://hub.example/alerts/1", "style": "primary"}]},
    ],
}


def card(**changes):
    content = copy.deepcopy(TEAMS_EXAMPLE["attachments"][0]["content"])
    content.update(changes)
    return content


def teams(content):
    body = copy.deepcopy(TEAMS_EXAMPLE)
    body["attachments"][0]["content"] = content
    return body


def test_the_documented_examples_pass():
    assert teams_problems(TEAMS_EXAMPLE, len(json.dumps(TEAMS_EXAMPLE))) == []
    assert slack_problems(SLACK_EXAMPLE) == ("", [])
    assert slack_problems({"text": "Hello, world."}) == ("", [])


def test_a_rich_card_of_every_version_passes():
    full = card(version="1.5", body=[
        {"type": "Container", "style": "attention", "items": [
            {"type": "TextBlock", "text": "High", "color": "attention", "weight": "bolder"},
            {"type": "ColumnSet", "columns": [
                {"type": "Column", "items": [{"type": "Image", "url": "https://x/i.png"}]}]},
            {"type": "FactSet", "facts": [{"title": "Tenant", "value": "Contoso"}]}]},
        {"type": "RichTextBlock", "inlines": ["plain", {"type": "TextRun", "text": "run"}]},
        {"type": "Table", "rows": [{"type": "TableRow", "cells": [
            {"type": "TableCell", "items": [{"type": "TextBlock", "text": "cell"}]}]}]},
        {"type": "ActionSet", "actions": [{"type": "Action.OpenUrl", "title": "Open",
                                           "url": "https://hub.example/a/1"}]}],
        actions=[{"type": "Action.OpenUrl", "title": "Defender",
                  "url": "https://security.microsoft.com/alerts/1"},
                 {"type": "Action.ShowCard", "title": "More", "card": {
                     "type": "AdaptiveCard", "body": [{"type": "TextBlock", "text": "x"}]}}])
    assert card_problems(full) == []


@pytest.mark.parametrize("content, reason", [
    (card(version="1.6"), "card.version: '1.6' is not one of"),
    (card(version=None), "card.version: None is not one of"),
    (card(**{"$schema": "https://example.com/other.json"}), "card.$schema:"),
    (card(type="HeroCard"), "card: type must be 'AdaptiveCard'"),
    (card(body=[{"type": "Marquee", "text": "x"}]), "card.body[0]: unknown element type"),
    (card(body=[{"type": "TextBlock"}]), "card.body[0]: TextBlock requires 'text'"),
    (card(body=[{"type": "Image"}]), "card.body[0]: Image requires 'url'"),
    (card(version="1.0", body=[{"type": "ActionSet", "actions": [
        {"type": "Action.OpenUrl", "url": "https://x"}]}]),
     "card.body[0]: ActionSet needs schema version 1.2"),
    (card(actions=[{"type": "Action.Submit", "title": "Close"}]),
     "card.actions[0]: Action.Submit is not supported in a card posted by a webhook"),
    (card(version="1.4", body=[{"type": "Table"}]), "card.body[0]: Table needs schema version 1.5"),
    (card(body=[{"type": "FactSet", "facts": [{"title": "t"}]}]),
     "card.body[0].facts[0]: a Fact requires title and value"),
    (card(body=[{"type": "Container", "items": [{"type": "TextBlock", "text": 5}]}]),
     "card.body[0].items[0]: TextBlock text must be a string"),
    (card(actions=[{"type": "Action.OpenUrl", "title": "no url"}]),
     "card.actions[0]: Action.OpenUrl requires 'url'"),
    (card(actions=[{"type": "Action.Http", "url": "https://x"}]),
     "card.actions[0]: unknown action type 'Action.Http'"),
    (card(body=[], actions=[]), "card: the card shows nothing"),
])
def test_each_adaptive_card_rule_broken_is_named(content, reason):
    problems = teams_problems(teams(content), 100)
    assert any(p.startswith(f"attachments[0].{reason}") for p in problems), problems


@pytest.mark.parametrize("body, reason", [
    ({"type": "message"}, "message.attachments: one Adaptive Card attachment is required"),
    ({"type": "note", "attachments": TEAMS_EXAMPLE["attachments"]}, "message.type:"),
    ({"type": "message", "attachments": [{**TEAMS_EXAMPLE["attachments"][0],
                                          "contentType": "application/json"}]},
     "attachments[0].contentType:"),
    ([1, 2], "message: the body must be a JSON object"),
])
def test_the_teams_envelope_is_checked(body, reason):
    assert any(p.startswith(reason) for p in teams_problems(body, 100))


def test_a_message_over_28_kb_is_too_large():
    big = teams(card(body=[{"type": "TextBlock", "text": "x" * 29_000}]))
    size = len(json.dumps(big).encode())
    assert teams_problems(big, size)[0].startswith(f"message: {size} bytes, over the 28672")
    assert teams_problems(TEAMS_EXAMPLE, 28 * 1024) == []


def slack(*blocks, text=None):
    body = {"blocks": list(blocks)}
    if text is not None:
        body["text"] = text
    return body


def section(text):
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def button(label, url="https://hub.example/a"):
    return {"type": "button", "text": {"type": "plain_text", "text": label}, "url": url}


@pytest.mark.parametrize("body, error, reason", [
    ({}, "no_text", "payload: neither text nor blocks"),
    ({"text": ""}, "no_text", "payload: neither text nor blocks"),
    (slack(), "no_text", "payload: no text and no blocks"),
    ("text", "invalid_payload", "payload: must be a JSON object"),
    ({"text": 5}, "invalid_payload", "text: must be a string"),
    (slack(*[{"type": "divider"}] * 51), "invalid_blocks", "blocks: 51 blocks, more than 50"),
    (slack({"type": "carousel"}), "invalid_blocks", "blocks[0]: unknown block type"),
    (slack(section("x" * 3001)), "invalid_blocks",
     "blocks[0].text.text: 3001 characters, more than 3000"),
    (slack(section("")), "invalid_blocks", "blocks[0].text: text is required"),
    (slack({"type": "section"}), "invalid_blocks", "blocks[0]: a section needs text or"),
    (slack({"type": "section", "fields": [{"type": "mrkdwn", "text": "f"}] * 11}),
     "invalid_blocks", "blocks[0].fields: 11 fields, more than 10"),
    (slack({"type": "section", "fields": [{"type": "mrkdwn", "text": "f" * 2001}]}),
     "invalid_blocks", "blocks[0].fields[0].text: 2001 characters, more than 2000"),
    (slack({"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}),
     "invalid_blocks", "blocks[0].text.text: 151 characters, more than 150"),
    (slack({"type": "header", "text": {"type": "mrkdwn", "text": "*h*"}}),
     "invalid_blocks", "blocks[0].text: must be a text object of type plain_text"),
    (slack({"type": "actions", "elements": [button("b")] * 26}), "invalid_blocks",
     "blocks[0].elements: 26 elements, more than 25"),
    (slack({"type": "actions", "elements": [button("b" * 76)]}), "invalid_blocks",
     "blocks[0].elements[0].text.text: 76 characters, more than 75"),
    (slack({"type": "actions", "elements": [button("b", "https://x/" + "u" * 3000)]}),
     "invalid_blocks", "blocks[0].elements[0].url: 3010 characters, more than 3000"),
    (slack({"type": "actions", "elements": [{**button("b"), "style": "warning"}]}),
     "invalid_blocks", "blocks[0].elements[0].style: must be 'primary' or 'danger'"),
    (slack({"type": "context", "elements": [{"type": "mrkdwn", "text": "c"}] * 11}),
     "invalid_blocks", "blocks[0].elements: 11 elements, more than 10"),
    (slack({"type": "image", "image_url": "https://x/i.png"}), "invalid_blocks",
     "blocks[0].alt_text: is required"),
    (slack({"type": "divider", "block_id": "b" * 256}), "invalid_blocks",
     "blocks[0].block_id: 256 characters, more than 255"),
])
def test_each_block_kit_rule_broken_is_named(body, error, reason):
    got, reasons = slack_problems(body)
    assert got == error
    assert any(r.startswith(reason) for r in reasons), reasons


def test_at_the_limits_block_kit_passes():
    body = slack(section("x" * 3000),
                 {"type": "header", "text": {"type": "plain_text", "text": "h" * 150}},
                 {"type": "section", "fields": [{"type": "mrkdwn", "text": "f" * 2000}] * 10},
                 {"type": "actions", "elements": [button("b" * 75)] * 25},
                 *[{"type": "divider"}] * 46, text="fallback")
    assert len(body["blocks"]) == 50
    assert slack_problems(body) == ("", [])
