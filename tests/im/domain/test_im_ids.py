from __future__ import annotations

import pytest

from im.domain import (
    ChatType,
    ConversationId,
    GroupId,
    InvalidArgument,
    UserId,
)

MAX_ID_LENGTH = 64  # the protocol's limit on an Id field


def test_direct_conversation_is_the_same_either_way_round() -> None:
    a, b = UserId("alice"), UserId("bob")
    assert ConversationId.direct(a, b) == ConversationId.direct(b, a)


def test_direct_conversations_of_different_pairs_differ() -> None:
    ab = ConversationId.direct(UserId("ab"), UserId("c"))
    a_bc = ConversationId.direct(UserId("a"), UserId("bc"))
    assert ab != a_bc


def test_direct_id_is_short_whatever_the_user_ids() -> None:
    long_a, long_b = UserId("a" * 64), UserId("é" * 64)
    conversation = ConversationId.direct(long_a, long_b)
    assert len(conversation.value) <= MAX_ID_LENGTH
    assert conversation.chat_type is ChatType.DIRECT
    assert conversation.group is None


def test_group_conversation_names_its_group() -> None:
    conversation = ConversationId.for_group(GroupId("g42"))
    assert conversation.value == "g:g42"
    assert conversation.chat_type is ChatType.GROUP
    assert conversation.group == "g42"


def test_parse_reads_back_what_the_server_made() -> None:
    direct = ConversationId.direct(UserId("alice"), UserId("bob"))
    group = ConversationId.for_group(GroupId("7"))
    assert ConversationId.parse(direct.value) == direct
    assert ConversationId.parse(group.value) == group


@pytest.mark.parametrize(
    "text",
    [
        "", "g:", "d:", "d:xyz", "d:" + "A" * 40, "d:" + "0" * 39 + "g",
        "x:1", "alice", "g:" + "x" * 63,  # one over the wire's 64
    ],
)  # fmt: skip
def test_parse_refuses_ids_the_server_never_made(text: str) -> None:
    with pytest.raises(InvalidArgument):
        ConversationId.parse(text)


def test_an_id_read_again_is_the_same_object() -> None:
    text = ConversationId.direct(UserId("carol"), UserId("dan")).value
    assert ConversationId.parse(text) is ConversationId.parse(text)
