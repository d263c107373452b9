"""Serving: real-time recommendations over Feast online features (FastAPI)."""
