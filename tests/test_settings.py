"""Secure by default: a deployment that sets nothing refuses to run with placeholder secrets."""

from __future__ import annotations

import os
import subprocess
import sys

import pydantic
import pytest

from app import vapid_keys
from app.settings import Settings
from bench.harness import scratch_database
from tests.harness import REPO_ROOT, free_port

REAL_SECRET = "s" * 40


@pytest.fixture
def bare_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No APP_ setting at all, as on a platform running the Procfile with only DATABASE_URL."""
    for name in list(os.environ):
        if name.startswith("APP_"):
            monkeypatch.delenv(name)


def deployment_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APP_", "DISPATCHER_"))}
    return {**env, "DATABASE_URL": database_url, "PYTHONUNBUFFERED": "1", **extra}


@pytest.mark.usefixtures("bare_environment")
def test_settings_default_to_production_and_refuse_the_placeholder_secret() -> None:
    with pytest.raises(pydantic.ValidationError, match="APP_JWT_SECRET"):
        Settings()
    with pytest.raises(pydantic.ValidationError, match="at least 32 characters"):
        Settings(jwt_secret="short")
    settings = Settings(jwt_secret=REAL_SECRET)
    assert settings.environment == "production"
    # No VAPID keys in production: push is off rather than signed with the committed pair.
    assert not settings.web_push_enabled
    with pytest.raises(pydantic.ValidationError, match="development VAPID key pair"):
        Settings(jwt_secret=REAL_SECRET, vapid_private_key=vapid_keys.DEVELOPMENT_PRIVATE_KEY)
    # Development has to be asked for; then the placeholders are fine.
    assert Settings(environment="development").jwt_secret == "change-me-in-production"


@pytest.mark.parametrize(
    "argv",
    [
        ["-m", "uvicorn", "app.main:create_app", "--factory", "--port", "{port}"],
        ["-m", "dispatcher"],
    ],
    ids=["web", "dispatcher"],
)
def test_procfile_processes_refuse_to_start_without_a_secret(
    argv: list[str], database_url: str
) -> None:
    args = [a.format(port=free_port()) for a in argv]
    completed = subprocess.run(
        [sys.executable, *args],
        env=deployment_env(database_url, DISPATCHER_METRICS_PORT="0"),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert completed.returncode != 0
    assert "APP_JWT_SECRET" in completed.stdout + completed.stderr
    # The error names the setting, never a secret.
    assert "change-me-in-production" not in completed.stdout + completed.stderr


def test_the_release_phase_needs_only_the_database(server_url: str) -> None:
    with scratch_database(server_url, "family_release_check") as database_url:
        completed = subprocess.run(
            [sys.executable, "-m", "alembic", "upgrade", "head"],
            env=deployment_env(database_url),
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert completed.returncode == 0, completed.stderr
