"""The chat's vocabulary as text in, values out: no terminal."""

from __future__ import annotations

import re
from datetime import UTC

import pytest

from im.client import ConnectionLost, LoginFailedError, RequestError
from im.client.chat_text import (
    DEFAULT_HISTORY_COUNT,
    GroupCreate,
    GroupMsg,
    Help,
    History,
    Join,
    Leave,
    Members,
    Msg,
    Quit,
    Say,
    Sync,
    UsageError,
    clean,
    describe_content,
    format_error,
    format_line,
    format_message,
    group_created,
    parse_command,
)
from im.protocol import ChatType, ContentType, ErrorCode, Message

# 2023-11-14 22:13:20 UTC
T = 1_700_000_000_000


@pytest.mark.parametrize(
    ("line", "command"),
    [
        ("/msg bob hello there", Msg("bob", "hello there")),
        ("/msg bob   two  spaces ", Msg("bob", "two  spaces")),
        ("/MSG bob hi", Msg("bob", "hi")),
        ("/g team hi all", GroupMsg("team", "hi all")),
        ("just text", Say("just text")),
        ("  padded  ", Say("padded")),
        ("//shrug", Say("/shrug")),
        ("/group create team", GroupCreate("team", ())),
        (
            "/group create team bob carol",
            GroupCreate("team", ("bob", "carol")),
        ),
        ("/group join team", Join("team")),
        ("/join team", Join("team")),
        ("/leave team", Leave("team")),
        ("/members team", Members("team")),
        ("/group members team", Members("team")),
        ("/history", History(None, DEFAULT_HISTORY_COUNT)),
        ("/history bob", History("bob", DEFAULT_HISTORY_COUNT)),
        ("/history 5", History(None, 5)),
        ("/history #team 5", History("#team", 5)),
        ("/sync", Sync()),
        ("/help", Help()),
        ("/?", Help()),
        ("/quit", Quit()),
        ("/exit", Quit()),
    ],
)
def test_lines_parse_to_commands(line, command):
    assert parse_command(line) == command


@pytest.mark.parametrize("line", ["", "   ", "\n"])
def test_a_blank_line_is_no_command(line):
    assert parse_command(line) is None


@pytest.mark.parametrize(
    ("line", "complaint"),
    [
        ("/msg", "usage: /msg USER TEXT"),
        ("/msg bob", "usage: /msg USER TEXT"),
        ("/g team", "usage: /g GROUP TEXT"),
        ("/join", "usage: /join GROUP"),
        ("/join a b", "usage: /join GROUP"),
        ("/group", "usage: /group"),
        ("/group create", "usage: /group create"),
        ("/history bob x", "usage: /history"),
        ("/history a b c", "usage: /history"),
        ("/history 0", "N must be"),
        ("/history 100000", "N must be"),
        ("/quit now", "takes nothing"),
        ("/dance", "unknown command /dance"),
    ],
)
def test_bad_lines_say_how_to_fix_them(line, complaint):
    with pytest.raises(UsageError, match=re.escape(complaint)):
        parse_command(line)


def message(**fields) -> Message:
    values = dict(
        message_id=1, conversation_id="d:x", seq=1,
        chat_type=ChatType.DIRECT, from_user="alice", from_device="p",
        to="bob", timestamp=T, content_type=ContentType.TEXT,
        content=b"hello",
    )  # fmt: skip
    values.update(fields)
    return Message(**values)


def test_a_direct_message_shows_time_sender_and_recipient():
    assert (
        format_message(message(), tz=UTC) == "[22:13:20] alice -> bob: hello"
    )


def test_a_group_shows_by_name_when_known():
    group = message(chat_type=ChatType.GROUP, to="grp7")
    assert format_message(group, tz=UTC).endswith("alice -> #grp7: hello")
    named = format_message(group, group_names={"grp7": "team"}, tz=UTC)
    assert named.endswith("alice -> #team: hello")


def test_content_other_than_text_is_described_not_dumped():
    assert describe_content(ContentType.BINARY, b"\x00" * 9) == (
        "<binary, 9 bytes>"
    )
    assert describe_content(77, b"abc") == "<content type 77, 3 bytes>"
    # Invalid UTF-8 cannot arrive as TEXT, but show it safely anyway.
    assert describe_content(ContentType.TEXT, b"a\xffb") == "a\ufffdb"


def test_a_group_created_event_reads_as_a_sentence_with_its_members():
    content = b'{"event": "created", "name": "tea", "members": ["al", "bo"]}'
    event = message(
        chat_type=ChatType.GROUP, to="grp7",
        content_type=ContentType.GROUP_EVENT, content=content,
    )  # fmt: skip
    assert group_created(event) == ("tea", ["al", "bo"], 0)
    assert describe_content(ContentType.GROUP_EVENT, content) == (
        "* created the group, with bo"
    )
    big = b'{"event": "created", "name": "x", "members": ["al"], "more": 1999}'
    assert describe_content(ContentType.GROUP_EVENT, big) == (
        "* created the group, with 1,999 more"
    )
    both = b'{"event": "created", "name": "x", "members": ["al", "bo"], '
    both += b'"more": 3}'
    assert describe_content(ContentType.GROUP_EVENT, both) == (
        "* created the group, with bo and 3 more"
    )
    alone = b'{"event": "created", "name": "x", "members": ["al"]}'
    assert describe_content(ContentType.GROUP_EVENT, alone) == (
        "* created the group"
    )


@pytest.mark.parametrize(
    "content",
    [
        b"not json",
        b"[1, 2]",
        b'{"event": "renamed", "name": "x"}',  # a newer server's event
        b'{"event": "created", "name": 7, "members": []}',
        b'{"event": "created", "name": "x", "members": "al"}',
    ],
)
def test_a_group_event_this_client_cannot_read_is_described_not_guessed(
    content,
):
    event = message(content_type=ContentType.GROUP_EVENT, content=content)
    assert group_created(event) is None
    assert describe_content(ContentType.GROUP_EVENT, content) == (
        f"<content type {int(ContentType.GROUP_EVENT)}, {len(content)} bytes>"
    )


def test_terminal_escapes_and_bidi_controls_are_shown_not_obeyed():
    hostile = "\x1b]0;owned\x07red\x1b[31m \u202eevil"
    shown = clean(hostile)
    assert "\x1b" not in shown and "\u202e" not in shown
    assert shown == "\\x1b]0;owned\\x07red\\x1b[31m \\u202eevil"
    line = format_message(message(content=hostile.encode()), tz=UTC)
    assert line.isprintable()
    assert clean("line one\nline two") == "line one\n    line two"
    assert clean("emoji 👋 and 中文") == "emoji 👋 and 中文"


def test_names_from_the_network_are_cleaned_too():
    line = format_line(T, "al\x1bice", "b\nob", "hi", tz=UTC)
    assert line == "[22:13:20] al\\x1bice -> b\n    ob: hi"


def test_errors_read_as_one_line():
    refused = RequestError(
        ErrorCode.NO_SUCH_USER, "no user zed", will_close=False, request_id=3
    )
    assert format_error(refused) == "! NO_SUCH_USER: no user zed"
    login = LoginFailedError(ErrorCode.BAD_TOKEN, "bad signature")
    assert format_error(login) == "! login refused: BAD_TOKEN: bad signature"
    lost = ConnectionLost("the server closed the connection")
    assert format_error(lost) == (
        "! disconnected: the server closed the connection"
    )
    assert format_error(ValueError("x\x1b")) == "! x\\x1b"
