from __future__ import annotations

import pytest

from im.domain import Pending, PendingStateError


def test_callbacks_run_on_resolve_in_order_added() -> None:
    pending: Pending[int] = Pending()
    seen: list[str] = []
    pending.add_done_callback(lambda p: seen.append(f"a{p.result()}"))
    pending.add_done_callback(lambda p: seen.append(f"b{p.result()}"))
    assert seen == []
    pending.resolve(1)
    assert seen == ["a1", "b1"]


def test_callback_on_a_done_pending_runs_at_once() -> None:
    seen: list[int] = []
    Pending.of(5).add_done_callback(lambda p: seen.append(p.result()))
    assert seen == [5]


def test_then_and_chain_carry_values_down_a_chain() -> None:
    source: Pending[int] = Pending()
    inner: Pending[int] = Pending()
    end = source.then(lambda v: v + 1).chain(lambda v: inner).then(str)
    source.resolve(1)
    assert not end.done
    inner.resolve(41)
    assert end.result() == "41"


def test_a_failure_skips_later_steps_and_reaches_the_end() -> None:
    calls: list[int] = []
    end: Pending[None] = (
        Pending.of(1)
        .then(lambda v: v // 0)
        .then(lambda v: calls.append(v))
        .chain(lambda v: Pending.of(v))
    )
    assert calls == []
    assert isinstance(end.exception(), ZeroDivisionError)
    with pytest.raises(ZeroDivisionError):
        end.result()


def test_a_failed_inner_pending_fails_the_chain() -> None:
    error = KeyError("x")
    end: Pending[int] = Pending.of(1).chain(lambda v: Pending.failure(error))
    assert end.exception() is error


def test_misuse_is_reported() -> None:
    pending: Pending[int] = Pending()
    with pytest.raises(PendingStateError):
        pending.result()
    with pytest.raises(PendingStateError):
        pending.exception()
    pending.resolve(1)
    with pytest.raises(PendingStateError):
        pending.resolve(2)
    with pytest.raises(PendingStateError):
        pending.fail(ValueError())


def test_steps_on_a_done_pending_run_before_then_returns() -> None:
    # The in-memory store answers at once; its callers' steps must run
    # in the same call, so that a reply is queued before the next read.
    seen: list[int] = []
    doubled = Pending.of(2).then(lambda v: seen.append(v) or v * 2)
    assert seen == [2]
    assert doubled.result() == 4
    assert Pending.of(3).chain(lambda v: Pending.of(v + 1)).result() == 4


def test_a_step_that_raises_fails_its_result_instead_of_raising() -> None:
    def broken(value: int) -> Pending[int]:
        raise KeyError(value)

    for done in (Pending.of(1), Pending()):
        chained = done.chain(broken)
        then = done.then(broken)
        if not done.done:
            done.resolve(1)
        assert isinstance(chained.exception(), KeyError)
        assert isinstance(then.exception(), KeyError)


def test_a_chain_gives_its_own_pending_even_when_the_step_ran_at_once() -> (
    None
):
    # The step's Pending may have other listeners; the chain's caller
    # hears of the outcome first, as it would had the step run later.
    inner: Pending[int] = Pending()
    heard: list[str] = []
    out = Pending.of(1).chain(lambda _: inner)
    assert out is not inner
    inner.add_done_callback(lambda _: heard.append("other listener"))
    out.add_done_callback(
        lambda p: heard.append(f"chain's caller {p.result()}")
    )
    inner.resolve(5)
    assert heard == ["chain's caller 5", "other listener"]
