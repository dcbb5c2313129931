"""Copy what `func azure functionapp publish` would deploy into a fresh script root."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.conftest import ROOT

DEPLOYED = ("host.json", "function_app.py", "functions", "shared", "local.settings.sample.json")


def copy_app(target: Path) -> Path:
    for name in DEPLOYED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, target / name)
    return target
