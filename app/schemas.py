"""The base of every JSON model on the wire: camelCase outside, snake_case inside."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, model_validator
from pydantic.alias_generators import to_camel

# Postgres text cannot hold NUL, so such input would fail deep in the driver (a 500).
NUL = "\x00"


def _refuse_nul(value: Any) -> None:
    if isinstance(value, str):
        if NUL in value:
            raise ValueError("text must not contain NUL (U+0000) characters")
    elif isinstance(value, dict):
        for key, item in value.items():
            _refuse_nul(key)
            _refuse_nul(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _refuse_nul(item)


class CamelModel(BaseModel):
    """A pydantic model serialised with camelCase keys, as the seed's contracts are."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, from_attributes=True, extra="forbid"
    )

    @model_validator(mode="before")
    @classmethod
    def no_nul_characters(cls, data: Any) -> Any:
        _refuse_nul(data)
        return data


def _readable_moment(value: datetime) -> datetime:
    # 0001-01-01T00:00+05:00 is before year 1 in UTC, 9999-12-31T23:00-05:00 after year 9999:
    # stored, neither could be read back. Nothing in a family's calendar is outside these years.
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        utc = None
    if utc is None or not 1970 <= utc.year <= 9999:
        raise ValueError("must be a date between 1970 and 9999")
    return value


# A client-given point in time that the database stores and gives back intact.
Moment = Annotated[datetime, AfterValidator(_readable_moment)]
