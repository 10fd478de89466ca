"""What the domain refuses, and whose fault it is.

Every error here is the *client's* (a request the rules do not allow);
the server's own failures are ordinary exceptions. Each class names the
protocol error it becomes in ``error_name`` (an ``ErrorCode`` member's
name), so the interface layer maps by name and this package stays free
of the protocol's imports.
"""

from __future__ import annotations


class DomainError(Exception):
    """A request that the IM rules refuse. Not a server failure."""

    error_name = "INVALID_ARGUMENT"


class InvalidArgument(DomainError):
    """A well-formed value that the server will not take."""

    error_name = "INVALID_ARGUMENT"


class NoSuchGroup(DomainError):
    error_name = "NO_SUCH_GROUP"


class NotAMember(DomainError):
    """Only members may send to, read or list a group."""

    error_name = "NOT_A_MEMBER"


class NoSuchConversation(DomainError):
    """The conversation does not exist, or the user takes no part in it."""

    error_name = "NO_SUCH_CONVERSATION"


class GroupFull(DomainError):
    """A join or a create that would pass ``MAX_GROUP_MEMBERS``."""

    error_name = "INVALID_ARGUMENT"
