"""The embedded durable store: one node's routing state in a SQLite file (see database.py)."""
