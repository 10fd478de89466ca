"""The integrity check: what counts as missing, copied, out of order."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from im.bench.integrity import ConversationView, IntegrityReport, check
from im.bench.report import to_markdown
from im.bench.runner import LoadResult


def test_in_order_pushes_and_own_acks_move_the_frontier():
    view = ConversationView()
    view.pushed(1)
    view.held(3)  # our own message's ack came before push 2
    assert view.summary() == (1, 1, 0, 0, 0)
    view.pushed(2)
    assert view.summary() == (3, 0, 0, 0, 0)


def test_a_copy_is_counted_once_per_copy():
    view = ConversationView()
    for seq in (1, 2, 2, 1):
        view.pushed(seq)
    frontier, _, duplicates, out_of_order, _ = view.summary()
    assert (frontier, duplicates) == (2, 2)
    assert out_of_order == 1  # the second 1 came after 2


def test_a_push_older_than_one_before_it_is_out_of_order():
    view = ConversationView()
    for seq in (1, 3, 2):
        view.pushed(seq)
    assert view.summary() == (3, 0, 0, 1, 0)


@given(st.permutations(list(range(1, 40))))
def test_every_seq_once_in_any_order_leaves_nothing_ahead(order):
    view = ConversationView()
    for seq in order:
        view.held(seq)
    assert view.summary()[:3] == (39, 0, 0)


def test_the_verdict_counts_what_each_view_lacks():
    report = check(
        {"c": 5, "d": 2},
        {"c": 5, "d": 2},
        {
            ("alice", "c"): (5, 0, 0, 0, 0),
            ("bob", "c"): (3, 1, 0, 0, 0),  # 4 never came
            ("bob", "d"): (2, 0, 1, 0, 0),
        },
    )
    assert not report.ok
    assert (report.missing, report.duplicates) == (2, 1)
    assert report.acknowledged == 7
    assert len(report.examples) == 2
    assert "bob in c: holds 1..3 of 1..5" in report.examples[0]


def test_a_clean_run_is_ok():
    report = check({"c": 2}, {"c": 2}, {("a", "c"): (2, 0, 0, 0, 0)})
    assert report.ok and report.as_dict()["ok"]


def test_a_message_paged_again_is_counted_not_failed():
    view = ConversationView()
    view.held(1)  # the device's own message, acked
    view.paged(1)  # and again in a page of backlog
    view.paged(2)
    assert view.summary() == (2, 0, 0, 0, 1)
    report = check({"c": 2}, {"c": 2}, {("a", "c"): view.summary()})
    assert report.ok and report.paged_again == 1


def test_a_run_whose_drain_ran_out_says_the_missing_may_be_late():
    # A flood's last answers can still be on their way when a drain's
    # time is up: the views then lack them without their being lost.
    views = {("a", "c"): (1, 0, 0, 0, 0)}
    report = check({"c": 3}, {"c": 3}, views, settled=False)
    assert not report.ok and report.missing == 2
    assert report.as_dict()["settled"] is False
    assert "may be late, not lost" in to_markdown(result_of(report))
    settled = check({"c": 3}, {"c": 3}, views)
    assert "FAILED: " in to_markdown(result_of(settled))


def result_of(report: IntegrityReport) -> LoadResult:
    config = {"rate": 0, "window": 1, "pairs": 1, "size": 64}
    return LoadResult("p2p", config, 1, 2, 1.0, integrity=report.as_dict())
