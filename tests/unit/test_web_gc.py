"""The web process collects young garbage rarely: with CPython's default (a first-generation
collection every 700 allocations), a burst of emits to thousands of sockets sets off collections
that walk every socket's long-lived objects (app.main.GC_FIRST_GENERATION_THRESHOLD)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from app.main import create_app
from app.settings import Settings


@pytest.fixture
def restored_thresholds() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)


@pytest.mark.usefixtures("restored_thresholds")
def test_building_the_web_app_raises_the_first_generation_threshold() -> None:
    gc.set_threshold(700, 10, 10)  # CPython's default
    create_app(
        Settings(
            environment="test",
            database_url="postgresql://nobody@127.0.0.1:1/none",  # never connected to
            jwt_secret="unit-test-secret-" + "x" * 40,
        )
    )
    first, second, third = gc.get_threshold()
    assert first >= 10_000
    assert (second, third) == (10, 10)  # the older generations as CPython has them
