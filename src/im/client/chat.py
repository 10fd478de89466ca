"""``netim chat``: an interactive terminal client.

    netim chat --user alice [--host H] [--port P] [--device D]
               [--token T] [--json]

It logs in, shows what arrived while the user was away (the backlog
that the server sends after login), then
reads commands at a prompt while messages keep arriving above it. The
pieces, and why each is where it is:

* ``chat_text``: parsing and formatting, plain functions (tested as
  text).
* ``ChatApp``: what each command does with a blocking ``Client``, and
  what each event shows. It writes lines through an ``out`` callable,
  so tests collect them instead of owning a terminal.
* ``interact``: the prompt. prompt_toolkit's ``patch_stdout`` makes
  lines printed from other threads (the client's loop thread, for
  pushes) appear above the line being typed instead of through it.
  Commands run on a worker thread (``asyncio.to_thread``), so the
  prompt keeps redrawing while a request waits for its reply.

The token: ``--token``, else ``NETIM_TOKEN``, else one is signed here
with the server's secret, from ``NETIM_SECRET`` (hex, as the server
reads it) or the secret file (``NETIM_SECRET_FILE``, default
``netim.secret``) when it exists: handy on the server's own machine,
useless anywhere the secret is not, which is the point. The client
never creates a secret.

Conversation ids belong to the server and are never computed here:
``/history bob`` works for a conversation the session has seen (a
message, a send, a group created or joined), which it remembers.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import threading
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import tzinfo
from pathlib import Path
from typing import Final

from prompt_toolkit import PromptSession
from prompt_toolkit.input import Input
from prompt_toolkit.output import Output
from prompt_toolkit.patch_stdout import patch_stdout

from im.protocol import (
    ChatType,
    ContentType,
    EncodeError,
    LoginOk,
    Message,
    Serializer,
    ServerAck,
)

from .blocking import Client
from .chat_text import (
    HELP,
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
    format_error,
    format_line,
    format_message,
    group_created,
    parse_command,
)
from .errors import ClientError, ConnectionLost, LoginFailedError
from .events import (
    Disconnected,
    Event,
    MessageReceived,
    ServerErrorReceived,
    SessionKicked,
)

__all__ = [
    "DEFAULT_DEVICE",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "ChatApp",
    "ConversationBook",
    "TokenUnavailable",
    "add_arguments",
    "interact",
    "main",
    "resolve_token",
    "run",
]

DEFAULT_HOST: Final = "127.0.0.1"
#: The server's default port (``im.config.Settings.port``).
DEFAULT_PORT: Final = 7700
#: One device per terminal by default. A second chat of the same user
#: with the same device replaces the first (the server kicks it), so
#: run a second one with ``--device``.
DEFAULT_DEVICE: Final = "chat"
DEFAULT_SECRET_FILE: Final = "netim.secret"

# Exit statuses: argparse's 2 for a usage error, 1 for a failure.
_FAILED: Final = 1
_USAGE: Final = 2


# -- the token ----------------------------------------------------------------


class TokenUnavailable(Exception):
    """No token given, and none can be signed here."""


def resolve_token(
    token: str | None,
    user: str | None,
    device: str,
    environ: Mapping[str, str] = os.environ,
) -> str:
    """The login token to use; see the module docstring for the order.
    Raises ``TokenUnavailable`` with what the user can do about it."""
    if token:
        return token
    if environ.get("NETIM_TOKEN"):
        return environ["NETIM_TOKEN"]
    secret = _read_secret(environ)
    if secret is None:
        raise TokenUnavailable(
            "no token: pass --token, set NETIM_TOKEN, or set NETIM_SECRET "
            "(the server's secret, hex) to sign one here; or run from the "
            f"directory where the server runs (it reads "
            f"{DEFAULT_SECRET_FILE} there)"
        )
    if not user:
        raise TokenUnavailable("--user is needed to sign a token")
    # Imported here: only this path needs the server's token module.
    from im.infrastructure.tokens import issue_token

    return issue_token(secret, user, device)


def _read_secret(environ: Mapping[str, str]) -> bytes | None:
    text = environ.get("NETIM_SECRET")
    origin = "NETIM_SECRET"
    if not text:
        path = Path(environ.get("NETIM_SECRET_FILE") or DEFAULT_SECRET_FILE)
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise TokenUnavailable(f"cannot read {path}: {exc}") from None
        origin = str(path)
    try:
        return bytes.fromhex(text.strip())
    except ValueError:
        raise TokenUnavailable(f"{origin} is not hex") from None


# -- which conversation is whose ----------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """Where plain text goes: a user or a group."""

    kind: ChatType
    name: str  # a user id, or a group id


class ConversationBook:
    """Conversation ids learned from what went by, by user and group.

    Written on the client's loop thread (pushes) and read on the command
    thread: each update is one dict assignment, atomic in CPython, and
    a reader sees the mapping before or after it, both consistent.
    """

    def __init__(self) -> None:
        self._conversations: dict[tuple[ChatType, str], str] = {}
        #: group id -> name, for groups created here or learned from a
        #: group's first message. Names are not unique: anyone may make
        #: a group and add us to it (``group_id`` then asks for the id).
        self.group_names: dict[str, str] = {}

    def note(self, target: Target, conversation_id: str) -> None:
        self._conversations[(target.kind, target.name)] = conversation_id

    def note_message(self, message: Message, me: str) -> Target:
        """Remember ``message``'s conversation; where a reply goes."""
        created = group_created(message)
        if created is not None:
            # A group someone added us to: its name comes with it.
            self.note_group(message.to, created[0], message.conversation_id)
        if message.chat_type == ChatType.GROUP:
            target = Target(ChatType.GROUP, message.to)
        else:
            peer = message.to if message.from_user == me else message.from_user
            target = Target(ChatType.DIRECT, peer)
        self.note(target, message.conversation_id)
        return target

    def note_group(self, group_id: str, name: str, conversation: str) -> None:
        if name:
            self.group_names[group_id] = name
        self.note(Target(ChatType.GROUP, group_id), conversation)

    def group_id(self, name_or_id: str) -> str:
        """A group's id from what the user typed: a name known here
        (``#team`` or ``team``), or else the id itself. A name that two
        groups known here share is refused (UsageError): guessing could
        post into a stranger's group of the same name."""
        name = name_or_id.removeprefix("#")
        if name in self.group_names or self.knows_group(name):
            return name  # an id: ids are unique, names need not be
        matches = [
            group_id
            for group_id, known in list(self.group_names.items())
            if known == name
        ]
        if len(matches) > 1:
            raise UsageError(
                f"#{clean(name)} is the name of {len(matches)} groups here "
                f"({', '.join(clean(m) for m in matches)}): use the id"
            )
        return matches[0] if matches else name

    def knows_group(self, group_id: str) -> bool:
        """Whether ``group_id`` is a group seen here (created, joined,
        or written to)."""
        return (ChatType.GROUP, group_id) in self._conversations

    def find(self, typed: str) -> tuple[Target, str] | None:
        """The target and conversation id for ``/history TYPED``: a
        user first, then a group (``#name`` means a group only)."""
        if not typed.startswith("#"):
            direct = Target(ChatType.DIRECT, typed)
            found = self._conversations.get((direct.kind, direct.name))
            if found is not None:
                return direct, found
        group = Target(ChatType.GROUP, self.group_id(typed))
        found = self._conversations.get((group.kind, group.name))
        if found is not None:
            return group, found
        return None

    def conversation_of(self, target: Target) -> str | None:
        return self._conversations.get((target.kind, target.name))


