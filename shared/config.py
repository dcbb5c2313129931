"""Every app setting the code reads, in one place, validated once.

The registry (`SETTINGS`) is the single source for `local.settings.sample.json`, the
README's settings table and the infra drift test, so a setting cannot be read without
being declared, documented and deployed.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass

from shared.storage.connection import StorageConnection


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names it but never its value."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"app setting {name}: {problem}")
        self.setting = name


@dataclass(frozen=True)
class Setting:
    """One app setting: its name, what it means, its default (None: no default)."""

    name: str
    help: str
    default: str | None = None
    secret: bool = False


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "FUNCTIONS_WORKER_RUNTIME",
        "Language worker the Functions host starts; always `python`.",
        default="python",
    ),
    Setting(
        "AzureWebJobsStorage",
        "Storage connection string for the host and the app (queues and tables). "
        "Locally `UseDevelopmentStorage=true` (Azurite); in Azure use the identity-based "
        "`AzureWebJobsStorage__*` settings instead.",
        secret=True,
    ),
    Setting(
        "AzureWebJobsStorage__queueServiceUri",
        "Identity-based storage: the queue service URI (used when AzureWebJobsStorage is unset).",
    ),
    Setting(
        "AzureWebJobsStorage__tableServiceUri",
        "Identity-based storage: the table service URI (used when AzureWebJobsStorage is unset).",
    ),
    Setting(
        "AzureWebJobsStorage__credential",
        "Identity-based storage: `managedidentity` to use the app's managed identity; "
        "otherwise DefaultAzureCredential.",
    ),
    Setting(
        "AzureWebJobsStorage__clientId",
        "Identity-based storage: client id of the user-assigned managed identity.",
    ),
)

SETTING_NAMES = frozenset(s.name for s in SETTINGS)


@dataclass(frozen=True)
class Settings:
    """The validated settings the app runs with."""

    storage: StorageConnection

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        runtime = env.get("FUNCTIONS_WORKER_RUNTIME", "python")
        if runtime != "python":
            raise SettingsError("FUNCTIONS_WORKER_RUNTIME", "must be `python`")
        return cls(storage=StorageConnection.from_env(env, "AzureWebJobsStorage"))


@functools.cache
def get_settings() -> Settings:
    """Read and validate the process's settings once; raises SettingsError naming the culprit."""
    return Settings.from_env(os.environ)
