"""YieldingLock: the lock the callers' threads share keeps mutual exclusion."""

from __future__ import annotations

import threading
import time

from posthog_callbacks.locks import YieldingLock


def test_threads_updating_under_the_lock_lose_nothing() -> None:
    lock = YieldingLock()
    state = {"n": 0}

    def work() -> None:
        for _ in range(2000):
            with lock:
                seen = state["n"]
                time.sleep(0)  # hand the GIL over inside the critical section
                state["n"] = seen + 1

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert state["n"] == 8000 and not lock.locked()


def test_acquire_and_release_behave_like_a_plain_lock() -> None:
    lock = YieldingLock()
    assert lock.acquire() and lock.locked()
    assert not lock.acquire(blocking=False)
    assert not lock.acquire(timeout=0.01)
    got: list[bool] = []
    waiter = threading.Thread(target=lambda: got.append(lock.acquire()))
    waiter.start()  # yields, then waits like a plain lock until the release
    time.sleep(0.05)
    assert got == []
    lock.release()
    waiter.join(timeout=30)
    assert got == [True] and lock.locked()
    lock.release()
    assert not lock.locked()
    with lock:
        assert lock.locked()
    assert not lock.locked()
