"""`make run ARGS=--webhook-receiver`: a local stand-in for the Teams and Slack webhooks a
notification rule posts to. It checks each payload as the platform would (the schema rules
in devtools/webhook_schemas/), answers as the platform does, keeps what was posted, and
shows it on a page. Nothing is relayed anywhere.

    POST /teams/<name>    a Teams Workflows "post to a channel when a webhook request is
                          received" URL: a message with an Adaptive Card attachment
    POST /slack/<name>    a Slack incoming webhook: {"text"?, "blocks"?}
    GET  /                what was posted, newest first (escaped, no script)
    GET  /_control/posts  the same as JSON (?platform=teams|slack&hook=<name>)
    POST /_control/answer/<platform>/<name>   {"status": 404|410|429|500, "times": n?,
                          "retry_after": s?}: that hook answers so (n times, or until told
                          otherwise); DELETE there makes it answer normally again
    POST /_control/reset  forget every post and every such answer

`python -m devtools.webhook_receiver [--port N] [--keep FILE]` runs it alone.

The answers follow what each platform documents:

* Slack, api.slack.com changelog 2016-05-17 "Improving error conditions for Incoming
  Webhooks" and the incoming webhooks page (docs.slack.dev): 200 with the body `ok`; 400
  `invalid_payload` (not JSON), `invalid_blocks`, `no_text`; 404 `no_service` (a removed
  or disabled webhook); 410 `channel_is_archived`; 429 with Retry-After (rate limits,
  about one message a second per webhook); 500 `rollup_error`. Plain-text bodies.
* Teams Workflows (a Power Automate request trigger; learn.microsoft.com "Asynchronous
  response" and the Teams connector's known limits): 202 Accepted with an empty body;
  errors as Logic Apps write them, `{"error": {"code", "message"}}`: 400 for content it
  cannot take, 404 `WorkflowNotFound` (the flow was deleted), 413 when the message is over
  about 28 KB ("Request Entity too large"), 429 `WorkflowRequestsThrottled` with
  Retry-After, 500. The real trigger accepts a malformed card with 202 and fails the
  flow's run afterwards, where no sender sees it; this receiver answers 400 at once
  instead, so a test sees the reason.
"""

from __future__ import annotations

import argparse
import html
import json
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from devtools.webhook_schemas import slack_problems, teams_problems
from shared.logsafe import clean

PLATFORMS = ("teams", "slack")
MAX_BODY = 1024 * 1024
SLACK_ERRORS = {400: "invalid_payload", 403: "action_prohibited", 404: "no_service",
                410: "channel_is_archived", 429: "rate_limited", 500: "rollup_error"}
TEAMS_ERRORS = {400: "InvalidRequestContent", 404: "WorkflowNotFound",
                410: "WorkflowNotFound", 413: "RequestEntityTooLarge",
                429: "WorkflowRequestsThrottled", 500: "InternalServerError"}


@dataclass
class Answer:
    """What a hook has been told to answer instead of taking the post."""
    status: int
    times: int | None = None  # None: until told otherwise
    retry_after: int = 1


@dataclass
class Reply:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()


def slack_reply(status: int, error: str = "", retry_after: int = 1) -> Reply:
    text = "ok" if status == 200 else error or SLACK_ERRORS.get(status, "rollup_error")
    extra = (("Retry-After", str(retry_after)),) if status == 429 else ()
    return Reply(status, text.encode(), headers=extra)


def teams_reply(status: int, message: str = "", retry_after: int = 1) -> Reply:
    if status == 202:
        return Reply(202)
    code = TEAMS_ERRORS.get(status, "InternalServerError")
    body = json.dumps({"error": {"code": code, "message": message or code}}).encode()
    extra = (("Retry-After", str(retry_after)),) if status == 429 else ()
    return Reply(status, body, "application/json; charset=utf-8", extra)


def _parts(path: str) -> list[str]:
    """The path's segments, each percent-decoded (a hook's name may be any text)."""
    return [unquote(part) for part in urlsplit(path).path.strip("/").split("/")]


