"""Database access: engine and sessions (engine.py), models (models.py), schema upgrades (schema.py)."""
