"""Signals become loop events: add_signal_handler."""

import os
import signal

from reactor import EventLoop


def test_a_signal_runs_its_callback_on_the_loop():
    loop = EventLoop()
    seen = []

    def on_signal(tag):
        seen.append((tag, loop.in_loop_thread()))
        loop.stop()

    try:
        loop.add_signal_handler(signal.SIGUSR1, on_signal, "usr1")
        # Sent from inside the loop, while it runs: the callback must run
        # as a loop event, not inside the interrupted code.
        loop.call_later(0.01, os.kill, os.getpid(), signal.SIGUSR1)
        loop.call_later(5.0, loop.stop)  # a bound, should it never come
        loop.run()
    finally:
        loop.close()
    assert seen == [("usr1", True)]


def test_close_restores_the_default_action_and_the_wakeup_fd():
    loop = EventLoop()
    loop.add_signal_handler(signal.SIGUSR2, lambda: None)
    assert signal.getsignal(signal.SIGUSR2) not in (
        signal.SIG_DFL,
        signal.SIG_IGN,
    )
    loop.close()
    assert signal.getsignal(signal.SIGUSR2) == signal.SIG_DFL
    assert signal.set_wakeup_fd(-1) == -1  # nothing left installed


def test_remove_signal_handler():
    loop = EventLoop()
    try:
        loop.add_signal_handler(signal.SIGUSR1, lambda: None)
        loop.remove_signal_handler(signal.SIGUSR1)
        assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL
    finally:
        loop.close()
