"""IdleStateHandler on an embedded channel with a manual clock."""

from reactor import ChannelInboundHandler, EmbeddedChannel
from reactor.handlers import IdleState, IdleStateHandler


class Events(ChannelInboundHandler):
    def __init__(self):
        self.seen = []

    def user_event_triggered(self, ctx, event):
        self.seen.append((event.state, event.first))


def test_reader_idle_fires_after_silence_then_repeats_not_first():
    events = Events()
    ch = EmbeddedChannel(IdleStateHandler(reader=5), events)
    ch.advance_time(4.9)
    assert events.seen == []
    ch.advance_time(0.3)
    assert events.seen == [(IdleState.READER_IDLE, True)]
    ch.advance_time(5.2)
    assert events.seen[-1] == (IdleState.READER_IDLE, False)


def test_reading_postpones_reader_idle_and_resets_first():
    events = Events()
    ch = EmbeddedChannel(IdleStateHandler(reader=5), events)
    ch.advance_time(5.2)
    assert len(events.seen) == 1
    ch.advance_time(3)
    ch.write_inbound(b"ping")
    ch.advance_time(4)
    assert len(events.seen) == 1  # 4 s after the read: not idle
    ch.advance_time(1.3)
    assert events.seen[-1] == (IdleState.READER_IDLE, True)


def test_writer_and_all_idle():
    events = Events()
    ch = EmbeddedChannel(IdleStateHandler(writer=2, all=3), events)
    ch.advance_time(2.2)
    assert events.seen == [(IdleState.WRITER_IDLE, True)]
    ch.write_outbound(b"x")  # writing resets writer and all idle
    ch.advance_time(1.5)
    assert len(events.seen) == 1
    ch.advance_time(0.8)
    assert events.seen[-1] == (IdleState.WRITER_IDLE, True)
    ch.advance_time(0.9)
    assert (IdleState.ALL_IDLE, True) in events.seen


def test_zero_disables_and_close_stops_the_deadline():
    events = Events()
    idle = IdleStateHandler(reader=1)
    ch = EmbeddedChannel(idle, events)
    ch.close()
    ch.run_pending_tasks()
    ch.advance_time(10)
    assert events.seen == []
    assert len(ch.loop.wheel) == 0
    quiet = Events()
    EmbeddedChannel(IdleStateHandler(), quiet).advance_time(100)
    assert quiet.seen == []


def test_closing_on_idle_like_a_heartbeat_timeout():
    class CloseOnIdle(ChannelInboundHandler):
        def user_event_triggered(self, ctx, event):
            ctx.close()

    ch = EmbeddedChannel(IdleStateHandler(reader=3), CloseOnIdle())
    ch.advance_time(3.2)
    assert not ch.is_open


def test_no_more_idle_events_after_the_first_one_closed_the_channel():
    class CloseOnIdle(Events):
        def user_event_triggered(self, ctx, event):
            super().user_event_triggered(ctx, event)
            ctx.close()

    events = CloseOnIdle()
    idle = IdleStateHandler(reader=1, writer=1, all=1)
    ch = EmbeddedChannel(idle, events)
    ch.advance_time(1.2)
    ch.advance_time(5)
    assert len(events.seen) == 1
    assert len(ch.loop.wheel) == 0
