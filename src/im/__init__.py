"""netim's instant-messaging application.

Laid out domain first (see docs/architecture.md). So far it holds
``im.protocol``, the wire format that the server, the client library and
the load generator share.
"""
