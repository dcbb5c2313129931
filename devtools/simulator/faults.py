"""A tenant's injected faults (`/_sim/tenants/{id}/faults`), answered the same way by every
API the simulator serves (Defender's and Graph's), each in its own error shape."""

from __future__ import annotations

from collections.abc import Callable

from werkzeug.wrappers import Response

from devtools.simulator.world import Fault, Tenant, World

ErrorBody = Callable[..., Response]  # (status, code, message, headers) in the API's shape
CODES = {500: "InternalServerError", 502: "BadGateway", 503: "ServiceUnavailable",
         504: "GatewayTimeout"}


def take(world: World, tenant: Tenant, error: ErrorBody,
         throttled: Callable[[int], Response]) -> Response | Fault | None:
    """The tenant's next fault: an answer to give instead of the API's, the `cut` fault
    for the page's body to apply, or None (no fault, or a hang that has been waited out)."""
    with world.lock:
        fault = tenant.faults.popleft() if tenant.faults else None
    if fault is None or fault.kind == "cut":
        return fault
    if fault.kind == "hang":
        world.stopping.wait(fault.seconds)
        return None
    if fault.kind == "malformed":
        return Response('{"@odata.context": "x", "value": [{"id": "da6',
                        content_type="application/json")
    if fault.kind == "body":
        return Response(fault.body, content_type="application/json")
    if fault.status == 429:
        world.count_throttled(tenant.id)
        return throttled(fault.retry_after or 30)
    headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after else None
    return error(fault.status, CODES.get(fault.status, "Error"),
                 "An error occurred (simulated fault).", headers)
