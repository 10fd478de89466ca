"""The server's hot encoders write what the protocol's encoder writes."""

from __future__ import annotations

import dataclasses

from hypothesis import given
from hypothesis import strategies as st

from im.domain import (
    ConversationId,
    DeviceAddress,
    DeviceId,
    GroupId,
    Message,
    ServerAck,
    UserId,
)
from im.interfaces.wire import (
    encode_ack,
    encode_push,
    to_wire_ack,
    to_wire_message,
)
from im.protocol import ContentType, Push, Serializer, encode

ids = st.text(st.characters(codec="utf-8"), min_size=1, max_size=20)
u64 = st.integers(0, 2**64 - 1)
conversations = st.one_of(
    st.builds(ConversationId.direct, ids.map(UserId), ids.map(UserId)),
    st.builds(ConversationId.for_group, ids.map(GroupId)),
)
messages = st.builds(
    Message,
    message_id=u64,
    client_message_id=ids,
    conversation_id=conversations,
    seq=u64,
    sender=st.builds(DeviceAddress, ids.map(UserId), ids.map(DeviceId)),
    to=ids,
    content_type=st.just(ContentType.BINARY),
    body=st.binary(max_size=300),
    timestamp_ms=u64,
)
# TEXT must be UTF-8; the others are any bytes.
messages = st.one_of(
    messages,
    st.builds(
        lambda m, text: dataclasses.replace(
            m, content_type=ContentType.TEXT, body=text.encode()
        ),
        messages,
        st.text(st.characters(codec="utf-8"), max_size=100),
    ),
)
serializers = st.sampled_from(list(Serializer))


@given(messages, serializers)
def test_a_push_is_the_protocols_push(message, serializer):
    expected = encode(Push(to_wire_message(message)), 0, serializer)
    assert encode_push(message, serializer) == expected


@given(messages, st.integers(0, 2**32 - 1), serializers)
def test_an_ack_is_the_protocols_server_ack(message, request_id, serializer):
    ack = ServerAck.of(message)
    expected = encode(to_wire_ack(ack), request_id, serializer)
    assert encode_ack(ack, request_id, int(serializer)) == expected
