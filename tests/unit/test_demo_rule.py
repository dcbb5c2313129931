"""`make run`'s demo rule: with --webhook-receiver it also posts to the receiver's Teams
and Slack hooks (naming the settings the receiver exports); a later run without the
receiver takes those channels off again; the MSSP's own edits are left alone."""

from __future__ import annotations

import dataclasses

from devtools.run import DEMO_CHANNELS, DEMO_RULE, seed_rule
from devtools.webhook_receiver import WebhookReceiver
from shared.notify.rules import GLOBAL, parse_rule
from shared.storage.memory.notify import MemoryRules

OWN = {"type": "slack", "name": "ours", "webhook_setting": "SLACK_OURS"}


def test_the_demo_channels_name_the_settings_the_receiver_exports():
    receiver = WebhookReceiver(echo=lambda _line: None)  # bound, not started
    try:
        exported = receiver.settings()
    finally:
        receiver.server.server_close()
    assert {c["webhook_setting"] for c in DEMO_CHANNELS} == set(exported)
    for channel in DEMO_CHANNELS:
        assert f"/{channel['type']}/" in exported[channel["webhook_setting"]]


def test_with_the_receiver_the_demo_rule_posts_to_teams_and_slack_once_seeded():
    rules = MemoryRules()
    assert seed_rule(rules, channels=True)
    [rule] = rules.list(GLOBAL)
    assert rule.name == DEMO_RULE and rule.channels == DEMO_CHANNELS
    assert [r["address"] for r in rule.recipients] == ["soc@mssp.example"]
    assert not seed_rule(rules, channels=True)  # a restart writes nothing
    assert rules.list(GLOBAL) == [rule]


def test_a_run_without_the_receiver_takes_the_demo_channels_off_and_back_on():
    rules = MemoryRules()
    assert seed_rule(rules)
    [rule] = rules.list(GLOBAL)
    assert rule.channels == []
    assert seed_rule(rules, channels=True)  # storage kept from a run without it
    assert rules.get(GLOBAL, rule.id).channels == DEMO_CHANNELS
    rules.save(dataclasses.replace(rules.get(GLOBAL, rule.id),
                                   channels=[*DEMO_CHANNELS, OWN]))
    assert seed_rule(rules)  # no receiver: its channels would fail; the MSSP's stays
    assert rules.get(GLOBAL, rule.id).channels == [OWN]
    assert seed_rule(rules, channels=True)
    assert rules.get(GLOBAL, rule.id).channels == [OWN, *DEMO_CHANNELS]


def test_rules_of_the_mssps_own_are_left_alone():
    rules = MemoryRules()
    own = rules.save(parse_rule({"name": "Ours", "recipients": ["a@mssp.example"]}, GLOBAL))
    assert not seed_rule(rules, channels=True)
    assert rules.list(GLOBAL) == [own]
    only_channels = rules.save(parse_rule({"name": DEMO_RULE, "recipients": [],
                                           "channels": DEMO_CHANNELS}, GLOBAL))
    assert not seed_rule(rules)  # taking them off would leave a rule sending nothing
    assert rules.get(GLOBAL, only_channels.id).channels == DEMO_CHANNELS
