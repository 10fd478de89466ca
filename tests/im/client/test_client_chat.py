"""The chat against the fake server: ChatApp with its output collected,
the prompt driven through a pipe, and the command's start-up paths."""

from __future__ import annotations

import argparse
import threading
import time
from datetime import UTC

import pytest
from client_fake_server import DEADLINE, token_for
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from im.client.chat import (
    ChatApp,
    TokenUnavailable,
    add_arguments,
    interact,
    main,
    resolve_token,
    run,
)
from im.client.errors import ConnectionLost
from im.client.events import Disconnected
from im.infrastructure.tokens import verify_token
from im.protocol import SendToUser

SECRET = bytes(range(32))


class Screen:
    """What the chat printed, with a way to wait for a line."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()

    def __call__(self, line: str) -> None:
        with self._changed:
            self.lines.append(line)
            self._changed.notify_all()

    def wait_for(self, text: str) -> str:
        def find() -> str | None:
            return next((x for x in self.lines if text in x), None)

        with self._changed:
            found = self._changed.wait_for(find, DEADLINE)
        assert found, f"no line with {text!r} in {self.lines}"
        return found

    def text(self) -> str:
        with self._changed:
            return "\n".join(self.lines)


@pytest.fixture
def chat(connect):
    """``chat("alice")``: a logged-in ChatApp and its Screen."""

    def make(user: str) -> tuple[ChatApp, Screen]:
        screen = Screen()
        app = ChatApp(screen, tz=UTC)
        client = connect(user, on_event=app.on_event, queue_pushes=False)
        app.client = client
        assert client.login_ok is not None
        app.logged_in(client.login_ok)
        client.wait_backlog(timeout=DEADLINE)
        app.backlog_arrived()
        return app, screen

    return make


# -- ChatApp ------------------------------------------------------------------


def test_the_backlog_is_shown_after_login(chat, server):
    server.post("bob", "alice", "are you there?")
    alice, screen = chat("alice")
    assert screen.lines[0].startswith("* logged in as alice")
    assert screen.lines[1] == "* 1 new while you were away:"
    assert screen.lines[2].startswith("[")
    assert screen.lines[2].endswith("bob -> alice: are you there?")
    alice.handle_line("/sync")
    screen.wait_for("* no new messages")


def test_the_backlog_leaves_out_this_devices_own_messages(chat, server):
    server.post("alice", "bob", "sent from this phone", device="phone")
    server.post("bob", "alice", "an answer")
    server.post("alice", "bob", "sent from the web", device="web")
    _, screen = chat("alice")
    assert screen.lines[1] == "* 2 new while you were away:"
    assert screen.lines[2].endswith("bob -> alice: an answer")
    assert screen.lines[3].endswith("alice -> bob: sent from the web")
    assert "sent from this phone" not in screen.text()


def test_the_backlog_is_shown_in_time_order(chat, server):
    # The fake server pages conversations by id: alice/bob comes before
    # alice/carol, though carol wrote first.
    first = server.post("carol", "alice", "first")
    time.sleep(0.01)  # timestamps are in milliseconds
    second = server.post("bob", "alice", "second")
    assert first.timestamp < second.timestamp
    _, screen = chat("alice")
    assert screen.lines[2].endswith("carol -> alice: first")
    assert screen.lines[3].endswith("bob -> alice: second")


def test_messages_go_out_and_come_in(chat):
    alice, alice_screen = chat("alice")
    bob, bob_screen = chat("bob")
    assert alice.handle_line("/msg bob hello bob")
    alice_screen.wait_for("alice -> bob: hello bob")
    bob_screen.wait_for("alice -> bob: hello bob")
    # Plain text goes to the conversation used last.
    assert alice.prompt() == "bob> "
    alice.handle_line("and again")
    bob_screen.wait_for("alice -> bob: and again")
    bob.handle_line("/msg alice hi!")
    alice_screen.wait_for("bob -> alice: hi!")


def test_plain_text_answers_the_first_message_that_came_in(chat):
    alice, alice_screen = chat("alice")
    bob, bob_screen = chat("bob")
    alice.handle_line("/msg bob are you there?")
    bob_screen.wait_for("alice -> bob: are you there?")
    assert bob.prompt() == "alice> "
    bob.handle_line("yes!")
    alice_screen.wait_for("bob -> alice: yes!")


def test_plain_text_needs_a_conversation_first(chat):
    alice, screen = chat("alice")
    alice.handle_line("hello?")
    screen.wait_for("! to whom?")


def test_groups_by_name(chat):
    alice, alice_screen = chat("alice")
    bob, bob_screen = chat("bob")
    alice.handle_line("/group create team bob")
    alice_screen.wait_for("* created #team")
    # Bob was added: the group's first message tells him, with its name.
    line = bob_screen.wait_for("created the group")
    assert line.endswith("alice -> #team: * created the group, with bob")
    assert bob.prompt() == "#team> "  # plain text now answers the group
    alice.handle_line("/g team hi team")
    alice_screen.wait_for("alice -> #team: hi team")
    assert alice.prompt() == "#team> "
    line = bob_screen.wait_for("hi team")
    assert "alice -> #team: hi team" in line
    alice.handle_line("/members team")
    alice_screen.wait_for("* #team: alice, bob")
    # Asked by id, a chat that knows the name still shows it.
    group_id = alice.book.group_id("team")
    bob.handle_line(f"/members {group_id}")
    bob_screen.wait_for("* #team: alice, bob")
    # The creating chat said "created" itself; the event is not news there.
    assert "created the group" not in alice_screen.text()


def test_a_name_two_groups_share_is_refused_not_guessed(chat):
    alice, alice_screen = chat("alice")
    carol, carol_screen = chat("carol")
    bob, bob_screen = chat("bob")
    alice.handle_line("/group create team bob")
    carol.handle_line("/group create team bob")
    bob_screen.wait_for("carol -> #team: * created the group")
    bob.handle_line("/g team which one?")
    bob_screen.wait_for("! #team is the name of 2 groups here (")
    # By id, each is reached.
    for user, screen in ((alice, alice_screen), (carol, carol_screen)):
        group_id = user.book.group_id("team")
        bob.handle_line(f"/g {group_id} this one")
        screen.wait_for("bob -> #team: this one")


def test_history_of_a_conversation_seen_in_the_session(chat):
    alice, screen = chat("alice")
    for n in range(3):
        alice.handle_line(f"/msg bob number {n}")
    alice.handle_line("/history bob 2")
    screen.wait_for("* last 2 messages, older ones exist:")
    assert screen.lines[-1].endswith("alice -> bob: number 2")
    alice.handle_line("/history carol")
    screen.wait_for("! no conversation with carol seen yet")


def test_refusals_are_shown_and_the_chat_goes_on(chat):
    alice, screen = chat("alice")
    assert alice.handle_line("/msg nobody hi")
    screen.wait_for("! NO_SUCH_USER")
    assert alice.handle_line("/nonsense")
    screen.wait_for("! unknown command /nonsense")
    assert alice.handle_line("/group create " + "x" * 2000)
    screen.wait_for("! CreateGroup.name")


def test_losing_the_connection_ends_the_chat(chat, server):
    alice, screen = chat("alice")
    ended = threading.Event()
    alice.on_end = ended.set
    server.peer_of("alice").close()
    assert ended.wait(DEADLINE)
    screen.wait_for("! disconnected: the server closed the connection")
    assert alice.exit_code == 1
    assert not alice.handle_line("/msg bob anyone?")


def test_a_close_before_the_login_is_through_is_left_to_run_to_report():
    # A refused login closes the connection too; ``run`` prints the
    # refusal, so the Disconnected that follows must not print again.
    screen = Screen()
    app = ChatApp(screen, tz=UTC)
    lost = ConnectionLost("the server closed the connection")
    app.on_event(Disconnected(error=lost))
    assert app.ended.is_set()
    assert screen.lines == []


def test_quit_ends_quietly(chat):
    alice, screen = chat("alice")
    assert not alice.handle_line("/quit")
    alice.client.close()
    assert alice.ended.wait(DEADLINE)
    assert alice.exit_code == 0
    assert "disconnected" not in screen.text()


# -- the prompt ---------------------------------------------------------------


def prompt_in_thread(app: ChatApp, pipe, **options) -> list[int]:
    """Run ``interact`` on its own thread; its exit status, once done."""
    status: list[int] = []
    thread = threading.Thread(
        target=lambda: status.append(
            interact(app, input=pipe, output=DummyOutput(), **options)
        )
    )
    thread.start()
    thread.join(DEADLINE)
    assert not thread.is_alive(), "the prompt did not end"
    return status


@pytest.mark.parametrize("patch", [False, True])
def test_the_prompt_runs_typed_commands_until_quit(chat, server, patch):
    alice, screen = chat("alice")
    with create_pipe_input() as pipe:
        pipe.send_text("/msg bob typed at the prompt\r/help\r/quit\r")
        assert prompt_in_thread(alice, pipe, patch=patch) == [0]
    _, _, sent = server.wait_packet(SendToUser)
    assert sent.content == b"typed at the prompt"
    screen.wait_for("/msg USER TEXT")


def test_the_prompt_ends_when_the_connection_does(chat, server):
    alice, _ = chat("alice")
    peer = server.peer_of("alice")
    # Hang up once the prompt has shown the help: by then the prompt
    # is running or about to, the two moments the end must cut short.
    out = alice.out

    def hang_up_after_help(line: str) -> None:
        out(line)
        if line.startswith("commands:"):
            peer.close()

    alice.out = hang_up_after_help
    with create_pipe_input() as pipe:
        pipe.send_text("/help\r")
        assert prompt_in_thread(alice, pipe, patch=False) == [1]


def test_ctrl_d_ends_the_prompt_and_the_close_is_quiet(chat, caplog):
    alice, screen = chat("alice")
    with create_pipe_input() as pipe:
        pipe.send_text("\x04")
        assert prompt_in_thread(alice, pipe, patch=False) == [0]
    alice.client.close()
    assert alice.ended.is_set()
    assert "disconnected" not in screen.text()
    assert caplog.records == []  # no callback failed on the way out


# -- tokens and start-up ------------------------------------------------------


def test_an_explicit_token_wins_then_the_environment():
    env = {"NETIM_TOKEN": "from-env", "NETIM_SECRET": SECRET.hex()}
    assert resolve_token("given", "alice", "chat", env) == "given"
    assert resolve_token(None, "alice", "chat", env) == "from-env"


def test_a_token_is_signed_with_the_secret_from_the_environment():
    token = resolve_token(None, "alice", "tty", {"NETIM_SECRET": SECRET.hex()})
    claims = verify_token(SECRET, token)
    assert (claims.user, claims.device) == ("alice", "tty")


def test_a_token_is_signed_with_the_secret_file(tmp_path):
    path = tmp_path / "netim.secret"
    path.write_text(SECRET.hex() + "\n")
    env = {"NETIM_SECRET_FILE": str(path)}
    token = resolve_token(None, "bob", "chat", env)
    assert verify_token(SECRET, token).user == "bob"


@pytest.mark.parametrize(
    ("user", "env", "complaint"),
    [
        ("alice", {}, "no token"),
        ("alice", {"NETIM_SECRET": "not hex"}, "NETIM_SECRET is not hex"),
        (None, {"NETIM_SECRET": SECRET.hex()}, "--user is needed"),
    ],
)
def test_without_a_token_the_user_is_told_what_to_do(
    tmp_path, user, env, complaint
):
    env.setdefault("NETIM_SECRET_FILE", str(tmp_path / "missing"))
    with pytest.raises(TokenUnavailable, match=complaint):
        resolve_token(None, user, "chat", env)


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def test_the_options_and_their_defaults(monkeypatch):
    monkeypatch.delenv("NETIM_HOST", raising=False)
    monkeypatch.delenv("NETIM_PORT", raising=False)
    args = parse("--user", "alice")
    assert (args.user, args.host, args.port) == ("alice", "127.0.0.1", 7700)
    assert (args.device, args.token, args.json) == ("chat", None, False)


def test_the_servers_variables_move_the_chat_too(monkeypatch):
    monkeypatch.setenv("NETIM_HOST", "127.0.0.2")
    monkeypatch.setenv("NETIM_PORT", "7701")
    args = parse("--user", "alice")
    assert (args.host, args.port) == ("127.0.0.2", 7701)
    assert parse("--port", "7702").port == 7702


def test_start_up_failures_exit_with_a_message(
    server, monkeypatch, tmp_path, capsys
):
    monkeypatch.chdir(tmp_path)  # no netim.secret here
    for name in ("NETIM_TOKEN", "NETIM_SECRET", "NETIM_SECRET_FILE"):
        monkeypatch.delenv(name, raising=False)
    assert main(["--user", "alice"]) == 2
    assert "no token" in capsys.readouterr().err

    port = ["--port", str(server.port)]
    assert run(parse("--token", "not-ours", *port)) == 1
    assert "login refused: BAD_TOKEN" in capsys.readouterr().err

    token = token_for("alice")
    assert run(parse("--user", "bob", "--token", token, *port)) == 2
    assert "the token is for alice, not bob" in capsys.readouterr().err

    server.close()  # nothing listens any more
    assert run(parse("--token", token_for("alice"), *port)) == 1
    assert "cannot connect" in capsys.readouterr().err
