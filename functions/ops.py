"""Operations triggers: the timer that keeps what the host gave up on (poison queues)."""

from __future__ import annotations

import logging

import azure.functions as func

from shared import services

bp = func.Blueprint()
log = logging.getLogger("mssp_hub.functions")


@bp.function_name("poison_drain")
@bp.timer_trigger(arg_name="timer", schedule="%POISON_DRAIN_SCHEDULE%", use_monitor=False)
def poison_drain(timer: func.TimerRequest) -> None:
    drained = {q: n for q, n in services.poison_drain().run().items() if n}
    if drained:
        log.warning("poison messages recorded: %s", drained)
