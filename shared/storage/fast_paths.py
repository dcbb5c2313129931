"""One switch back to the SDK for the two hand-written storage paths (the lean `$batch`
of batch.py and the fan-out's queue sender of queue_sender.py).

They exist for speed (measured in bench/); `STORAGE_FAST_PATHS=false` makes both call the
SDK's own `TableClient.submit_transaction` and `QueueClient.send_message` instead, with the
same rows and the same base64 messages, so a suspected fault in them can be ruled out by
one setting. Read per call (one dictionary lookup); validated at start-up with the other
settings (shared/config.py).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from shared.settings_error import SettingsError

SETTING = "STORAGE_FAST_PATHS"


def enabled(env: Mapping[str, str] | None = None) -> bool:
    """Whether the fast paths are on (the default); SettingsError for a value that is
    neither true nor false."""
    value = (os.environ if env is None else env).get(SETTING, "").strip().lower() or "true"
    if value not in ("true", "false"):
        raise SettingsError(SETTING, "must be true or false")
    return value == "true"
