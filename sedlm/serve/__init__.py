"""HTTP API and the live page: ``sedlm serve --ckpt DIR`` (see ``sedlm.serve.app``).

``Limits`` imports nothing heavy; the app and server helpers load FastAPI and uvicorn on first use."""

from typing import Any

from sedlm.serve.limits import Limits

__all__ = ["Limits", "create_app", "serve_forever", "server_thread"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from sedlm.serve.app import create_app

        return create_app
    if name in ("serve_forever", "server_thread"):
        from sedlm.serve import server

        return getattr(server, name)
    raise AttributeError(f"module 'sedlm.serve' has no attribute '{name}'")