# -- the application ----------------------------------------------------------


class ChatApp:
    """What the chat does; no terminal in here (see the module docs).

    ``on_event`` is the client's callback (loop thread);
    ``handle_line`` runs one typed line (command thread) and returns
    False when the chat should end. ``on_end``, if set, is called from
    whatever thread learns that the connection is gone.
    """

    def __init__(
        self,
        out: Callable[[str], None] = print,
        *,
        tz: tzinfo | None = None,
    ) -> None:
        self.out = out
        self.tz = tz
        self.client: Client | None = None
        self.me = ""
        self.device = ""
        self.book = ConversationBook()
        self.current: Target | None = None
        self.ended = threading.Event()
        self.exit_code = 0
        self.on_end: Callable[[], None] | None = None
        #: Set when the user leaves: the close that follows is no news.
        self.quitting = False
        # Messages that arrive before ``backlog_arrived``: the backlog the
        # server sends right after login, shown under one heading once
        # the login line is out. None once shown: messages go straight
        # to the screen. The lock keeps a live message from slipping in
        # between the held ones.
        self._held: list[Message] | None = []
        self._held_lock = threading.Lock()

    # -- what arrives (client loop thread) ------------------------------------

    def on_event(self, event: Event) -> None:
        if isinstance(event, MessageReceived):
            with self._held_lock:
                if self._held is not None:
                    self._held.append(event.message)
                else:
                    self.show(event.message)
        elif isinstance(event, SessionKicked):
            pass  # Disconnected follows, with the reason
        elif isinstance(event, ServerErrorReceived):
            error = event.error
            self.out(f"! server: {event.code_name}: {clean(error.text)}")
        elif isinstance(event, Disconnected):
            # Before the login is through, ``run`` reports the failure
            # from the login's own error; saying it here too would print
            # a refused login twice.
            if not self.quitting and self.me:
                self.out(format_error(event.error))
                self.exit_code = _FAILED
            self._end()

    def show(self, message: Message) -> None:
        target = self.book.note_message(message, self.me)
        if (
            message.content_type == ContentType.GROUP_EVENT
            and message.from_user == self.me
            and message.from_device == self.device
        ):
            return  # this chat's own /group create: it said so already
        if self.current is None:
            # Nothing chosen yet: plain text answers what just came in.
            self.current = target
        self.out(
            format_message(
                message, group_names=self.book.group_names, tz=self.tz
            )
        )

    def _end(self) -> None:
        self.ended.set()
        if self.on_end is not None:
            self.on_end()

    # -- starting -------------------------------------------------------------

    def logged_in(self, ok: LoginOk) -> None:
        self.me = ok.user_id
        self.device = ok.device_id
        self.out(
            f"* logged in as {clean(ok.user_id)} on device "
            f"{clean(ok.device_id)}; /help lists the commands"
        )

    def backlog_arrived(self) -> None:
        """The server's backlog has come (``Client.wait_backlog``):
        show it, and show every later message as it arrives."""
        with self._held_lock:
            held, self._held = self._held, None
            self.show_backlog(held or [])

    def show_backlog(self, messages: list[Message]) -> None:
        # A message this very device sent can come back in its backlog:
        # the device could not yet count it as received (client/tracker.py
        # says why), so the server sends it again. It is not news here.
        news = []
        for message in messages:
            if (
                message.from_user == self.me
                and message.from_device == self.device
            ):
                self.book.note_message(message, self.me)
            else:
                news.append(message)
        if not news:
            self.out("* no new messages")
            return
        # The backlog comes conversation by conversation; read as one
        # story it goes by time. The sort is stable, and each
        # conversation's times only grow, so each keeps its own order.
        news.sort(key=lambda message: message.timestamp)
        self.out(f"* {len(news)} new while you were away:")
        for message in news:
            self.show(message)

    def prompt(self) -> str:
        current = self.current
        if current is None:
            return "> "
        if current.kind == ChatType.GROUP:
            name = self.book.group_names.get(current.name, current.name)
            return f"#{clean(name)}> "
        return f"{clean(current.name)}> "

    # -- commands (command thread) --------------------------------------------

    def handle_line(self, line: str) -> bool:
        """Run one typed line; False when the chat should end."""
        try:
            command = parse_command(line)
            if command is None:
                return True
            return self.execute(command)
        except UsageError as exc:
            self.out(f"! {exc}")
        except ConnectionLost as exc:
            if not self.ended.is_set():
                self.out(format_error(exc))
                self.exit_code = _FAILED
                self._end()
            return False
        except (ClientError, EncodeError) as exc:
            # EncodeError: something the protocol cannot carry (a group
            # name over 1,024 characters, a message over 64 KiB).
            self.out(format_error(exc))
        return True

    def execute(self, command: object) -> bool:
        client = self.client
        assert client is not None, "ChatApp.client is set before commands"
        match command:
            case Msg(user, text):
                self._send(Target(ChatType.DIRECT, user), text)
            case GroupMsg(group, text):
                group_id = self.book.group_id(group)
                self._send(Target(ChatType.GROUP, group_id), text)
            case Say(text):
                if self.current is None:
                    self.out("! to whom? /msg USER TEXT or /g GROUP TEXT")
                else:
                    self._send(self.current, text)
            case GroupCreate(name, members):
                created = client.create_group(name, members)
                self.book.note_group(
                    created.group_id, created.name, created.conversation_id
                )
                self.out(
                    f"* created #{clean(created.name)} (id "
                    f"{clean(created.group_id)}); /g "
                    f"{clean(created.name)} TEXT to write to it"
                )
            case Join(group):
                joined = client.join_group(self.book.group_id(group))
                self.book.note_group(
                    joined.group_id, "", joined.conversation_id
                )
                self.out(f"* joined #{clean(joined.group_id)}")
            case Leave(group):
                left = client.leave_group(self.book.group_id(group))
                self.out(f"* left #{clean(left.group_id)}")
            case Members(group):
                group_id = self.book.group_id(group)
                members = client.members(group_id)
                names = ", ".join(clean(member) for member in members)
                shown = self.book.group_names.get(group_id, group_id)
                self.out(f"* #{clean(shown)}: {names}")
            case History(target, count):
                self._history(target, count)
            case Sync():
                self.show_backlog(client.sync())
            case Help():
                self.out(HELP)
            case Quit():
                self.quitting = True
                return False
            case _:
                raise AssertionError(f"unhandled command {command!r}")
        return True

    def _send(self, target: Target, text: str) -> None:
        client = self.client
        assert client is not None
        ack: ServerAck
        if target.kind == ChatType.GROUP:
            ack = client.send_to_group(target.name, text)
            shown = "#" + self.book.group_names.get(target.name, target.name)
        else:
            ack = client.send_to_user(target.name, text)
            shown = target.name
        self.book.note(target, ack.conversation_id)
        self.current = target
        body = clean(text)
        self.out(format_line(ack.timestamp, self.me, shown, body, tz=self.tz))

    def _history(self, typed: str | None, count: int) -> None:
        client = self.client
        assert client is not None
        if typed is None:
            target = self.current
            conversation = target and self.book.conversation_of(target)
            if not conversation:
                self.out("! history of what? /history USER|GROUP [N]")
                return
        else:
            found = self.book.find(typed)
            if found is None:
                self.out(
                    f"! no conversation with {clean(typed)} seen yet: "
                    "send or receive a message first"
                )
                return
            _, conversation = found
        page = client.history(conversation, 0, count)
        more = ", older ones exist" if page.has_more else ""
        self.out(f"* last {len(page.messages)} messages{more}:")
        for message in page.messages:
            self.out(
                format_message(
                    message, group_names=self.book.group_names, tz=self.tz
                )
            )


