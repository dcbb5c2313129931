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


def clear_service_caches() -> None:
    """Every service the wiring caches (a new one is cleared without being listed here):
    the next call reads the settings of the test's environment."""
    from shared import services  # the wiring, imported by the tests that rewire it only

    services.get_settings.cache_clear()
    for value in vars(services).values():
        if getattr(value, "__module__", "") == services.__name__ and hasattr(value,
                                                                            "cache_clear"):
            value.cache_clear()
