"""Sliding windows of 100 calls a minute and 1,500 an hour, with Retry-After."""

from devtools.simulator.ratelimit import Limits, SlidingLimiter


def test_minute_window():
    limiter, limits = SlidingLimiter(), Limits()
    assert all(limiter.admit(1000 + i * 0.1, limits) == 0 for i in range(100))
    wait = limiter.admit(1010.0, limits)
    assert wait == 50  # the first call (t=1000) leaves the window at t=1060
    assert limiter.admit(1059.9, limits) > 0
    assert limiter.admit(1060.05, limits) == 0  # one slot freed


def test_hour_window():
    limiter, limits = SlidingLimiter(), Limits(per_minute=100, per_hour=1500)
    t = 0.0
    for _ in range(15):
        for _ in range(100):
            assert limiter.admit(t, limits) == 0
        t += 61
    wait = limiter.admit(t, limits)
    assert wait == 3600 - t
    assert limiter.admit(3600.5, limits) == 0


def test_refused_calls_do_not_count():
    limiter, limits = SlidingLimiter(), Limits(per_minute=2, per_hour=100)
    assert limiter.admit(0, limits) == 0 and limiter.admit(1, limits) == 0
    for t in range(2, 50):
        assert limiter.admit(t, limits) > 0
    assert len(limiter.calls) == 2
