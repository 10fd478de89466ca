"""Fixtures for the client's real-socket tests: a fake server, and
clients that are closed (loop thread joined, socket released) whatever
the test did, so no thread or ResourceWarning outlives a test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from client_fake_server import FakeServer, token_for

from im.client import Client


@pytest.fixture
def server() -> Iterator[FakeServer]:
    with FakeServer() as fake:
        yield fake


@pytest.fixture
def connect(server: FakeServer) -> Iterator[Callable[..., Client]]:
    """``connect("alice")``: a Client logged in as alice (device
    "phone" unless ``device=`` says otherwise); ``login=False`` skips
    the login. Other keywords go to ``Client.connect``."""
    clients: list[Client] = []

    def make(
        user: str | None = None,
        *,
        device: str = "phone",
        login: bool = True,
        **options: Any,
    ) -> Client:
        options.setdefault("request_timeout", 5.0)
        client = Client.connect(server.host, server.port, **options)
        clients.append(client)
        if login and user is not None:
            client.login(token_for(user), device)
        return client

    yield make
    for client in clients:
        client.close()
