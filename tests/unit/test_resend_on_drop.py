"""The storage transport's resend (shared/storage/connection.py `ResendOnDrop`): a request
whose connection was reset or closed unanswered goes out again, twice at most, whatever
its method; a timeout, a refused connection or an answer is raised or returned as
requests' default does, for the SDKs' own policies."""

from __future__ import annotations

from http.client import RemoteDisconnected

import pytest
from urllib3.exceptions import NewConnectionError, ProtocolError, ReadTimeoutError

from shared.storage.connection import ResendOnDrop, dropped


def _reset() -> ProtocolError:
    return ProtocolError("Connection aborted.", ConnectionResetError(104, "reset by peer"))


@pytest.mark.parametrize("method", ["POST", "PATCH", "MERGE", "GET", "PUT", "DELETE"])
def test_a_dropped_connection_is_resent_twice_whatever_the_method(method):
    retry = ResendOnDrop().increment(method, "/t", error=_reset())
    retry = retry.increment(method, "/t", error=ProtocolError(
        "Connection aborted.", RemoteDisconnected("closed without response")))
    with pytest.raises(ProtocolError):  # the third: raised as it came, not MaxRetryError
        retry.increment(method, "/t", error=_reset())


@pytest.mark.parametrize("error", [
    ReadTimeoutError(None, "/t", "read timed out"),  # type: ignore[arg-type]
    NewConnectionError(None, "refused"),  # type: ignore[arg-type]
    ProtocolError("Connection broken: IncompleteRead", ValueError("x"))])
def test_anything_else_is_raised_at_once(error):
    assert not dropped(error)
    with pytest.raises(type(error)):
        ResendOnDrop().increment("POST", "/t", error=error)


def test_an_answer_is_never_retried_here():
    retry = ResendOnDrop()
    for status in (408, 429, 500, 503):
        assert not retry.is_retry("POST", status, has_retry_after=True)
        assert not retry.is_retry("GET", status, has_retry_after=False)
