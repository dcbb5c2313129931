"""Small helpers shared by test tiers."""

from __future__ import annotations

from shared.config import Settings

CLIENT_ID = "5a1c3b0e-6f0d-4e1a-9a52-3c0f5d9b7e21"


def app_env(**overrides: str) -> dict[str, str]:
    """A complete, valid set of app settings (Azurite defaults), with overrides."""
    env = {"AzureWebJobsStorage": "UseDevelopmentStorage=true", "MSSP_CLIENT_ID": CLIENT_ID,
           "MSSP_CLIENT_SECRET": "s3cret-value",
           "ONBOARDING_STATE_KEY": "test-state-key-0123456789-abcdefghijklmnop"}
    env.update(overrides)
    return {k: v for k, v in env.items() if v is not None}


def settings(**overrides: str) -> Settings:
    return Settings.from_env(app_env(**overrides))
