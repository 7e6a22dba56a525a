"""`bertkit serve`: an HTTP service over a run directory or an export folder (FastAPI + uvicorn)."""

from bertkit.serve.app import ServeSettings, create_app

__all__ = ["ServeSettings", "create_app"]
