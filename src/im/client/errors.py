"""What can go wrong for a client, each kind with whose fault it is.

* The server refused a request: ``RequestError`` (an ERROR reply) or
  ``LoginFailedError`` (LOGIN_FAILED). The connection usually stays
  open; the exception carries the protocol's error code and text.
* The connection is gone: ``ConnectionLost``, and its subclass
  ``KickedError`` when the server ended the session on purpose. Every
  request still waiting fails with the same instance, so a caller can
  tell "this one connection ended" from "this one request failed".
* No answer in time: ``RequestTimeout``. The request may still have
  reached the server (a send may be stored); a send is resent safely
  with the same client message id.
* The server broke the protocol: ``UnexpectedReplyError`` (a reply of
  the wrong type for the request it names).

Error codes are plain integers on the wire and a newer server may send
codes this client does not know, so every exception keeps the integer
and offers a ``code_name`` that falls back to the code's family.
"""

from __future__ import annotations

from im.protocol import ErrorCode

__all__ = [
    "ClientError",
    "ConnectionLost",
    "KickedError",
    "LoginFailedError",
    "RequestError",
    "RequestTimeout",
    "UnexpectedReplyError",
    "code_name",
]

# The thousands of a code say its family (docs/protocol.md, "Errors");
# an unknown code is named after it, as the protocol asks peers to do.
_FAMILIES = {
    1: "PROTOCOL",
    2: "SESSION",
    3: "REQUEST",
    5: "SERVER",
}


def code_name(code: int) -> str:
    """``ErrorCode`` name of ``code``, or its family for unknown codes
    (``"UNKNOWN_SESSION_2999"``)."""
    try:
        return ErrorCode(code).name
    except ValueError:
        family = _FAMILIES.get(code // 1000, "CODE")
        return f"UNKNOWN_{family}_{code}"


class ClientError(Exception):
    """Base of every error this package raises on purpose."""


class RequestError(ClientError):
    """The server answered a request with ERROR.

    ``code`` is the wire integer (see ``code_name``), ``text`` the
    server's explanation, ``will_close`` whether the server closes the
    connection after it.
    """

    def __init__(
        self, code: int, text: str, *, will_close: bool, request_id: int
    ) -> None:
        super().__init__(f"{code_name(code)} ({code}): {text}")
        self.code = code
        self.text = text
        self.will_close = will_close
        self.request_id = request_id

    @property
    def code_name(self) -> str:
        return code_name(self.code)


class LoginFailedError(ClientError):
    """LOGIN_FAILED: the token was refused (the server then closes)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"login failed: {code_name(code)} ({code}): {reason}")
        self.code = code
        self.reason = reason

    @property
    def code_name(self) -> str:
        return code_name(self.code)


class ConnectionLost(ClientError, ConnectionError):
    """The connection ended; ``reason`` says how, for people."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class KickedError(ConnectionLost):
    """The server ended the session with KICKED (REPLACED by a newer
    login of this device, SLOW_CONSUMER, SERVER_SHUTDOWN...)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"kicked: {code_name(code)} ({code}): {reason}")
        self.code = code
        self.kick_reason = reason

    @property
    def code_name(self) -> str:
        return code_name(self.code)


class RequestTimeout(ClientError, TimeoutError):
    """No reply in time. The connection may still be fine; the request
    may or may not have been carried out."""


class UnexpectedReplyError(ClientError):
    """The server answered a request with a packet that cannot answer
    it (a PONG to a SEND_TO_USER, an ack for another message): a server
    bug, reported rather than guessed around."""
