"""General-purpose handlers that any protocol can put in its pipeline."""

from .idle import IdleState, IdleStateEvent, IdleStateHandler

__all__ = ["IdleState", "IdleStateEvent", "IdleStateHandler"]
