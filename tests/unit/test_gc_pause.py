"""The collector is paused for exactly as long as some fetch runs, then as it was."""

from __future__ import annotations

import gc
import threading
import weakref

import pytest

from shared.ingest import gc_pause


@pytest.fixture(autouse=True)
def collector_back_on():
    yield
    gc.enable()


def test_paused_inside_and_back_after_even_on_error():
    assert gc.isenabled()
    with pytest.raises(RuntimeError), gc_pause.paused():
        assert not gc.isenabled()
        raise RuntimeError("run failed")
    assert gc.isenabled()


def test_overlapping_runs_resume_it_when_the_last_one_ends():
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def first():
        with gc_pause.paused():
            first_in.set()
            second_in.wait(5)
        first_out.set()

    def second():
        first_in.wait(5)
        with gc_pause.paused():
            second_in.set()
            first_out.wait(5)
            seen["after the first ended"] = gc.isenabled()
        seen["after both"] = gc.isenabled()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert seen == {"after the first ended": False, "after both": True}


def test_a_collector_disabled_before_stays_disabled():
    gc.disable()
    with gc_pause.paused():
        pass
    assert not gc.isenabled()


def test_tidy_frees_cycles_while_paused():
    class Node:
        pass

    with gc_pause.paused():
        node = Node()
        node.me = node  # a cycle: reference counting alone never frees it
        alive = weakref.ref(node)
        del node
        assert alive() is not None  # held while the collector is paused
        gc_pause.tidy()
        assert alive() is None
