"""Forking from tests: wait for a child without hanging, fork while a lock is held."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any


def wait_child(pid: int, timeout: float) -> int | None:
    """The child's exit status, or None (after killing it) when it hung."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.01)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return None


def fork_while_held(
    lock: AbstractContextManager[Any], child: Callable[[], bool], timeout: float = 10.0
) -> int | None:
    """Fork while another thread holds ``lock``; the child runs ``child()``.

    Returns the child's exit code (0 when ``child()`` returned True, 1 otherwise or when
    it raised), or None when it hung (killed after ``timeout``): a child that waits for a
    lock copied held by ``fork()`` hangs.
    """
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with lock:
            holding.set()
            release.wait(timeout)

    holder = threading.Thread(target=hold)
    holder.start()
    holding.wait(timeout)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = 0 if child() else 1
        finally:
            os._exit(code)
    release.set()
    holder.join()
    status = wait_child(pid, timeout)
    return None if status is None else os.waitstatus_to_exitcode(status)
