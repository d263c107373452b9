"""Forgetting a user everywhere the platform copied them (shoprec/privacy/forget.py), with a log
that proves it without keeping the identity (a keyed HMAC, log.py)."""