# -- the terminal -------------------------------------------------------------


def interact(
    app: ChatApp,
    *,
    input: Input | None = None,
    output: Output | None = None,
    patch: bool = True,
) -> int:
    """Read commands at a prompt until /quit, Ctrl-D, Ctrl-C or the
    connection's end; returns the exit status. ``input`` and ``output``
    default to the terminal (tests pass a pipe input and a
    DummyOutput); ``patch=False`` leaves ``sys.stdout`` alone."""
    session: PromptSession[str] = PromptSession(input=input, output=output)
    return asyncio.run(_prompt_loop(app, session, patch))


async def _prompt_loop(
    app: ChatApp, session: PromptSession[str], patch: bool
) -> int:
    loop = asyncio.get_running_loop()
    prompt_app = session.app

    def stop_prompt() -> None:
        # On the prompt's loop; the prompt may not be running (between
        # two lines), in which case pre_run below catches the end.
        if prompt_app.is_running:
            prompt_app.exit(exception=EOFError())

    def check_ended() -> None:
        if app.ended.is_set():
            prompt_app.exit(exception=EOFError())

    def on_end() -> None:  # any thread
        loop.call_soon_threadsafe(stop_prompt)

    app.on_end = on_end
    try:
        with patch_stdout() if patch else nullcontext():
            while not app.ended.is_set():
                try:
                    line = await session.prompt_async(
                        app.prompt(), pre_run=check_ended
                    )
                except (EOFError, KeyboardInterrupt):
                    break
                if not await asyncio.to_thread(app.handle_line, line):
                    break
    finally:
        # The asyncio loop ends with this function; the close that
        # follows must neither reach it nor be reported as a loss.
        app.on_end = None
        app.quitting = True
    return app.exit_code


