"""What faces the network: the server's pipeline handlers, the online
sessions, and the mapping between domain values and packets.

See ``handlers`` for the pipeline, ``delivery`` for how a device gets
its backlog and live messages in order, and ``sessions`` for who is
online and how flushes are batched per loop turn.
"""
