"""A test app exercising each host semantic; queue names carry a per-test prefix."""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import UTC, datetime

import azure.functions as func

P = os.environ["TEST_PREFIX"]
app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

calls: dict[str, list] = {}
_lock = threading.Lock()
running = 0
peak = 0


def record(name: str, item: object) -> None:
    with _lock:
        calls.setdefault(name, []).append(item)


@app.queue_trigger(arg_name="msg", queue_name=f"{P}-fail", connection="AzureWebJobsStorage")
def always_fails(msg: func.QueueMessage) -> None:
    record("always_fails", (msg.get_body().decode(), msg.dequeue_count, time.monotonic()))
    raise RuntimeError("always fails")


@app.queue_trigger(arg_name="msg", queue_name=f"{P}-third", connection="AzureWebJobsStorage")
@app.queue_output(arg_name="out", queue_name=f"{P}-third-out", connection="AzureWebJobsStorage")
def third_time(msg: func.QueueMessage, out: func.Out[str]) -> None:
    record("third_time", (msg.get_body().decode(), msg.dequeue_count))
    out.set([f"first:{msg.get_body().decode()}", "second"])  # written only on success
    if msg.dequeue_count < 3:
        raise RuntimeError(f"attempt {msg.dequeue_count}")
    record("third_time_done", msg.get_json())


@app.queue_trigger(arg_name="msg", queue_name=f"{P}-slow", connection="AzureWebJobsStorage")
def slow(msg: func.QueueMessage) -> None:
    global running, peak
    with _lock:
        running += 1
        peak = max(peak, running)
    time.sleep(0.4)
    with _lock:
        running -= 1
    record("slow", msg.get_body().decode())


@app.queue_trigger(arg_name="msg", queue_name=f"{P}-hang", connection="AzureWebJobsStorage")
def hang(msg: func.QueueMessage) -> None:
    """Longer than a stop's grace: its message must go back to the queue, not wait."""
    time.sleep(3)
    record("hang", msg.get_body().decode())


@app.timer_trigger(arg_name="timer", schedule="%TEST_TICK%")
def ticker(timer: func.TimerRequest) -> None:
    record("ticker", (datetime.now(UTC), timer.past_due))


@app.timer_trigger(arg_name="timer", schedule="0 0 */6 * * *", run_on_startup=True)
def on_startup(timer: func.TimerRequest) -> None:
    record("on_startup", timer.past_due)


@app.timer_trigger(arg_name="timer", schedule="0 0 3 * * *")
def nightly(timer: func.TimerRequest) -> None:
    record("nightly", timer.past_due)


@app.timer_trigger(arg_name="timer", schedule="* * * * * *", use_monitor=False)
def failing_timer(timer: func.TimerRequest) -> None:
    record("failing_timer", time.monotonic())
    raise RuntimeError("timer failure")


@app.route(route="anon/{name}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def anon(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(f"hello {req.route_params['name']}")


@app.route(route="items/{id:int}", methods=["GET", "PUT"])
def item(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(json.dumps({"id": int(req.route_params["id"]),
                                         "method": req.method}), mimetype="application/json")


@app.route(route="admin/thing", methods=["POST"], auth_level=func.AuthLevel.ADMIN)
def admin_thing(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("admin ok")


@app.route(route="echo", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def echo(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    body = {"body": req.get_body().decode(), "params": dict(req.params),
            "header": req.headers.get("X-Custom"), "url": req.url,
            "invocation_id": context.invocation_id, "json": req.get_json()}
    return func.HttpResponse(json.dumps(body), status_code=201, mimetype="application/json",
                             headers={"X-Reply": "yes"})


@app.route(route="go", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def go(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(status_code=302, headers={"Location": "https://example.test/x"})


@app.route(route="boom", auth_level=func.AuthLevel.ANONYMOUS)
def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise ValueError("secret detail that must not leak")
