"""Kettle & Co.'s customer-support agent."""

from .agent import Reply, SupportAgent
from .tools import Action, Tools

__all__ = ["Action", "Reply", "SupportAgent", "Tools"]
