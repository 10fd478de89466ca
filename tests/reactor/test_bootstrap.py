"""Bootstraps: connecting clients."""

from reactor import EventLoop


def test_connect_by_name_resolves_off_the_loop():
    """A host name is resolved on a helper thread (getaddrinfo blocks);
    the connection itself is made on the loop as usual."""
    import threading

    from reactor import Bootstrap, ServerBootstrap

    loop = EventLoop()
    try:
        server = ServerBootstrap(loop).bind("127.0.0.1", 0)
        port = server.local_address[1]
        resolved_on = []
        original = Bootstrap._resolve

        def spy(self, *args):
            resolved_on.append(threading.current_thread())
            original(self, *args)

        Bootstrap._resolve = spy
        try:
            connected = Bootstrap(loop).connect("localhost", port)
            loop.call_later(5.0, loop.stop)  # a bound
            channel = loop.run_until_complete(connected)
        finally:
            Bootstrap._resolve = original
        assert channel.is_active
        assert resolved_on and resolved_on[0] is not threading.main_thread()
        channel.close()
        server.close()
        loop.call_later(0.01, loop.stop)
        loop.run()
    finally:
        loop.close()
