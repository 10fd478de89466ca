"""The pipeline on an embedded channel: order, mutation, errors."""

import logging

import pytest

from reactor import (
    ChannelDuplexHandler,
    ChannelInboundHandler,
    ChannelOutboundHandler,
    EmbeddedChannel,
    Future,
    PipelineError,
)
from reactor.outbound import ChannelClosedError
from reactor.pipeline import M_READ, M_WRITE, handler_mask


class Tag(ChannelInboundHandler):
    """Appends its name to every message it passes on."""

    def __init__(self, name, log=None):
        self.name = name
        self.log = log if log is not None else []

    def channel_read(self, ctx, msg):
        self.log.append(f"{self.name}:read")
        ctx.fire_channel_read((*msg, self.name))


class OutTag(ChannelOutboundHandler):
    def __init__(self, name, log):
        self.name = name
        self.log = log

    def write(self, ctx, msg, promise):
        self.log.append(f"{self.name}:write")
        ctx.write((*msg, self.name), promise)


class Recorder(ChannelInboundHandler):
    """Records every inbound event, and passes it on."""

    def __init__(self):
        self.events = []

    def handler_added(self, ctx):
        self.events.append("added")

    def handler_removed(self, ctx):
        self.events.append("removed")

    def channel_registered(self, ctx):
        self.events.append("registered")
        ctx.fire_channel_registered()

    def channel_active(self, ctx):
        self.events.append("active")
        ctx.fire_channel_active()

    def channel_read(self, ctx, msg):
        self.events.append(("read", msg))
        ctx.fire_channel_read(msg)

    def channel_read_complete(self, ctx):
        self.events.append("read_complete")
        ctx.fire_channel_read_complete()

    def channel_inactive(self, ctx):
        self.events.append("inactive")
        ctx.fire_channel_inactive()

    def channel_unregistered(self, ctx):
        self.events.append("unregistered")
        ctx.fire_channel_unregistered()

    def user_event_triggered(self, ctx, event):
        self.events.append(("event", event))
        ctx.fire_user_event_triggered(event)


def test_inbound_goes_head_to_tail_and_outbound_tail_to_head():
    log = []
    ch = EmbeddedChannel(
        Tag("a", log), OutTag("x", log), Tag("b", log), OutTag("y", log)
    )
    assert ch.write_inbound(())
    assert ch.read_inbound() == ("a", "b")
    assert ch.write_outbound(())
    assert ch.read_outbound() == ("y", "x")
    assert log == ["a:read", "b:read", "y:write", "x:write"]


def test_ctx_write_skips_outbound_handlers_after_it():
    log = []

    class Answer(ChannelInboundHandler):
        def channel_read(self, ctx, msg):
            ctx.write(("answer",))
            ctx.flush()

    # The classic mistake: an encoder added after the handler that calls
    # ctx.write() is never used. channel.write() would pass through it.
    ch = EmbeddedChannel(OutTag("before", log), Answer(), OutTag("after", log))
    ch.write_inbound(())
    assert ch.read_outbound() == ("answer", "before")
    assert log == ["before:write"]


def test_lifecycle_events_in_order():
    rec = Recorder()
    ch = EmbeddedChannel(rec)
    ch.write_inbound("m")
    ch.fire_event("hello")
    ch.close()
    ch.run_pending_tasks()
    assert rec.events == [
        "added",
        "registered",
        "active",
        ("read", "m"),
        "read_complete",
        ("event", "hello"),
        "inactive",
        "unregistered",
        "removed",
    ]
    assert ch.close_future.succeeded()


def test_close_is_idempotent_and_fires_once():
    rec = Recorder()
    ch = EmbeddedChannel(rec)
    first = ch.close()
    second = ch.close()
    ch.run_pending_tasks()
    assert first.succeeded() and second.succeeded()
    assert rec.events.count("inactive") == 1


def test_write_after_close_fails_its_future():
    ch = EmbeddedChannel()
    ch.close()
    ch.run_pending_tasks()
    promise = Future()
    ch.write(b"late", promise)
    assert isinstance(promise.exception(), ChannelClosedError)


