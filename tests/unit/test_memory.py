"""The worker's memory trim: once per burst of calls, after they stop; the arena cap."""

import threading

from cnm_bridge.docker import memory


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_no_trim_without_calls():
    trims = []
    t = memory.IdleTrimmer(idle=2, trim_fn=lambda: trims.append(1), clock=Clock())
    assert t.step() is None and t.due_in() is None and trims == []


def test_one_trim_after_a_burst_goes_quiet():
    clock, trims = Clock(), []
    t = memory.IdleTrimmer(idle=2, trim_fn=lambda: trims.append(clock.now), clock=clock)
    for _ in range(5):  # a burst: each call pushes the trim back
        t.touch()
        clock.now += 1
        assert t.step() == 1.0 and trims == []
    clock.now += 1
    assert t.step() is None and trims == [106.0]
    clock.now += 10
    assert t.step() is None and trims == [106.0]  # quiet since: no second trim
    t.touch()
    clock.now += 2
    t.step()
    assert trims == [106.0, 118.0]


def test_the_thread_trims_and_stops():
    done = threading.Event()
    t = memory.IdleTrimmer(idle=0.05, trim_fn=done.set).start()
    t.touch()
    assert done.wait(5)
    t.stop()
    assert t.trims == 1


def test_libc_calls():
    # Debian's glibc: the cap takes; a trim answers whether it gave anything back.
    assert memory.cap_arenas(2) is True
    assert memory.trim() in (True, False)

    class Refusing:
        def mallopt(self, param, value):
            assert param == memory.M_ARENA_MAX
            return 0

        def malloc_trim(self, pad):
            return 0
    assert memory.cap_arenas(2, libc=Refusing()) is False
    assert memory.trim(libc=Refusing()) is False
