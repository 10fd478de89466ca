"""``Pending``: a result that a store may deliver later.

Why not ``concurrent.futures.Future`` or ``asyncio.Future``? The stores
will run on a writer thread, but everything that *uses* a result (the
use cases, the pushes, the replies) must run on the reactor's loop
thread. The adapter therefore completes a ``Pending`` from the loop,
posting ``pending.resolve(value)`` through the loop's thread-safe
submit. So a ``Pending`` is single-threaded by contract and needs no
lock; a stdlib ``Future`` would lock on every call, and would log and
swallow an exception raised by a callback, where we want it to reach
the loop's one error path. ``asyncio`` would tie the domain to one loop.

Callbacks run at once when the result is already there (as with the
in-memory store), otherwise when it arrives, in the order they were
added. ``then`` and ``chain`` build the next step; an exception in a
step fails the ``Pending`` it returns, so an error travels down a chain
to whoever reads the end of it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")
U = TypeVar("U")

_WAITING, _RESOLVED, _FAILED = 0, 1, 2


class PendingStateError(RuntimeError):
    """A Pending read before it completed, or completed twice (our bug)."""


class Pending(Generic[T]):
    __slots__ = ("_callbacks", "_error", "_state", "_value")

    def __init__(self) -> None:
        self._state = _WAITING
        self._value: T | None = None
        self._error: Exception | None = None
        # Made when the first callback waits: a store that answers at
        # once (the in-memory one) never needs the list.
        self._callbacks: list[Callable[[Pending[T]], None]] | None = None

    @classmethod
    def of(cls, value: T) -> Pending[T]:
        """An already resolved Pending."""
        pending: Pending[T] = cls()
        pending._state = _RESOLVED
        pending._value = value
        return pending

    @classmethod
    def failure(cls, error: Exception) -> Pending[T]:
        """An already failed Pending."""
        pending: Pending[T] = cls()
        pending.fail(error)
        return pending

    @property
    def done(self) -> bool:
        return self._state != _WAITING

    def resolve(self, value: T) -> None:
        self._complete(_RESOLVED, value, None)

    def fail(self, error: Exception) -> None:
        self._complete(_FAILED, None, error)

    def result(self) -> T:
        """The value; raises the failure, or PendingStateError if waiting."""
        if self._state == _RESOLVED:
            return self._value  # type: ignore[return-value]
        if self._state == _FAILED:
            assert self._error is not None
            raise self._error
        raise PendingStateError("result read before it arrived")

    def exception(self) -> Exception | None:
        if self._state == _WAITING:
            raise PendingStateError("exception read before the result")
        return self._error

    def add_done_callback(
        self, callback: Callable[[Pending[T]], None]
    ) -> None:
        if self._state == _WAITING:
            if self._callbacks is None:
                self._callbacks = [callback]
            else:
                self._callbacks.append(callback)
        else:
            callback(self)

    def then(self, step: Callable[[T], U]) -> Pending[U]:
        """A Pending of ``step(value)``, failed if this or ``step`` fails."""
        out: Pending[U] = Pending()
        if self._state == _RESOLVED:
            # Already there (the in-memory store's every answer): the
            # step runs now, as the callback below would, without the
            # callback and its closure, which a message's path would
            # otherwise build several times over.
            self._then_step(step, out)
            return out

        def run(done: Pending[T]) -> None:
            if done._error is not None:
                out.fail(done._error)
            else:
                done._then_step(step, out)

        self.add_done_callback(run)
        return out

    def _then_step(self, step: Callable[[T], U], out: Pending[U]) -> None:
        try:
            value = step(self._value)  # type: ignore[arg-type]
        except Exception as error:
            out.fail(error)
        else:
            out.resolve(value)

    def chain(self, step: Callable[[T], Pending[U]]) -> Pending[U]:
        """Like ``then``, for a step that itself returns a Pending."""
        out: Pending[U] = Pending()
        if self._state == _RESOLVED:
            # As in ``then``: the step runs now, without a callback.
            self._chain_step(step, out)
            return out

        def run(done: Pending[T]) -> None:
            if done._error is not None:
                out.fail(done._error)
            else:
                done._chain_step(step, out)

        self.add_done_callback(run)
        return out

    def _chain_step(
        self, step: Callable[[T], Pending[U]], out: Pending[U]
    ) -> None:
        # ``out`` is a Pending of its own, not the step's: whoever else
        # holds the step's Pending keeps its place among its callbacks.
        try:
            inner = step(self._value)  # type: ignore[arg-type]
        except Exception as error:
            out.fail(error)
        else:
            inner.add_done_callback(out._complete_as)

    def _complete_as(self, done: Pending[T]) -> None:
        """Complete the way ``done`` did."""
        if done._error is not None:
            self.fail(done._error)
        else:
            self.resolve(done._value)  # type: ignore[arg-type]

    def _complete(
        self, state: int, value: T | None, error: Exception | None
    ) -> None:
        if self._state != _WAITING:
            raise PendingStateError("Pending completed twice")
        self._state, self._value, self._error = state, value, error
        callbacks, self._callbacks = self._callbacks, None
        if callbacks:
            for callback in callbacks:
                callback(self)
