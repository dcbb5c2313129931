"""What `func azure functionapp publish` ships: runtime requirements only, no dev tools."""

from __future__ import annotations

import ast
import fnmatch
import sys

from tests.conftest import ROOT

DEPLOYED_CODE = ["function_app.py", "functions", "shared"]
# import name -> distribution name, where they differ
DISTRIBUTIONS = {"azure.functions": "azure-functions", "azure.identity": "azure-identity",
                 "azure.storage.queue": "azure-storage-queue",
                 "azure.data.tables": "azure-data-tables", "azure.core": "azure-core",
                 "jwt": "pyjwt"}
# pulled in by the packages above; pinned through them
TRANSITIVE = {"azure-core"}


def _requirements() -> set[str]:
    names = set()
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            names.add(line.split("==")[0].split(">=")[0].split("[")[0].strip().lower())
    return names


def _imports(entries: list[str] = DEPLOYED_CODE) -> set[str]:
    found = set()
    for entry in entries:
        path = ROOT / entry
        for file in [path] if path.is_file() else path.rglob("*.py"):
            for node in ast.walk(ast.parse(file.read_text())):
                if isinstance(node, ast.Import):
                    found.update(alias.name for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    found.add(node.module)
    return found


def _distribution(module: str) -> str | None:
    top = module.split(".")[0]
    if top in sys.stdlib_module_names or top in ("functions", "shared", "function_app"):
        return None
    for prefix, dist in DISTRIBUTIONS.items():
        if module == prefix or module.startswith(prefix + "."):
            return dist
    return top.replace("_", "-").lower()


def test_deployed_code_imports_only_what_requirements_install():
    needed = {d for m in _imports() if (d := _distribution(m))}
    missing = needed - _requirements() - TRANSITIVE
    assert not missing, f"imported by deployed code but not in requirements.txt: {missing}"


def test_requirements_hold_no_worker_and_no_dev_tools():
    reqs = _requirements()
    assert "azure-functions" in reqs
    assert "azure-functions-worker" not in reqs
    assert not reqs & {"pytest", "ruff", "trustme", "croniter", "aiosmtpd"}


def test_shared_never_imports_azure_functions():
    assert not any(m == "azure.functions" or m.startswith("azure.functions.")
                   for m in _imports(["shared"]))
    assert "azure.functions" in _imports(["functions"])  # the check does see imports


def test_funcignore_keeps_tests_and_dev_tools_out():
    patterns = [p.strip() for p in (ROOT / ".funcignore").read_text().splitlines()
                if p.strip() and not p.startswith("#")]

    def ignored(path: str) -> bool:
        return any(fnmatch.fnmatch(path, p.rstrip("/")) or path.startswith(p.rstrip("/") + "/")
                   or fnmatch.fnmatch(path, p) for p in patterns)

    for path in ["tests/unit/test_config.py", "devhost/host.py", "node_modules/azurite",
                 ".venv/bin/python", "local.settings.json", "requirements-dev.txt",
                 ".local/azurite", "package.json", "tools/mssp.py", "devtools/run.py",
                 "bench/harness.py", "docs/settings.md"]:
        assert ignored(path), f"{path} would be deployed"
    for path in ["function_app.py", "host.json", "requirements.txt", "shared/config.py",
                 "functions/health.py"]:
        assert not ignored(path), f"{path} would be left out of the deployment"
