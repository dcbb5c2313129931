"""Teams cards and Slack messages: what an alert and a digest show, hostile alert text
rendered inert (mentions, markdown, HTML), and each platform's limits kept by cuts that
say so."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from shared.messages import AlertEvent
from shared.notify.channels import slack, teams
from shared.notify.channels.compose import alert_posts, channel_key, digest_posts
from shared.notify.channels.text import CUT, facts
from shared.notify.rules import parse_rule

TENANT = "3f2b6a10-8c1d-4e5f-9a7b-2c3d4e5f6a7b"
PORTAL = "https://hub.mssp.example/api/portal"
HOSTILE = ("<!channel> <!here> <@U024BE7LH> <at>Everyone</at> @channel *bold* _it_ ~s~ `code` "
           "[click](https://evil.example) <script>alert(1)</script> &amp; # head > quote")
RULE = parse_rule({"name": "SOC", "recipients": [], "channels": [
    {"type": "teams", "name": "soc-teams", "webhook_setting": "TEAMS_SOC"},
    {"type": "slack", "name": "soc-slack", "webhook_setting": "SLACK_SOC"}]}, TENANT)


def _event(title: str = "Suspicious PowerShell", **alert: Any) -> AlertEvent:
    return AlertEvent(
        tenant_id=TENANT, tenant_name="Northwind", alert_id="da123", version="v1",
        change="new", changed={}, alert={
            "id": "da123", "title": title, "severity": "High", "category": "Execution",
            "computerDnsName": "pc-1.northwind.example", "lastUpdateTime": "2026-12-03T07:00:00Z",
            "evidence": [{"entityType": "User", "accountName": "ann", "domainName": "NW"}],
            **alert})


def _texts(node: Any) -> list[str]:
    """Every string shown in a payload (not its keys)."""
    if isinstance(node, dict):
        return [t for k, v in node.items() if k not in ("type", "url", "$schema")
                for t in _texts(v)]
    if isinstance(node, list):
        return [t for v in node for t in _texts(v)]
    return [node] if isinstance(node, str) else []


def _posts(title: str = "Suspicious PowerShell", **alert: Any) -> dict[str, dict[str, Any]]:
    return {p.channel: p.payload for p in alert_posts(RULE, _event(title, **alert), PORTAL,
                                                      "Contoso MSSP")}


def test_a_teams_post_is_an_adaptive_card_1_5_in_the_workflows_envelope():
    card = _posts()["soc-teams"]
    assert card["type"] == "message"
    [attachment] = card["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    content = attachment["content"]
    assert (content["type"], content["version"]) == ("AdaptiveCard", "1.5")
    facts_shown = {f["title"]: f["value"] for b in content["body"] if b["type"] == "FactSet"
                   for f in b["facts"]}
    assert facts_shown == {"Severity": "High", "Tenant": "Northwind",
                           "Device": "pc-1.northwind.example", "User": "NW\\\\ann",
                           "Category": "Execution", "Time": "2026-12-03T07:00:00Z"}
    assert content["body"][0]["color"] == "attention"  # High: red
    urls = [a["url"] for a in content["actions"]]
    assert urls == [f"{PORTAL}/tenants/{TENANT}/alerts/da123",
                    f"https://security.microsoft.com/alerts/da123?tid={TENANT}"]
    assert all(b["type"] in ("TextBlock", "FactSet") for b in content["body"])


def test_a_slack_post_is_block_kit_with_header_fields_context_and_url_buttons():
    message = _posts()["soc-slack"]
    kinds = [b["type"] for b in message["blocks"]]
    assert kinds == ["header", "section", "context", "actions"]
    header = message["blocks"][0]["text"]
    assert header["type"] == "plain_text" and "Suspicious PowerShell" in header["text"]
    assert "🔴" in header["text"]
    fields = [f["text"] for f in message["blocks"][1]["fields"]]
    assert fields[0] == "*Severity*\n🔴 High" and "*Tenant*\nNorthwind" in fields
    assert "*User*\nNW\\ann" in fields
    buttons = message["blocks"][3]["elements"]
    assert [b["url"] for b in buttons] == [f"{PORTAL}/tenants/{TENANT}/alerts/da123",
                                           f"https://security.microsoft.com/alerts/da123"
                                           f"?tid={TENANT}"]
    assert "Northwind" in message["text"]


def test_hostile_text_is_inert_in_slack():
    message = _posts(HOSTILE, category=HOSTILE, computerDnsName=HOSTILE)["soc-slack"]
    shown = "\n".join(_texts(message))
    for live in ("<!channel>", "<!here>", "<@U024BE7LH>", "<script>", "<https://", "@channel"):
        assert live not in shown
    mrkdwn = next(t for t in _texts(message["blocks"][1]) if "*Device*" in t)
    assert "&lt;!channel&gt;" in mrkdwn and "&lt;@U024BE7LH&gt;" in mrkdwn
    assert "&amp;amp;" in mrkdwn  # the text's own "&amp;" shown as typed
    assert re.search(r"(?<!\u200b)\*bold", mrkdwn) is None  # formatting broken up
    assert "@\u2060channel" in mrkdwn


def test_hostile_text_is_inert_in_teams():
    card = _posts(HOSTILE, category=HOSTILE)["soc-teams"]
    shown = "\n".join(_texts(card))
    assert "<at>" not in shown and "<script>" not in shown
    assert "<\u200bat\\>" in shown
    assert "\\*bold\\*" in shown and "\\[click\\](https://evil.example)" in shown
    assert "\\_it\\_" in shown and "\\`code\\`" in shown and "\\# head \\> quote" in shown


def test_long_text_is_cut_and_says_so_within_each_platforms_limits():
    posts = _posts("T" * 10_000, computerDnsName="d" * 10_000)
    header = posts["soc-slack"]["blocks"][0]["text"]["text"]
    assert len(header) <= slack.HEADER_MAX and header.endswith(CUT)
    assert all(len(f["text"]) <= slack.FIELD_MAX for f in posts["soc-slack"]["blocks"][1]["fields"])
    title = posts["soc-teams"]["attachments"][0]["content"]["body"][1]["text"]
    assert title.endswith(CUT) and len(title) < 600
    for payload in posts.values():
        assert len(json.dumps(payload).encode()) < teams.PAYLOAD_BYTES


def test_a_rule_without_links_or_device_shows_neither():
    rule = parse_rule({"name": "quiet", "recipients": [], "include_portal_link": False,
                       "include_device": False, "include_org_name": False, "channels": [
                           {"type": "slack", "name": "s", "webhook_setting": "S"}]}, TENANT)
    [post] = alert_posts(rule, _event(), PORTAL, "Contoso MSSP")
    kinds = [b["type"] for b in post.payload["blocks"]]
    assert "actions" not in kinds
    assert "pc-1" not in json.dumps(post.payload) and "Northwind" not in json.dumps(post.payload)


def test_each_channel_post_has_its_own_ledger_key_per_alert_version():
    event = _event()
    posts = alert_posts(RULE, event, PORTAL, "Contoso MSSP")
    assert [(p.rule_id, p.channel, p.key) for p in posts] == [
        (RULE.id, "soc-teams", channel_key(event.event_id, "soc-teams")),
        (RULE.id, "soc-slack", channel_key(event.event_id, "soc-slack"))]


def _held(n: int, tenants: int = 2) -> list[dict[str, Any]]:
    sev = ("High", "Low", "Medium")
    return [{"tenant": f"{i % tenants:08d}-0000-4000-8000-000000000000",
             "tenant_name": f"Tenant {i % tenants}", "change": "new",
             "alert": {"id": f"a{i}", "title": f"Alert {i} <!here>", "severity": sev[i % 3]}}
            for i in range(n)]


def test_a_digest_is_one_card_grouped_by_tenant_and_severity():
    posts = {p.channel: p for p in digest_posts(RULE, _held(6), "batch1", PORTAL, "C")}
    assert posts["soc-teams"].key == "digest:batch1|channel:soc-teams"
    body = posts["soc-teams"].payload["attachments"][0]["content"]["body"]
    texts = [b["text"] for b in body]
    assert texts[0] == "Digest: 6 alerts for rule SOC"
    tenant0 = texts.index("Tenant 0")
    assert texts[tenant0 + 1] == "High (1)" and texts[tenant0 + 3] == "Medium (1)"
    assert sum("Alert" in t for t in texts) == 6 and "<\u200b!here\\>" in texts[tenant0 + 2]
    blocks = posts["soc-slack"].payload["blocks"]
    sections = [b["text"]["text"] for b in blocks if b["type"] == "section"]
    assert sections[0].startswith("*Tenant 0* · 🔴 High")
    assert "&lt;!here&gt;" in sections[0] and "<!here>" not in json.dumps(sections)


@pytest.mark.parametrize("count", [400, 5000])
def test_a_large_digest_stays_within_limits_and_says_how_many_are_left_out(count):
    posts = {p.channel: p.payload for p in digest_posts(RULE, _held(count, 30), "b", PORTAL,
                                                        "C")}
    for payload in posts.values():
        assert len(json.dumps(payload).encode()) <= teams.PAYLOAD_BYTES
    blocks = posts["soc-slack"]["blocks"]
    assert len(blocks) <= slack.BLOCKS_MAX
    assert all(len(b["text"]["text"]) <= slack.SECTION_MAX for b in blocks
               if b["type"] == "section")
    assert "not listed here (cut)" in blocks[-1]["elements"][0]["text"]
    last = posts["soc-teams"]["attachments"][0]["content"]["body"][-1]["text"]
    assert f"of {count} alerts not listed here (cut)" in last


def test_facts_pick_the_user_from_evidence_or_the_assignee():
    assert facts(_event(), RULE, PORTAL).user == "NW\\ann"
    assert facts(_event(evidence=[], assignedTo="bob@x"), RULE, PORTAL).user == "bob@x"


def _platform_problems(channel: str, payload: dict[str, Any]) -> list[str]:
    """What the platform (as devtools/webhook_schemas encodes its documented rules)
    would refuse in this payload."""
    from devtools.webhook_schemas import adaptive_card, block_kit
    if channel == "soc-teams":
        return adaptive_card.message_problems(payload, len(json.dumps(payload).encode()))
    return block_kit.message_problems(payload)[1]


@pytest.mark.parametrize("title", ["Suspicious PowerShell", HOSTILE, "x" * 20_000])
def test_alert_posts_are_valid_for_each_platform(title):
    for post in alert_posts(RULE, _event(title), PORTAL, "MSSP <b>"):
        assert _platform_problems(post.channel, post.payload) == [], post.channel


@pytest.mark.parametrize("count", [1, 6, 5000])
def test_digest_posts_are_valid_for_each_platform(count):
    for post in digest_posts(RULE, _held(count, 30), "b", PORTAL, "C"):
        assert _platform_problems(post.channel, post.payload) == [], post.channel
