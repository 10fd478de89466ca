"""The chat's words: typed lines into commands, messages into lines.

Plain functions and values, with no terminal and no connection, so the
whole vocabulary of ``netim chat`` is tested as text in, value out.

Commands (``HELP`` is what ``/help`` prints)::

    /msg USER TEXT             a direct message
    /g GROUP TEXT              a group message
    TEXT                       to the conversation used last
    /group create NAME [USER...]
    /join GROUP   /leave GROUP   /members GROUP
    /history [USER|GROUP] [N]  the last N messages (default 20)
    /sync   /help   /quit

A line that should start with "/" is typed with two ("//shrug").

Formatting treats every string from the network as hostile: a message
is someone else's text written to *our* terminal, and a terminal obeys
escape sequences (colours, cursor moves, window titles, on some
terminals worse). So control characters, and the invisible Unicode
controls that reorder text (which can make a line read as something it
is not), are shown escaped, never written raw.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any, Final

from im.protocol import ChatType, ContentType, Message

from .errors import ConnectionLost, LoginFailedError, RequestError

__all__ = [
    "DEFAULT_HISTORY_COUNT",
    "HELP",
    "MAX_HISTORY_COUNT",
    "Command",
    "GroupCreate",
    "GroupMsg",
    "Help",
    "History",
    "Join",
    "Leave",
    "Members",
    "Msg",
    "Quit",
    "Say",
    "Sync",
    "UsageError",
    "clean",
    "describe_content",
    "format_error",
    "format_line",
    "format_message",
    "parse_command",
]

#: Messages ``/history`` shows when no count is given: a screenful.
DEFAULT_HISTORY_COUNT: Final = 20
#: The most ``/history`` asks for at once (HISTORY_REQUEST's limit is
#: a u16, but a terminal shows far fewer).
MAX_HISTORY_COUNT: Final = 1000

HELP: Final = """\
commands:
  /msg USER TEXT               send TEXT to USER
  /g GROUP TEXT                send TEXT to GROUP
  TEXT                         send to the conversation used last
  /group create NAME [USER...] create a group (you are in it)
  /join GROUP                  join a group
  /leave GROUP                 leave a group
  /members GROUP               list a group's members
  /history [USER|GROUP] [N]    the last N messages (default 20) of a
                               conversation seen in this session,
                               older ones included
  /sync                        fetch messages missed
  /help                        this text
  /quit                        leave (Ctrl-D too)
a line starting with / is sent by typing // for it"""


class UsageError(ValueError):
    """A line that is not a valid command; the text says how to fix it."""


