"""Shoprec: a workflow-orchestrated ML platform for real-time shop recommendations."""

__version__ = "0.1.0"
