"""Keyset pagination of the list endpoints: the query parameters, the cursor, the next link.

A list endpoint answers a JSON array of at most ``limit`` rows of a stable total order: its sort
columns with the primary key last as the tie-breaker. While more rows follow, the response
carries ``Link: </v1/...?limit=N&cursor=...>; rel="next"`` (RFC 8288, the request's other query
parameters kept) and ``X-Next-Cursor``; the last page has neither. The next page is read with a
row comparison, ``(sort columns) > (the last row's values)``, never OFFSET: a deep page costs
what the first does, and a row removed meanwhile shifts nothing, so no row is given twice.

The cursor is opaque to clients: unpadded urlsafe base64 of a JSON array of the last row's sort
values. Anything that does not decode to values of the endpoint's sort columns is a 422 with the
JSON error body, like FastAPI's own validation errors.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, Query, Request, Response
from sqlalchemy import Select, literal, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from app.db import Base
from app.errors import AppError
from app.schemas import NUL

DEFAULT_LIMIT = 100
MAX_LIMIT = 500
# Room for the longest sort key: a timestamp, a 320-character e-mail and a uuid.
MAX_CURSOR_LENGTH = 1024

T = TypeVar("T")


class InvalidCursor(AppError):
    """A cursor this API did not give out: the same 422 as FastAPI's validation errors."""

    status_code = 422
    code = "validation_error"

    def __init__(self, reason: str) -> None:
        error = {"type": "value_error", "loc": ["query", "cursor"], "msg": f"invalid: {reason}"}
        super().__init__("the request is invalid", details={"errors": [error]})


@dataclass(frozen=True)
class PageRequest:
    """Which page a client asked for: its size, and where the previous one ended."""

    limit: int = DEFAULT_LIMIT
    cursor: str | None = None


@dataclass(frozen=True, kw_only=True)
class ListRequest(PageRequest):
    """A list endpoint's page request, with the request and response its next link needs."""

    request: Request
    response: Response

    def answer(self, page: Page[T]) -> list[T]:
        """The rows of ``page``, with the response pointing at the page after it."""
        link_next_page(self.request, self.response, page)
        return page.items


def _page_request(
    request: Request,
    response: Response,
    limit: Annotated[
        int,
        Query(
            ge=1,
            le=MAX_LIMIT,
            description=f"The most rows to answer (1 to {MAX_LIMIT}).",
        ),
    ] = DEFAULT_LIMIT,
    cursor: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=MAX_CURSOR_LENGTH,
            pattern="^[A-Za-z0-9_-]+$",
            description=(
                "Where the previous page ended: its `X-Next-Cursor` header (also in its `Link`)."
                " Opaque; omit it for the first page."
            ),
        ),
    ] = None,
) -> ListRequest:
    return ListRequest(limit=limit, cursor=cursor, request=request, response=response)


# The ``limit`` and ``cursor`` query parameters of a list endpoint; ``answer`` sets its links.
PageParams = Annotated[ListRequest, Depends(_page_request)]

# ``responses=`` of a list endpoint: the headers of its 200 in the OpenAPI document.
PAGINATED_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "One page of rows, in the endpoint's order.",
        "headers": {
            "Link": {
                "description": (
                    'The next page, `</v1/...?limit=N&cursor=...>; rel="next"` (RFC 8288), with'
                    " the request's other query parameters. Absent on the last page."
                ),
                "schema": {"type": "string"},
            },
            "X-Next-Cursor": {
                "description": "The `cursor` of the next page. Absent on the last page.",
                "schema": {"type": "string"},
            },
        },
    }
}


@dataclass(frozen=True)
class Page(Generic[T]):
    """Up to ``limit`` rows, and the cursor of the rows after them (None on the last page)."""

    items: list[T]
    limit: int
    next_cursor: str | None


