"""What the web app's routes share: the workspace, the upload limit and the models loaded for "Try it"
(kept on `app.state.ui`), and the one shape of an error answer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request

from bertkit.ui.workspace import Workspace

__all__ = ["UiState", "UI", "error", "ui_state"]


@dataclass
class UiState:
    ws: Workspace
    max_upload_mb: float
    predictors: dict[str, tuple[float, Any]] = field(default_factory=dict)  # run -> (results.json mtime, Predictor)

    @property
    def upload_limit(self) -> int:
        return int(self.max_upload_mb * 2**20)


def ui_state(request: Request) -> UiState:
    """The app's state, for a route (a FastAPI dependency)."""
    return request.app.state.ui


#: A route's parameter `ui: UI` receives the app's state.
UI = Annotated[UiState, Depends(ui_state)]


def error(status: int, message: str):
    """A JSON error {"error": message}, config keys said with their flags (`--lr (train.lr)`)."""
    from fastapi.responses import JSONResponse

    from bertkit.config_flags import with_flags

    return JSONResponse(status_code=status, content={"error": with_flags(message)})