class Command:
    """Base of the parsed commands."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Msg(Command):
    user: str
    text: str


@dataclass(frozen=True, slots=True)
class GroupMsg(Command):
    group: str
    text: str


@dataclass(frozen=True, slots=True)
class Say(Command):
    """Plain text: to the conversation used last."""

    text: str


@dataclass(frozen=True, slots=True)
class GroupCreate(Command):
    name: str
    members: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Join(Command):
    group: str


@dataclass(frozen=True, slots=True)
class Leave(Command):
    group: str


@dataclass(frozen=True, slots=True)
class Members(Command):
    group: str


@dataclass(frozen=True, slots=True)
class History(Command):
    """``target`` None: the conversation used last."""

    target: str | None
    count: int = DEFAULT_HISTORY_COUNT


@dataclass(frozen=True, slots=True)
class Sync(Command):
    pass


@dataclass(frozen=True, slots=True)
class Help(Command):
    pass


@dataclass(frozen=True, slots=True)
class Quit(Command):
    pass


# -- parsing ------------------------------------------------------------------


def parse_command(line: str) -> Command | None:
    """The command a typed line means; None for a blank line. Raises
    ``UsageError`` for a line that is not a valid command."""
    text = line.strip()
    if not text:
        return None
    if text.startswith("//"):
        return Say(text[1:])
    if not text.startswith("/"):
        return Say(text)
    name, _, rest = text.partition(" ")
    rest = rest.strip()
    parse = _COMMANDS.get(name.lower())
    if parse is None:
        raise UsageError(f"unknown command {name}; /help lists them")
    return parse(rest)


def _recipient_and_text(rest: str, usage: str) -> tuple[str, str]:
    # The text keeps its inner spacing: split once, after the name.
    recipient, _, text = rest.partition(" ")
    text = text.strip()
    if not recipient or not text:
        raise UsageError(f"usage: {usage}")
    return recipient, text


def _one_word(rest: str, usage: str) -> str:
    words = rest.split()
    if len(words) != 1:
        raise UsageError(f"usage: {usage}")
    return words[0]


def _no_arguments(rest: str, command: Command) -> Command:
    if rest:
        raise UsageError(f"/{type(command).__name__.lower()} takes nothing")
    return command


def _parse_msg(rest: str) -> Command:
    return Msg(*_recipient_and_text(rest, "/msg USER TEXT"))


def _parse_group_msg(rest: str) -> Command:
    return GroupMsg(*_recipient_and_text(rest, "/g GROUP TEXT"))


def _parse_group(rest: str) -> Command:
    action, _, rest = rest.partition(" ")
    action = action.lower()
    if action == "create":
        words = rest.split()
        if not words:
            raise UsageError("usage: /group create NAME [USER...]")
        return GroupCreate(words[0], tuple(words[1:]))
    if action in ("join", "leave", "members"):
        return _COMMANDS["/" + action](rest)
    raise UsageError("usage: /group create|join|leave|members ...")


def _parse_history(rest: str) -> Command:
    words = rest.split()
    if len(words) > 2:
        raise UsageError("usage: /history [USER|GROUP] [N]")
    target: str | None = None
    count = DEFAULT_HISTORY_COUNT
    if words and not words[-1].isdigit():
        if len(words) == 2:
            raise UsageError("usage: /history [USER|GROUP] [N]")
        target = words[0]
    elif words:
        count = int(words[-1])
        target = words[0] if len(words) == 2 else None
        if not 1 <= count <= MAX_HISTORY_COUNT:
            raise UsageError(f"N must be 1..{MAX_HISTORY_COUNT}")
    return History(target, count)


_COMMANDS: Final = {
    "/msg": _parse_msg,
    "/g": _parse_group_msg,
    "/group": _parse_group,
    "/join": lambda rest: Join(_one_word(rest, "/join GROUP")),
    "/leave": lambda rest: Leave(_one_word(rest, "/leave GROUP")),
    "/members": lambda rest: Members(_one_word(rest, "/members GROUP")),
    "/history": _parse_history,
    "/sync": lambda rest: _no_arguments(rest, Sync()),
    "/help": lambda rest: Help(),
    "/?": lambda rest: Help(),
    "/quit": lambda rest: _no_arguments(rest, Quit()),
    "/exit": lambda rest: _no_arguments(rest, Quit()),
}


# -- formatting ---------------------------------------------------------------

# Bidirectional controls: embeddings, overrides, isolates. Invisible,
# and able to show "evil.example" as "elpmaxe.live".
_BIDI_CONTROLS: Final = frozenset(
    chr(code) for code in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))
)


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def clean(text: str) -> str:
    """``text`` safe to write to a terminal: control and bidi characters
    escaped (``\\x1b``), line breaks kept as indented new lines."""
    if text.isprintable():  # the usual case, checked at C speed
        return text
    out = []
    for char in text:
        if char == "\n":
            out.append("\n    ")
        elif char in _BIDI_CONTROLS or unicodedata.category(char) == "Cc":
            out.append(_escape(char))
        else:
            out.append(char)  # printable, or harmless (a space, a ZWJ)
    return "".join(out)


def group_created(message: Message) -> tuple[str, list[str], int] | None:
    """(name, members named, how many more) when ``message`` is a
    group's GROUP_EVENT "created"; None for anything else, or for
    content this client cannot read (a newer server's event, say)."""
    if message.content_type != ContentType.GROUP_EVENT:
        return None
    return _created(message.content)


def _created(content: bytes) -> tuple[str, list[str], int] | None:
    try:
        event: Any = json.loads(content)
    except ValueError:
        return None
    if not isinstance(event, dict) or event.get("event") != "created":
        return None
    name, members = event.get("name"), event.get("members")
    more = event.get("more", 0)
    if (
        not isinstance(name, str)
        or not isinstance(members, list)
        or not isinstance(more, int)
    ):
        return None
    return name, [str(member) for member in members], more


def describe_content(content_type: int, content: bytes) -> str:
    """What to show for a message's content."""
    if content_type == ContentType.TEXT:
        return clean(content.decode("utf-8", "replace"))
    if content_type == ContentType.BINARY:
        return f"<binary, {len(content)} bytes>"
    if content_type == ContentType.GROUP_EVENT:
        created = _created(content)
        if created is not None:
            # The creator comes first and is the message's sender: the
            # line names it already.
            _, named, more = created
            with_ = ", ".join(clean(member) for member in named[1:])
            if more:
                with_ += f" and {more:,} more" if with_ else f"{more:,} more"
            if not with_:
                return "* created the group"
            return f"* created the group, with {with_}"
    return f"<content type {content_type}, {len(content)} bytes>"


def format_line(
    timestamp_ms: int,
    sender: str,
    recipient: str,
    body: str,
    *,
    tz: tzinfo | None = None,
) -> str:
    """``[HH:MM:SS] sender -> recipient: body`` (local time unless
    ``tz``); ``body`` must already be clean."""
    when = datetime.fromtimestamp(timestamp_ms / 1000, tz)
    return f"[{when:%H:%M:%S}] {clean(sender)} -> {clean(recipient)}: {body}"


def format_message(
    message: Message,
    *,
    group_names: Mapping[str, str] | None = None,
    tz: tzinfo | None = None,
) -> str:
    """One message as the chat shows it. A group appears as ``#name``
    when ``group_names`` knows it, ``#id`` otherwise."""
    recipient = message.to
    if message.chat_type == ChatType.GROUP:
        recipient = "#" + (group_names or {}).get(recipient, recipient)
    body = describe_content(message.content_type, message.content)
    return format_line(
        message.timestamp, message.from_user, recipient, body, tz=tz
    )


def format_error(error: BaseException) -> str:
    """An error as one line for the user, starting with ``!``."""
    if isinstance(error, RequestError):
        return f"! {error.code_name}: {clean(error.text)}"
    if isinstance(error, LoginFailedError):
        return f"! login refused: {error.code_name}: {clean(error.reason)}"
    if isinstance(error, ConnectionLost):
        return f"! disconnected: {clean(error.reason)}"
    return f"! {clean(str(error))}"