# -- the command --------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The chat's options, on ``parser`` (``netim chat`` or ``main``)."""
    parser.add_argument("--user", help="who to log in as (to sign a token)")
    # The server's own variables, so that NETIM_PORT=7701 moves both.
    parser.add_argument(
        "--host",
        default=os.environ.get("NETIM_HOST", DEFAULT_HOST),
        help="the server's address (default: NETIM_HOST, or %(default)s)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("NETIM_PORT", DEFAULT_PORT)),
        help="the server's port (default: NETIM_PORT, or %(default)s)",
    )
    parser.add_argument(
        "--device",
        default=DEFAULT_DEVICE,
        help=f"this terminal's device id (default {DEFAULT_DEVICE})",
    )
    parser.add_argument(
        "--token", help="login token (default: NETIM_TOKEN, or sign one)"
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="speak JSON instead of msgpack (to read the wire by eye)",
    )


def run(args: argparse.Namespace) -> int:
    """Run the chat with parsed ``args``; returns the exit status."""
    try:
        token = resolve_token(args.token, args.user, args.device)
    except (TokenUnavailable, ValueError) as exc:
        print(f"netim chat: {exc}", file=sys.stderr)
        return _USAGE
    app = ChatApp()
    serializer = Serializer.JSON if args.json else Serializer.MSGPACK
    try:
        client = Client.connect(
            args.host,
            args.port,
            serializer=serializer,
            on_event=app.on_event,
            queue_pushes=False,
        )
    except OSError as exc:
        print(
            f"netim chat: cannot connect to {args.host}:{args.port}: {exc}",
            file=sys.stderr,
        )
        return _FAILED
    app.client = client
    with client:
        try:
            ok = client.login(token, args.device)
            if args.user and ok.user_id != args.user:
                # A token names its user; --user cannot override it.
                print(
                    f"netim chat: the token is for {clean(ok.user_id)}, "
                    f"not {clean(args.user)}",
                    file=sys.stderr,
                )
                return _USAGE
            app.logged_in(ok)
            client.wait_backlog()
            app.backlog_arrived()
        except (LoginFailedError, ClientError) as exc:
            print(f"netim chat: {format_error(exc)[2:]}", file=sys.stderr)
            return _FAILED
        return interact(app)


def main(argv: list[str] | None = None) -> int:
    """``python -m im.client.chat``: the chat without the netim CLI."""
    parser = argparse.ArgumentParser(
        prog="netim chat", description="netim interactive chat client"
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
