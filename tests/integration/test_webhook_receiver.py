"""`make run ARGS=--webhook-receiver`: the local Teams and Slack webhooks answer over HTTP
as each platform does, refuse (and record why) what the platform would refuse, can be
told to answer 404/410/429/500, and show what was posted on a page where nothing runs."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from html.parser import HTMLParser

import pytest
import requests

from devtools.webhook_receiver import WebhookReceiver
from tests.conftest import ROOT
from tests.unit.test_webhook_schemas import SLACK_EXAMPLE, TEAMS_EXAMPLE

HOSTILE = "<script>alert(1)</script><img src=x onerror=alert(2)> <!channel> <at>all</at>"


@pytest.fixture
def receiver(tmp_path):
    lines: list[str] = []
    receiver = WebhookReceiver(tmp_path / "webhooks.jsonl", echo=lines.append).start()
    receiver.lines = lines
    yield receiver
    receiver.stop()


def post(receiver, platform, name, body, **kwargs):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(receiver.url(platform, name), data=data, timeout=5,
                         headers={"Content-Type": "application/json"}, **kwargs)


def teams_card(*texts):
    body = json.loads(json.dumps(TEAMS_EXAMPLE))
    body["attachments"][0]["content"]["body"] = [{"type": "TextBlock", "text": t}
                                                 for t in texts]
    return body


def test_both_shapes_are_taken_and_answered_as_each_platform_does(receiver, tmp_path):
    teams = post(receiver, "teams", "soc", TEAMS_EXAMPLE)
    assert (teams.status_code, teams.content) == (202, b"")
    slack = post(receiver, "slack", "soc", SLACK_EXAMPLE)
    assert (slack.status_code, slack.text) == (200, "ok")
    posts = receiver.posts()
    assert [(p["platform"], p["hook"], p["status"], p["accepted"]) for p in posts] == [
        ("teams", "soc", 202, True), ("slack", "soc", 200, True)]
    assert posts[0]["body"] == TEAMS_EXAMPLE and posts[1]["body"] == SLACK_EXAMPLE
    # the same over the control API, filtered, and kept on disk
    listed = requests.get(f"{receiver.base_url}/_control/posts?platform=slack", timeout=5)
    assert [p["body"] for p in listed.json()] == [SLACK_EXAMPLE]
    kept = [json.loads(line) for line in (tmp_path / "webhooks.jsonl").read_text().splitlines()]
    assert [p["seq"] for p in kept] == [1, 2]
    assert "teams soc  202  For Samples" in receiver.lines[0]
    assert receiver.settings() == {"TEAMS_WEBHOOK_SOC": f"{receiver.base_url}/teams/soc",
                                   "SLACK_WEBHOOK_SOC": f"{receiver.base_url}/slack/soc"}


@pytest.mark.parametrize("body, status, error, reason", [
    (b"{not json", 400, "invalid_payload", "the body is not JSON"),
    ({"channel": "#x"}, 400, "no_text", "payload: neither text nor blocks"),
    ({"blocks": [{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}]},
     400, "invalid_blocks", "blocks[0].text.text: 151 characters, more than 150"),
    ({"blocks": [{"type": "divider"}] * 51}, 400, "invalid_blocks",
     "blocks: 51 blocks, more than 50"),
])
def test_slack_refuses_what_slack_would_and_records_why(receiver, body, status, error,
                                                        reason):
    answer = post(receiver, "slack", "soc", body)
    assert (answer.status_code, answer.text) == (status, error)
    [kept] = receiver.posts()
    assert not kept["accepted"] and kept["error"] == error
    assert any(r.startswith(reason) for r in kept["reasons"]), kept["reasons"]


@pytest.mark.parametrize("body, status, code, reason", [
    (b"<html>", 400, "InvalidRequestContent", "the body is not JSON"),
    ({"text": "a connector card"}, 400, "InvalidRequestContent",
     "message.type: must be 'message'"),
    (teams_card(), 400, "InvalidRequestContent", "attachments[0].card: the card shows"),
    (teams_card("x" * 29_000), 413, "RequestEntityTooLarge", "message: "),
])
def test_teams_refuses_what_teams_would_and_records_why(receiver, body, status, code,
                                                        reason):
    answer = post(receiver, "teams", "soc", body)
    assert answer.status_code == status
    assert answer.json()["error"]["code"] == code
    [kept] = receiver.posts()
    assert not kept["accepted"] and kept["error"] == code
    assert any(r.startswith(reason) for r in kept["reasons"]), kept["reasons"]
    assert reason in answer.json()["error"]["message"] or reason == "the body is not JSON"


def test_a_card_version_teams_does_not_render_is_refused(receiver):
    body = json.loads(json.dumps(TEAMS_EXAMPLE))
    body["attachments"][0]["content"]["version"] = "1.6"
    answer = post(receiver, "teams", "soc", body)
    assert answer.status_code == 400 and "'1.6' is not one of" in answer.text


@pytest.mark.parametrize("status, slack_text, teams_code", [
    (404, "no_service", "WorkflowNotFound"),
    (410, "channel_is_archived", "WorkflowNotFound"),
    (500, "rollup_error", "InternalServerError"),
])
def test_a_hook_told_to_fail_answers_so_until_told_otherwise(receiver, status, slack_text,
                                                             teams_code):
    for platform in ("slack", "teams"):
        told = requests.post(f"{receiver.base_url}/_control/answer/{platform}/gone",
                             json={"status": status}, timeout=5)
        assert told.status_code == 204
    for _ in range(2):
        assert (post(receiver, "slack", "gone", SLACK_EXAMPLE).status_code,
                post(receiver, "slack", "gone", SLACK_EXAMPLE).text) == (status, slack_text)
        answer = post(receiver, "teams", "gone", TEAMS_EXAMPLE)
        assert (answer.status_code, answer.json()["error"]["code"]) == (status, teams_code)
    # other hooks are not affected; and once told otherwise, the hook takes posts again
    assert post(receiver, "slack", "soc", SLACK_EXAMPLE).status_code == 200
    requests.delete(f"{receiver.base_url}/_control/answer/slack/gone", timeout=5)
    assert post(receiver, "slack", "gone", SLACK_EXAMPLE).status_code == 200
    refused = receiver.posts(hook="gone")[:-1]
    assert {(p["platform"], p["error"], p["accepted"]) for p in refused} == {
        ("slack", slack_text, False), ("teams", teams_code, False)}
    assert requests.post(f"{receiver.base_url}/_control/answer/slack/x", json={
        "status": 429, "times": 0}, timeout=5).status_code == 400


@pytest.mark.parametrize("platform, ok, body", [("slack", 200, SLACK_EXAMPLE),
                                                ("teams", 202, TEAMS_EXAMPLE)])
def test_429_with_retry_after_then_ok(receiver, platform, ok, body):
    receiver.answer(platform, "busy", 429, times=2, retry_after=3)
    first, second, third = (post(receiver, platform, "busy", body) for _ in range(3))
    assert [first.status_code, second.status_code, third.status_code] == [429, 429, ok]
    assert first.headers["Retry-After"] == "3" and "Retry-After" not in third.headers
    if platform == "slack":
        assert first.text == "rate_limited"
    else:
        assert first.json()["error"]["code"] == "WorkflowRequestsThrottled"
    assert [p["accepted"] for p in receiver.posts()] == [False, False, True]


def test_reset_forgets_posts_and_answers(receiver):
    receiver.answer("slack", "soc", 410)
    post(receiver, "slack", "soc", SLACK_EXAMPLE)
    assert requests.post(f"{receiver.base_url}/_control/reset", timeout=5).status_code == 204
    assert receiver.posts() == []
    assert post(receiver, "slack", "soc", SLACK_EXAMPLE).status_code == 200


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, list]] = []
        self.text = ""

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, attrs))

    def handle_data(self, data):
        self.text += data


def test_the_page_shows_hostile_content_escaped_and_runs_nothing(receiver):
    post(receiver, "teams", "soc", teams_card(HOSTILE))
    post(receiver, "slack", "soc", {"text": HOSTILE, "blocks": [
        {"type": "section", "text": {"type": "mrkdwn", "text": HOSTILE}}]})
    post(receiver, "slack", "<i>odd", {"text": 5})  # a refused post: its name too
    page = requests.get(receiver.base_url + "/", timeout=5)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    parsed = _Tags()
    parsed.feed(page.text)
    tags = {tag for tag, _ in parsed.tags}
    assert not tags & {"script", "img", "i", "at", "iframe"}, tags
    assert not any(name.startswith("on") for _, attrs in parsed.tags for name, _ in attrs)
    assert HOSTILE in parsed.text  # shown, as text
    assert "<i>odd" in parsed.text and "text: must be a string" in parsed.text
    assert parsed.text.index("#3") < parsed.text.index("#1")  # newest first


def test_unknown_paths_and_oversized_bodies_are_refused(receiver):
    assert requests.post(f"{receiver.base_url}/discord/x", data=b"{}",
                         timeout=5).status_code == 404
    assert requests.get(f"{receiver.base_url}/slack/soc", timeout=5).status_code == 404
    too_big = post(receiver, "slack", "soc", b"x" * (1024 * 1024 + 1))
    assert too_big.status_code == 413 and receiver.posts() == []


def test_it_runs_alone_and_stops_on_sigterm(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "devtools.webhook_receiver", "--keep",
                             str(tmp_path / "posts.jsonl")], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        first = proc.stdout.readline()
        base = first.split(" on ", 1)[1].strip().rstrip("/")
        answer = requests.post(f"{base}/slack/ops", json={"text": "hi"}, timeout=5)
        assert (answer.status_code, answer.text) == (200, "ok")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    assert json.loads((tmp_path / "posts.jsonl").read_text())["body"] == {"text": "hi"}


def test_wait_for_returns_when_posts_arrive_and_names_a_shortfall(receiver):
    later = threading.Timer(0.2, post, (receiver, "slack", "soc", SLACK_EXAMPLE))
    later.start()
    assert [p["status"] for p in receiver.wait_for(1, "slack", "soc", timeout=10)] == [200]
    with pytest.raises(TimeoutError, match="fewer than 2 posts to slack/soc"):
        receiver.wait_for(2, "slack", "soc", timeout=0.2)