def test_add_remove_replace_and_names():
    a, b, c = Tag("a"), Tag("b"), Tag("c")
    ch = EmbeddedChannel()
    p = ch.pipeline
    p.add_last(b, "b").add_first(a, "a").add_after("b", c, "c")
    assert p.names() == ["a", "b", "c"]
    p.add_before("c", Tag("d"), "d")
    assert p.names() == ["a", "b", "d", "c"]
    p.remove("d")
    p.replace("b", Tag("e"), "e")
    assert p.names() == ["a", "e", "c"]
    assert p.first() is a and p.last() is c and p.get("c") is c
    ch.write_inbound(())
    assert ch.read_inbound() == ("a", "e", "c")


def test_generated_names_and_duplicates():
    ch = EmbeddedChannel()
    ch.pipeline.add_last(Tag("x")).add_last(Tag("y"))
    assert ch.pipeline.names() == ["Tag#0", "Tag#1"]
    with pytest.raises(PipelineError, match="duplicate"):
        ch.pipeline.add_last(Tag("z"), "Tag#0")
    with pytest.raises(PipelineError, match="no handler"):
        ch.pipeline.remove("missing")


def test_unsharable_handler_cannot_join_two_pipelines():
    handler = Tag("t")
    EmbeddedChannel(handler)
    with pytest.raises(PipelineError, match="not sharable"):
        EmbeddedChannel(handler)


def test_sharable_handler_can_join_many():
    class Shared(ChannelInboundHandler):
        sharable = True

    handler = Shared()
    EmbeddedChannel(handler)
    EmbeddedChannel(handler)


def test_handler_removes_itself_while_the_event_travels():
    class Once(ChannelInboundHandler):
        def channel_read(self, ctx, msg):
            ctx.pipeline.remove(self)
            ctx.fire_channel_read((*msg, "once"))

    ch = EmbeddedChannel(Once(), Tag("after"))
    ch.write_inbound(())
    ch.write_inbound(())
    assert ch.read_inbound() == ("once", "after")
    assert ch.read_inbound() == ("after",)


def test_handler_adds_a_handler_after_itself_mid_event():
    class Installer(ChannelInboundHandler):
        def channel_read(self, ctx, msg):
            ctx.pipeline.add_after(ctx.name, Tag("new"), "new")
            ctx.pipeline.remove(self)
            ctx.fire_channel_read(msg)

    ch = EmbeddedChannel(Installer())
    ch.write_inbound(())
    assert ch.read_inbound() == ("new",)


def test_events_fired_from_handler_added_reach_the_handler():
    class Greeter(ChannelInboundHandler):
        def handler_added(self, ctx):
            ctx.fire_channel_read(("hello",))

    ch = EmbeddedChannel()
    ch.pipeline.add_last(Greeter())
    assert ch.read_inbound() == ("hello",)


def test_failing_handler_added_removes_the_handler_and_reports():
    class Broken(ChannelInboundHandler):
        def handler_added(self, ctx):
            raise RuntimeError("boom")

    ch = EmbeddedChannel()
    ch.pipeline.add_last(Broken(), "broken")
    assert "broken" not in ch.pipeline.names()
    with pytest.raises(PipelineError, match="boom"):
        ch.check_exception()


def test_inbound_error_goes_to_the_same_handlers_exception_caught():
    seen = []

    class Fragile(ChannelInboundHandler):
        def channel_read(self, ctx, msg):
            raise ValueError("bad input")

        def exception_caught(self, ctx, exc):
            seen.append(exc)

    ch = EmbeddedChannel(Fragile())
    ch.write_inbound(b"x")
    assert [str(e) for e in seen] == ["bad input"]


