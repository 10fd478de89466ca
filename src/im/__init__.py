"""netim's instant-messaging application, laid out domain first.

``domain`` holds the entities, rules and the ports they need (standard
library only); ``application`` the use cases, on the domain;
``infrastructure`` the stores and tokens, implementing the domain's
ports; ``interfaces`` the server's pipeline handlers; ``protocol``
is the wire format that the server, the client library (``client``) and
the load generator share; ``server`` wires it all together and ``cli``
is the ``netim`` command. docs/architecture.md draws the picture.
"""
