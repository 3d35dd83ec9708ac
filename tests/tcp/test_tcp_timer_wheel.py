"""The timing wheel (userstack/csrc/base/timer.c): every timer fires exactly at its tick, none early,
none late, across all levels; next() is a lower bound of the next expiry; add/del at random."""
from __future__ import annotations

import random

import pytest

from tests.fixtures.tcp_harness import load


@pytest.fixture(scope="module")
def m():
    return load()


def expire_all(m, w, now):
    out = []
    while True:
        t = m.lib.tw_expire(w, now)
        if t == m.ffi.NULL:
            return out
        out.append(t)


def test_single_timer_each_level(m):
    for delay in (0, 1, 63, 64, 65, 4095, 4096, 300_000, 1 << 24, 1 << 30, (1 << 36) + 5, 1 << 40):
        w = m.lib.th_wheel_new(1_000_003)
        t = m.ffi.new("struct tw_timer *")
        m.lib.tw_add(w, t, 1_000_003 + delay)
        when = 1_000_003 + delay
        assert m.lib.tw_next(w) <= when
        # Walk the way a stack would: sleep until next(), run, repeat.
        now, fired = 1_000_003, None
        for _ in range(200):
            nxt = m.lib.tw_next(w)
            if nxt == 2**64 - 1:
                break
            assert nxt <= when
            now = max(now, nxt)
            got = expire_all(m, w, now)
            if got:
                fired = now
                break
        assert fired == when, (delay, fired, when)
        assert m.lib.tw_next(w) == 2**64 - 1


def test_random_timers_fire_exactly(m):
    rng = random.Random(7)
    w = m.lib.th_wheel_new(0)
    n = 2000
    timers = [m.ffi.new("struct tw_timer *") for _ in range(n)]
    due = {}
    now = 0
    for t in timers:
        d = rng.choice([rng.randrange(100), rng.randrange(10_000), rng.randrange(10_000_000)])
        m.lib.tw_add(w, t, now + d)
        due[int(m.ffi.cast("uintptr_t", t))] = now + d
    # Delete a third, re-add a third elsewhere.
    for t in timers[: n // 3]:
        m.lib.tw_del(w, t)
        due.pop(int(m.ffi.cast("uintptr_t", t)))
    for t in timers[n // 3: 2 * n // 3]:
        d = rng.randrange(5_000_000)
        m.lib.tw_add(w, t, d)
        due[int(m.ffi.cast("uintptr_t", t))] = d
    fired = {}
    while True:
        nxt = m.lib.tw_next(w)
        if nxt == 2**64 - 1:
            break
        assert nxt >= now
        assert nxt <= min(due[k] for k in due if k not in fired)
        now = nxt
        for t in expire_all(m, w, now):
            k = int(m.ffi.cast("uintptr_t", t))
            assert due[k] == now, (due[k], now)
            fired[k] = now
    assert set(fired) == set(due)


def test_expire_with_big_jumps(m):
    w = m.lib.th_wheel_new(0)
    ts = [m.ffi.new("struct tw_timer *") for _ in range(3)]
    for t, when in zip(ts, (10, 5000, 7_000_000), strict=True):
        m.lib.tw_add(w, t, when)
    assert len(expire_all(m, w, 6000)) == 2              # late, both at once
    assert expire_all(m, w, 6_999_999) == []
    assert len(expire_all(m, w, 100_000_000)) == 1
    t = m.ffi.new("struct tw_timer *")
    m.lib.tw_add(w, t, 5)                                # in the past: fires next time
    assert len(expire_all(m, w, 100_000_000)) == 1
