"""A completion handle for channel operations (Netty's ChannelPromise).

Everything here runs on the owning event loop's thread, so there are no
locks: a future is completed once, and its listeners run right then, in
the order they were added. A listener added to a finished future runs at
once. Nothing here blocks: to wait for a future, add a listener.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

__all__ = ["Future", "FutureAlreadyDone"]

_log = logging.getLogger("reactor.future")

Listener = Callable[["Future"], object]

_PENDING, _SUCCEEDED, _FAILED = 0, 1, 2


class FutureAlreadyDone(RuntimeError):
    """Our misuse: something tried to complete a future a second time."""


class Future:
    """The outcome of an operation that finishes later: a value or an error."""

    __slots__ = ("_exception", "_listeners", "_result", "_state")

    def __init__(self) -> None:
        self._state = _PENDING
        self._result: Any = None
        self._exception: BaseException | None = None
        self._listeners: list[Listener] | None = None

    @classmethod
    def succeeded_with(cls, result: Any = None) -> Future:
        future = cls()
        future.set_result(result)
        return future

    @classmethod
    def failed_with(cls, exception: BaseException) -> Future:
        future = cls()
        future.set_exception(exception)
        return future

    def done(self) -> bool:
        return self._state != _PENDING

    def succeeded(self) -> bool:
        return self._state == _SUCCEEDED

    def failed(self) -> bool:
        return self._state == _FAILED

    def result(self) -> Any:
        """The value; raises the failure, or RuntimeError if not done."""
        if self._state == _SUCCEEDED:
            return self._result
        if self._state == _FAILED:
            assert self._exception is not None
            raise self._exception
        raise RuntimeError("future is not done yet")

    def exception(self) -> BaseException | None:
        if self._state == _PENDING:
            raise RuntimeError("future is not done yet")
        return self._exception

    def add_listener(self, listener: Listener) -> Future:
        if self._state != _PENDING:
            _notify(self, listener)
        elif self._listeners is None:
            self._listeners = [listener]
        else:
            self._listeners.append(listener)
        return self

    def set_result(self, result: Any = None) -> None:
        if not self.try_set_result(result):
            raise FutureAlreadyDone(f"{self!r} is already done")

    def set_exception(self, exception: BaseException) -> None:
        if not self.try_set_exception(exception):
            raise FutureAlreadyDone(f"{self!r} is already done")

    def try_set_result(self, result: Any = None) -> bool:
        if self._state != _PENDING:
            return False
        self._state = _SUCCEEDED
        self._result = result
        self._run_listeners()
        return True

    def try_set_exception(self, exception: BaseException) -> bool:
        if self._state != _PENDING:
            return False
        self._state = _FAILED
        self._exception = exception
        self._run_listeners()
        return True

    def _run_listeners(self) -> None:
        listeners, self._listeners = self._listeners, None
        if listeners:
            for listener in listeners:
                _notify(self, listener)

    def __repr__(self) -> str:
        state = ("pending", "succeeded", "failed")[self._state]
        return f"<Future {state}>"


def _notify(future: Future, listener: Listener) -> None:
    # A listener's bug must not stop the other listeners or the loop.
    try:
        listener(future)
    except Exception:
        _log.exception("future listener %r raised", listener)
