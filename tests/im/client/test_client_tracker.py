"""DeliveryTracker: what a device holds, per conversation, and what it
may ack. Plain values in, plain values out."""

from __future__ import annotations

from im.client import DeliveryTracker, Receipt

C = "d:conversation"


def anchored(base: int) -> DeliveryTracker:
    """A tracker whose conversation C is known up to ``base``."""
    tracker = DeliveryTracker()
    tracker.receive(C, base + 1, anchor=True)
    return tracker


def test_a_conversation_is_anchored_just_below_its_first_synced_seq():
    tracker = DeliveryTracker()
    assert tracker.receive(C, 41, anchor=True) == Receipt(True)
    assert tracker.contiguous(C) == 41
    # The server started us at 41, so it holds 40 as delivered already:
    # only 41 is news to it.
    assert tracker.pending_acks() == [(C, 41)]


def test_copies_are_recognised_below_and_above_the_contiguous_run():
    tracker = anchored(0)  # holds 1
    tracker.receive(C, 3, anchor=True)
    assert tracker.receive(C, 1, anchor=True).new is False
    assert tracker.receive(C, 3, anchor=True).new is False
    assert tracker.receive(C, 2, anchor=True).new is True
    assert tracker.contiguous(C) == 3


def test_in_order_messages_advance_the_run_without_gaps():
    tracker = anchored(0)
    for seq in range(2, 6):
        assert tracker.receive(C, seq, anchor=False) == Receipt(True)
    assert tracker.contiguous(C) == 5
    assert tracker.gaps() == {}
    assert not tracker.has_gaps()


def test_a_message_past_a_hole_reports_the_hole_once():
    tracker = anchored(2)  # holds 3
    assert tracker.receive(C, 6, anchor=True) == Receipt(True, (4, 5))
    # 5 lands inside the known hole: late, not news.
    assert tracker.receive(C, 5, anchor=True) == Receipt(True)
    # 9 extends the frontier past a new hole.
    assert tracker.receive(C, 9, anchor=True) == Receipt(True, (7, 8))
    assert tracker.gaps() == {C: [(4, 4), (7, 8)]}
    assert tracker.has_gaps()


def test_acks_never_pass_a_hole():
    tracker = anchored(0)
    tracker.take_acks()
    tracker.receive(C, 3, anchor=True)
    assert tracker.pending_acks() == []  # 2 is missing: 1 is all we hold
    tracker.receive(C, 2, anchor=True)
    assert tracker.take_acks() == [(C, 3)]
    assert tracker.pending_acks() == []
    assert not tracker.acks_due()


def test_acks_are_cumulative_one_per_conversation():
    tracker = DeliveryTracker()
    for seq in (1, 2, 3):
        tracker.receive("a", seq, anchor=True)
    tracker.receive("b", 7, anchor=True)
    assert tracker.acks_due()
    assert sorted(tracker.take_acks()) == [("a", 3), ("b", 7)]
    assert tracker.take_acks() == []


def test_unanchored_pushes_are_held_and_deduplicated_but_never_acked():
    tracker = DeliveryTracker()
    assert tracker.receive(C, 6, anchor=False) == Receipt(True)
    assert tracker.receive(C, 6, anchor=False) == Receipt(False)
    assert tracker.contiguous(C) is None
    assert tracker.pending_acks() == []
    assert list(tracker.positions()) == []


def test_a_sync_anchors_below_what_pushes_brought_before_it():
    tracker = DeliveryTracker()
    tracker.receive(C, 6, anchor=False)  # pushed live, before the sync
    # The backlog started at 5: 5 and the held 6 join one run.
    assert tracker.receive(C, 5, anchor=True) == Receipt(True)
    assert tracker.contiguous(C) == 6
    assert tracker.receive(C, 6, anchor=True) == Receipt(False)
    assert tracker.take_acks() == [(C, 6)]


def test_the_end_of_a_sync_anchors_conversations_seen_only_in_pushes():
    tracker = DeliveryTracker()
    tracker.receive(C, 10, anchor=False)
    tracker.receive(C, 11, anchor=False)
    tracker.anchor_pending()
    assert tracker.contiguous(C) == 11
    assert tracker.take_acks() == [(C, 11)]


def test_saved_positions_anchor_from_the_start_and_are_acked_once():
    tracker = DeliveryTracker({C: 40})
    assert tracker.contiguous(C) == 40
    assert list(tracker.positions()) == [(C, 40)]
    assert tracker.receive(C, 40, anchor=False).new is False
    assert tracker.take_acks() == [(C, 40)]


def test_assume_jumps_the_run_and_absorbs_held_seqs():
    tracker = anchored(0)
    tracker.receive(C, 5, anchor=True)
    tracker.receive(C, 7, anchor=True)
    tracker.assume(C, 4)
    assert tracker.contiguous(C) == 5
    assert tracker.gaps() == {C: [(6, 6)]}
    tracker.assume(C, 2)  # behind the run: changes nothing
    assert tracker.contiguous(C) == 5


def test_note_acked_only_moves_forward():
    tracker = anchored(0)
    tracker.receive(C, 2, anchor=True)
    tracker.note_acked(C, 2)
    tracker.note_acked(C, 1)
    tracker.note_acked("unknown", 3)
    assert tracker.pending_acks() == []