async def fetch_page(
    session: AsyncSession,
    query: Select[T],
    *,
    order: Sequence[InstrumentedAttribute[Any]],
    page: PageRequest,
    descending: bool = False,
) -> Page[T]:
    """One page of ``query`` (not yet ordered) in ``order``, the primary key last.

    ``order`` must be a total order of the rows (unique as a whole); every column goes the
    same way, ascending or ``descending``, so a single row comparison finds the next page.
    """
    key = tuple_(*order)
    if page.cursor is not None:
        after = decode_cursor(page.cursor, [column.type.python_type for column in order])
        bound = tuple_(
            *(literal(value, column.type) for value, column in zip(after, order, strict=True))
        )
        query = query.where(key < bound if descending else key > bound)
    sort = [column.desc() if descending else column.asc() for column in order]
    # One row more than asked says whether there is a next page.
    rows = list(await session.scalars(query.order_by(*sort).limit(page.limit + 1)))
    if len(rows) <= page.limit:
        return Page(items=rows, limit=page.limit, next_cursor=None)
    rows = rows[: page.limit]
    last = [getattr(rows[-1], column.key) for column in order]
    return Page(items=rows, limit=page.limit, next_cursor=encode_cursor(last))


Row = TypeVar("Row", bound=Base)


async def family_rows_oldest_first(
    session: AsyncSession, model: type[Row], *, family_id: uuid.UUID, page: PageRequest
) -> Page[Row]:
    """A page of ``family_id``'s rows of ``model``, oldest first: by ``created_at``, then ``id``.

    ``model`` has ``id``, ``family_id`` and ``created_at`` columns (mypy cannot say so of a
    mapped class, hence ``columns``).
    """
    columns: Any = model
    return await fetch_page(
        session,
        select(model).where(columns.family_id == family_id),
        order=(columns.created_at, columns.id),
        page=page,
    )


def encode_cursor(values: Sequence[object]) -> str:
    """The opaque cursor of a row's sort values (timestamps, uuids, text)."""
    items: list[str] = []
    for value in values:
        if isinstance(value, datetime):
            items.append(value.isoformat())
        elif isinstance(value, uuid.UUID | str):
            items.append(str(value))
        else:
            raise TypeError(f"no cursor encoding for {type(value).__name__}")
    raw = json.dumps(items, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, types: Sequence[type]) -> list[object]:
    """The sort values in ``cursor``, one of each of ``types``; anything else is InvalidCursor."""
    try:
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
        values = json.loads(raw)
    except (binascii.Error, ValueError, RecursionError) as exc:
        raise InvalidCursor("not a cursor of this list") from exc
    if not isinstance(values, list) or len(values) != len(types):
        raise InvalidCursor("not a cursor of this list")
    return [_decode_value(value, kind) for value, kind in zip(values, types, strict=True)]


def _decode_value(value: object, kind: type) -> object:
    # Postgres text cannot hold NUL: the query would fail in the driver (a 500).
    if not isinstance(value, str) or NUL in value:
        raise InvalidCursor("not a cursor of this list")
    try:
        if kind is datetime:
            moment = datetime.fromisoformat(value)
            if moment.tzinfo is None:
                raise ValueError("a cursor's timestamps have a time zone")
            # Raises OverflowError before year 1 or after year 9999 in UTC.
            return moment.astimezone(UTC)
        if kind is uuid.UUID:
            return uuid.UUID(value)
    except (ValueError, OverflowError) as exc:
        raise InvalidCursor("not a cursor of this list") from exc
    if kind is str:
        return value
    raise TypeError(f"no cursor decoding for {kind.__name__}")


def link_next_page(request: Request, response: Response, page: Page[Any]) -> None:
    """Point ``response`` at the page after ``page``, if there is one.

    The link is a path-absolute reference (``</v1/...>``), right behind any proxy; it keeps the
    request's other query parameters (filters) and sets ``limit`` and ``cursor``.
    """
    if page.next_cursor is None:
        return
    url = request.url.include_query_params(limit=page.limit, cursor=page.next_cursor)
    response.headers["Link"] = f'<{url.path}?{url.query}>; rel="next"'
    response.headers["X-Next-Cursor"] = page.next_cursor
