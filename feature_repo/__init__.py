"""Feast definitions of Shoprec. `names` holds every name; `definitions.build()` makes the objects
for one dataset's exports. The `feast` CLI reads `repo.py` only (see .feastignore)."""
