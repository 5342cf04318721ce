"""The application's error hierarchy and the one handler that turns it into JSON responses."""

from __future__ import annotations

import math
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException


class AppError(Exception):
    """Base of every error a client may see; subclasses fix the status and code."""

    status_code: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class Unauthorized(AppError):
    status_code = 401
    code = "unauthorized"


class Forbidden(AppError):
    status_code = 403
    code = "forbidden"


class NotFound(AppError):
    status_code = 404
    code = "not_found"


class AlreadyExists(AppError):
    status_code = 409
    code = "already_exists"


class Conflict(AppError):
    status_code = 409
    code = "conflict"


class TooManyRequests(AppError):
    status_code = 429
    code = "too_many_requests"

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message, details={"retryAfterSeconds": math.ceil(retry_after)})
        self.retry_after = math.ceil(retry_after)


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: dict[str, Any]


class ErrorBody(BaseModel):
    """The JSON error shape shared by every 4xx/5xx answer (``error_body``)."""

    error: ErrorDetail


# Declared once for every operation (``FastAPI(responses=...)``): any 4xx carries the error body.
# It also takes the place of FastAPI's own 422 entry, whose ``detail`` shape is never sent.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": ErrorBody, "description": "Refused; `error.code` says why"},
}


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    """The JSON error shape shared by every 4xx/5xx answer."""
    return {"error": {"code": code, "message": message, "details": details or {}}}


def install_error_handlers(app: FastAPI) -> None:
    """Map AppError, validation errors and HTTP errors onto the one JSON error shape."""

    async def app_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, AppError)
        body = error_body(exc.code, exc.message, exc.details)
        headers = (
            {"Retry-After": str(exc.retry_after)} if isinstance(exc, TooManyRequests) else None
        )
        return JSONResponse(body, status_code=exc.status_code, headers=headers)

    async def validation_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = jsonable_encoder(exc.errors(), exclude={"ctx", "url", "input"})
        body = error_body("validation_error", "the request is invalid", {"errors": errors})
        return JSONResponse(body, status_code=422)

    async def http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = "not_found" if exc.status_code == 404 else "http_error"
        body = error_body(code, str(exc.detail))
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    app.add_exception_handler(AppError, app_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