def test_unhandled_exception_is_logged_once_with_the_channel(caplog):
    class Fragile(ChannelInboundHandler):
        def channel_read(self, ctx, msg):
            raise ValueError("nobody catches this")

    ch = EmbeddedChannel(Fragile())
    # Let the tail log instead of recording, as a socket channel does.
    ch._unhandled_exception = lambda exc: False
    with caplog.at_level(logging.WARNING, logger="reactor.pipeline"):
        ch.write_inbound(b"x")
    records = [r for r in caplog.records if "end of the pipeline" in r.message]
    assert len(records) == 1
    assert f"0x{ch.id:08x}" in records[0].message


def test_exception_inside_exception_caught_does_not_recurse(caplog):
    class Hopeless(ChannelInboundHandler):
        def channel_read(self, ctx, msg):
            raise ValueError("first")

        def exception_caught(self, ctx, exc):
            raise RuntimeError("second")

    ch = EmbeddedChannel(Hopeless())
    with caplog.at_level(logging.ERROR, logger="reactor.pipeline"):
        ch.write_inbound(b"x")
    assert any("exception_caught" in r.message for r in caplog.records)


def test_outbound_error_fails_the_future_not_exception_caught():
    class BadEncoder(ChannelOutboundHandler):
        def write(self, ctx, msg, promise):
            raise ValueError("cannot encode")

    ch = EmbeddedChannel(BadEncoder())
    promise = Future()
    ch.write(b"x", promise)
    assert str(promise.exception()) == "cannot encode"
    ch.check_exception()  # nothing reached the tail
    # Without a future, the error becomes an exception_caught event.
    ch.write(b"y")
    with pytest.raises(ValueError, match="cannot encode"):
        ch.check_exception()


def test_skip_masks_only_include_overridden_callbacks():
    assert handler_mask(Tag) & M_READ
    assert not handler_mask(Tag) & M_WRITE
    assert handler_mask(OutTag) & M_WRITE
    assert not handler_mask(OutTag) & M_READ
    assert handler_mask(ChannelDuplexHandler) == 0


def test_destroy_removes_handlers_tail_first():
    order = []

    class Named(ChannelInboundHandler):
        def __init__(self, name):
            self.name = name

        def handler_removed(self, ctx):
            order.append(self.name)

    ch = EmbeddedChannel(Named("first"), Named("second"))
    ch.finish()
    assert order == ["second", "first"]
    assert ch.pipeline.names() == []


def test_write_future_succeeds_on_flush():
    ch = EmbeddedChannel()
    promise = Future()
    ch.write(b"x", promise)
    assert not promise.done()
    ch.flush()
    assert promise.succeeded()
    assert ch.read_outbound() == b"x"


def test_replace_forwards_what_the_old_handler_hands_on_at_removal():
    """A handler replaced while it holds buffered input (a decoder with a
    partial frame) forwards it from handler_removed: the replacement must
    get it, not the handler after it."""

    class Buffering(ChannelInboundHandler):
        def __init__(self):
            self.held = []

        def channel_read(self, ctx, msg):
            self.held.append(msg)

        def handler_removed(self, ctx):
            for msg in self.held:
                ctx.fire_channel_read(msg)

    class Upper(ChannelInboundHandler):
        def channel_read(self, ctx, msg):
            ctx.fire_channel_read(msg.upper())

    old = Buffering()
    ch = EmbeddedChannel(old, Tag("after"))
    ch.write_inbound(b"partial")
    assert ch.read_inbound() is None
    ch.pipeline.replace(old, Upper(), "upper")
    # Through the replacement, then on to the handler after it.
    assert ch.read_inbound() == (*b"PARTIAL", "after")
    assert ch.pipeline.names() == ["upper", "Tag#0"]


def test_replace_while_the_old_handler_is_handling_an_event():
    class SwitchOnce(ChannelInboundHandler):
        def channel_read(self, ctx, msg):
            ctx.pipeline.replace(self, Tag("new"), "new")
            ctx.fire_channel_read((*msg, "switched"))

    ch = EmbeddedChannel(SwitchOnce())
    ch.write_inbound(())
    ch.write_inbound(())
    assert ch.read_inbound() == ("switched", "new")
    assert ch.read_inbound() == ("new",)
