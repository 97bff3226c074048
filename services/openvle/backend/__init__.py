"""The HTTP API (FastAPI): health and monitoring, Tasks, and later the domain endpoints."""
