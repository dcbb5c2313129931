"""Stored and queued JSON: fast, in a standard format (zstd + JSON), older rows still read."""

from __future__ import annotations

import json
import zlib
from concurrent.futures import ThreadPoolExecutor

import pytest
import zstandard

from shared import codec
from shared.ingest.events import MAX_MESSAGE_BYTES, build_event, tracked

ALERT = {"id": "da637", "title": "Mimikatz \u00e9\u6f22\u5b57 \"quoted\" \\ \n", "incidentId": 7,
         "evidence": [{"fileName": "x.exe", "sha1": None, "score": 0.5}]}


def test_packed_json_is_a_plain_zstd_frame_of_json():
    packed = codec.pack(ALERT)
    assert packed[:4] == codec.ZSTD_MAGIC
    assert zstandard.frame_content_size(packed) == len(codec.dumps(ALERT))
    assert json.loads(zstandard.ZstdDecompressor().decompress(packed)) == ALERT  # any tool
    assert codec.unpack(packed) == ALERT
    assert codec.loads(codec.dumps_text(ALERT)) == ALERT


def test_rows_written_before_as_zlib_still_read():
    assert codec.unpack(zlib.compress(json.dumps(ALERT).encode())) == ALERT
    assert codec.unpack(zlib.compress(codec.dumps(ALERT), 9)) == ALERT
    with pytest.raises(zlib.error):
        codec.unpack(b"not packed at all")


def test_packing_from_many_threads_at_once():
    """Contexts are per thread: concurrent invocations never share one."""
    values = [{**ALERT, "id": str(i), "pad": "x" * i} for i in range(400)]
    with ThreadPoolExecutor(8) as pool:
        packed = list(pool.map(codec.pack, values))
        assert list(pool.map(codec.unpack, packed)) == values


def test_what_the_fast_parser_refuses_or_changes():
    with pytest.raises(codec.DecodeError):
        codec.loads(b'{"score": NaN}')
    with pytest.raises(ValueError):
        codec.loads(b'{"id": "da6')
    assert codec.loads(b'{"n": 123456789012345678901234567890}')["n"] == pytest.approx(1.2345e29,
                                                                                       rel=1e-3)


def test_event_size_is_measured_in_the_bytes_that_are_sent():
    """Non-ASCII text costs 2-3 bytes a character on the queue; the event must still fit."""
    alert = {**ALERT, "lastUpdateTime": "2026-01-01T00:00:00Z",
             "description": "\u6f22" * 30_000,
             "evidence": [{"fileName": "\u6f22" * 5_000, "processCommandLine": "\u00e9" * 5_000}
                          for _ in range(40)]}
    version = "2026-01-01T00:00:00.0000000Z"
    event = build_event("t", "T", alert, version, None, tracked(alert, version))
    sent = event.to_message().encode("utf-8")
    assert len(sent) <= MAX_MESSAGE_BYTES
    assert json.loads(sent)["alert"]["evidenceCount"] == 40