def texts(value: Any, limit: int = 6) -> list[str]:
    """The first few `text`/`title` strings of a payload: what a person would read."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if len(found) >= limit:
            return
        if isinstance(node, dict):
            for key in ("text", "title", "value"):
                if isinstance(node.get(key), str) and node[key]:
                    found.append(node[key])
            for child in node.values():
                if isinstance(child, dict | list):
                    walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(value)
    return found[:limit]


class WebhookReceiver:
    def __init__(self, path: Path | None = None, echo: Callable[[str], None] = print,
                 port: int = 0) -> None:
        self.path, self.echo = path, echo
        if path:
            path.parent.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()
        self.arrived = threading.Condition(self.lock)
        self.posted: list[dict[str, Any]] = []
        self.answers: dict[tuple[str, str], Answer] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass  # one line per post is echoed instead

            def _send(self, reply: Reply) -> None:
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                self.send_header("Content-Length", str(len(reply.body)))
                self.send_header("X-Content-Type-Options", "nosniff")
                for name, value in reply.headers:
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(reply.body)

            def _body(self) -> bytes | None:
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:  # read (up to a point) so the sender sees the 413
                    self.close_connection = True
                    left = min(length, 16 * MAX_BODY)
                    while left > 0 and (chunk := self.rfile.read(min(left, 65536))):
                        left -= len(chunk)
                    return None
                return self.rfile.read(length)

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                if url.path == "/":
                    page = receiver.page().encode()
                    self._send(Reply(200, page, "text/html; charset=utf-8", (
                        ("Content-Security-Policy",
                         "default-src 'none'; style-src 'unsafe-inline'"),)))
                elif url.path == "/_control/posts":
                    query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                    body = json.dumps(receiver.posts(query.get("platform"),
                                                     query.get("hook"))).encode()
                    self._send(Reply(200, body, "application/json"))
                else:
                    self._send(Reply(404, b"not found"))

            def do_POST(self) -> None:
                raw = self._body()
                parts = _parts(self.path)
                if raw is None:
                    self._send(Reply(413, b"too large"))
                elif len(parts) == 2 and parts[0] in PLATFORMS and parts[1]:
                    self._send(receiver.take(parts[0], parts[1], raw))
                elif parts[:2] == ["_control", "answer"] and len(parts) == 4:
                    try:
                        told = json.loads(raw or b"{}")
                        receiver.answer(parts[2], parts[3], int(told["status"]),
                                        told.get("times"), int(told.get("retry_after", 1)))
                    except (ValueError, KeyError, TypeError) as exc:
                        self._send(Reply(400, f"bad answer: {exc}".encode()))
                        return
                    self._send(Reply(204))
                elif parts == ["_control", "reset"]:
                    receiver.reset()
                    self._send(Reply(204))
                else:
                    self._send(Reply(404, b"not found"))

            def do_DELETE(self) -> None:
                parts = _parts(self.path)
                if parts[:2] == ["_control", "answer"] and len(parts) == 4:
                    receiver.answer(parts[2], parts[3], None)
                    self._send(Reply(204))
                else:
                    self._send(Reply(404, b"not found"))

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}"

    def start(self) -> WebhookReceiver:
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def url(self, platform: str, name: str) -> str:
        return f"{self.base_url}/{platform}/{name}"

    def settings(self) -> dict[str, str]:
        """Example app settings a rule's channels can name, pointing at this receiver."""
        return {"TEAMS_WEBHOOK_SOC": self.url("teams", "soc"),
                "SLACK_WEBHOOK_SOC": self.url("slack", "soc")}

    def answer(self, platform: str, name: str, status: int | None,
               times: int | None = None, retry_after: int = 1) -> None:
        """Make one hook answer `status` (`times` times, or until told otherwise); None:
        answer normally again."""
        if platform not in PLATFORMS:
            raise ValueError(f"platform must be one of {PLATFORMS}")
        if times is not None and times < 1:
            raise ValueError("times must be 1 or more (or absent: until told otherwise)")
        with self.lock:
            if status is None:
                self.answers.pop((platform, name), None)
            else:
                self.answers[(platform, name)] = Answer(status, times, retry_after)

    def reset(self) -> None:
        with self.lock:
            self.posted.clear()
            self.answers.clear()

    def posts(self, platform: str | None = None, hook: str | None = None
              ) -> list[dict[str, Any]]:
        """Every post taken or refused, oldest first (copies)."""
        with self.lock:
            return [dict(p) for p in self.posted
                    if platform in (None, p["platform"]) and hook in (None, p["hook"])]

    def wait_for(self, count: int, platform: str | None = None, hook: str | None = None,
                 timeout: float = 10.0) -> list[dict[str, Any]]:
        """The posts (as posts() lists them) once there are at least `count`; posts from
        an app arrive when its queue gets to them. TimeoutError if they do not."""
        def enough() -> bool:
            return sum(1 for p in self.posted if platform in (None, p["platform"])
                       and hook in (None, p["hook"])) >= count

        with self.arrived:
            if not self.arrived.wait_for(enough, timeout):
                raise TimeoutError(f"fewer than {count} posts to {platform or 'any'}/"
                                   f"{hook or 'any'} within {timeout} s")
        return self.posts(platform, hook)

    def _told(self, platform: str, name: str) -> Answer | None:
        with self.lock:
            told = self.answers.get((platform, name))
            if told and told.times is not None:
                told.times -= 1
                if told.times <= 0:
                    del self.answers[(platform, name)]
        return told

    def take(self, platform: str, name: str, raw: bytes) -> Reply:
        """Answer one post as the platform would, and keep it."""
        told = self._told(platform, name)
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        status, error, reasons = self._judge(platform, body, raw, told)
        if platform == "slack":
            reply = slack_reply(status, error, told.retry_after if told else 1)
        else:
            reply = teams_reply(status, "; ".join(reasons)[:2000],
                                told.retry_after if told else 1)
        self._keep({"platform": platform, "hook": name, "status": status,
                    "accepted": status < 300, "error": error, "reasons": reasons,
                    "size": len(raw), "body": body,
                    "raw": None if body is not None else raw[:2000].decode("utf-8",
                                                                           "replace")})
        return reply

    @staticmethod
    def _judge(platform: str, body: Any, raw: bytes, told: Answer | None
               ) -> tuple[int, str, list[str]]:
        """(status, error string or code, reasons) for one post."""
        if told:
            errors = SLACK_ERRORS if platform == "slack" else TEAMS_ERRORS
            error = "" if told.status < 300 else errors.get(told.status, errors[500])
            return told.status, error, [f"this hook was told to answer {told.status}"]
        if body is None:
            error = "invalid_payload" if platform == "slack" else "InvalidRequestContent"
            return 400, error, ["the body is not JSON"]
        if platform == "slack":
            error, reasons = slack_problems(body)
            return (400 if error else 200), error, reasons
        reasons = teams_problems(body, len(raw))
        if reasons and "Request Entity too large" in reasons[0]:
            return 413, "RequestEntityTooLarge", reasons
        return (400, "InvalidRequestContent", reasons) if reasons else (202, "", [])

    def _keep(self, post: dict[str, Any]) -> None:
        with self.lock:
            post = {"seq": len(self.posted) + 1,
                    "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **post}
            self.posted.append(post)
            self.arrived.notify_all()
            if self.path:
                with open(self.path, "a", encoding="utf-8") as out:
                    out.write(json.dumps(post) + "\n")
        first = (texts(post["body"], 1) or ["(no text)"])[0]
        self.echo(clean(f"{post['platform']:<5} {post['hook']}  {post['status']}  {first}"
                        + (f"  ({post['reasons'][0]})" if post["reasons"] else ""), 200))

    def page(self) -> str:
        """What was posted, newest first; every posted string escaped, nothing runs."""
        rows = []
        for post in reversed(self.posts()):
            shown = json.dumps(post["body"], indent=2, ensure_ascii=False) \
                if post["body"] is not None else post["raw"] or ""
            reasons = "".join(f"<li>{html.escape(r)}</li>" for r in post["reasons"])
            preview = "".join(f"<li>{html.escape(t[:300])}</li>" for t in texts(post["body"]))
            rows.append(
                f'<section class="{"ok" if post["accepted"] else "refused"}">'
                f"<h2>#{post['seq']} {html.escape(post['platform'])}/"
                f"{html.escape(post['hook'])} &rarr; {post['status']} "
                f"<small>{html.escape(post['at'])}</small></h2>"
                + (f"<ul class=reasons>{reasons}</ul>" if reasons else "")
                + (f"<ul>{preview}</ul>" if preview else "")
                + f"<details><summary>payload ({post['size']} bytes)</summary>"
                f"<pre>{html.escape(shown)}</pre></details></section>")
        return ("<!doctype html><html><head><meta charset=utf-8>"
                "<title>Webhook receiver</title><style>"
                "body{font-family:sans-serif;margin:1em 2em;overflow-wrap:anywhere}"
                "section{border-left:4px solid #2a2;padding:0 1em;margin:1em 0}"
                "section.refused{border-color:#c22}"
                ".reasons{color:#c22}pre{white-space:pre-wrap;word-break:break-all}"
                "</style></head><body><h1>Webhook receiver</h1>"
                f"<p>{len(rows)} posts. Teams: POST {self.base_url}/teams/&lt;name&gt;; "
                f"Slack: POST {self.base_url}/slack/&lt;name&gt;.</p>"
                + ("".join(rows) or "<p>Nothing posted yet.</p>") + "</body></html>")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="webhook_receiver", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=0, help="0: a free port")
    parser.add_argument("--keep", type=Path, help="append each post to this JSON-lines file")
    args = parser.parse_args(argv)
    receiver = WebhookReceiver(args.keep, port=args.port).start()
    print(f"webhook receiver on {receiver.base_url}/", flush=True)
    for name, url in receiver.settings().items():
        print(f"  {name}={url}", flush=True)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass
    receiver.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
