"""The import layering, read from the source: who may import whom.

Every `import` counts, at module level or inside a function (a late import hides a
dependency from the reader, not from the design). The rules:

* `shared/` is plain Python: it never imports `functions` or `azure.functions`;
* deployed code (`shared/`, `functions/`, `function_app.py`) never imports the dev tools
  (`devtools`, `devhost`, `tools`, `tests`, `bench`), nor the in-memory fakes
  (`shared/storage/memory/`), which only tests and dev tools use;
* no cycles among the modules of `shared/`;
* the core (plain data, codecs, settings, checks, queue message contracts) imports
  nothing of the features;
* `shared/` is the core, the wiring (`services.py`) and feature packages: a new
  top-level module is either core or belongs in a package;
* only the entry layer (`functions/`) imports the wiring.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

DEV_TOOLS = ("devtools", "devhost", "tools", "tests", "bench")
FAKES = "shared.storage.memory"

# The small core that every feature may import and that imports no feature.
CORE = frozenset({
    "shared.model", "shared.codec", "shared.timefmt", "shared.logsafe", "shared.config",
    "shared.settings_error", "shared.validation", "shared.addresses", "shared.netloc",
    "shared.messages",
})
WIRING = "shared.services"
FEATURES = ("shared.alerts", "shared.ingest", "shared.microsoft", "shared.tenants", "shared.notify",
            "shared.siem", "shared.portal", "shared.ops", "shared.storage", "shared.web",
            "shared.triage", "shared.correlation")
# What the core may import besides itself: the storage connection the settings resolve,
# the Azure limits it checks every write against, and the STORAGE_FAST_PATHS switch the
# settings validate. None imports a feature.
CORE_MAY_IMPORT = frozenset({"shared.storage.connection", "shared.storage.limits",
                             "shared.storage.fast_paths"})
# Known exceptions, each with its reason. Do not add to this list: break the dependency.
# The test fails when an entry is no longer true, so the list can only shrink.
CORE_EXCEPTIONS = {
    # Settings.from_env validates SIEM_OUTPUTS at start-up with the SIEM output model
    # (a leaf: it imports only shared.model and shared.settings_error).
    ("shared.config", "shared.siem.outputs"),
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _deployed_files() -> dict[str, Path]:
    files = {_module_name(p): p for base in ("shared", "functions")
             for p in sorted((ROOT / base).rglob("*.py"))}
    files["function_app"] = ROOT / "function_app.py"
    return files


MODULES = _deployed_files()


def _imports(name: str, path: Path) -> set[str]:
    """Every module `name` imports, anywhere in the file; `from p import m` names the
    submodule p.m when there is one."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            subs = {f"{module}.{a.name}" for a in node.names} & MODULES.keys()
            found.update(subs)
            if len(subs) < len(node.names):
                found.add(module)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _within(module: str, roots: tuple[str, ...] | str) -> bool:
    roots = (roots,) if isinstance(roots, str) else roots
    return any(module == r or module.startswith(r + ".") for r in roots)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in graph:
                    continue
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def test_the_graph_is_read_from_the_source_including_late_imports():
    assert "shared.storage.connection" in GRAPH["shared.config"]
    assert "shared.siem.outputs" in GRAPH["shared.config"]  # imported inside a method
    assert "azure.functions" in GRAPH["function_app"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_shared_never_imports_functions_or_azure_functions():
    bad = sorted((m, i) for m, imports in GRAPH.items() if _within(m, "shared")
                 for i in imports if _within(i, ("functions", "azure.functions")))
    assert not bad


def test_deployed_code_never_imports_dev_tools_or_fakes():
    bad = sorted((m, i) for m, imports in GRAPH.items() for i in imports
                 if _within(i, DEV_TOOLS) or (_within(i, FAKES) and not _within(m, FAKES)))
    assert not bad


def test_no_import_cycles_in_shared():
    shared = {m: {i for i in imports if _within(i, "shared")}
              for m, imports in GRAPH.items() if _within(m, "shared")}
    assert _cycles(shared) == []


def test_core_imports_no_feature():
    assert MODULES.keys() >= CORE, "a core module moved: update CORE"
    allowed = CORE | CORE_MAY_IMPORT | {"shared"}
    for module in CORE_MAY_IMPORT:
        assert {i for i in GRAPH[module] if _within(i, "shared")} <= allowed, module
    bad = sorted((m, i) for m in CORE for i in GRAPH[m]
                 if _within(i, "shared") and i not in allowed and (m, i) not in CORE_EXCEPTIONS)
    assert not bad, f"core imports a feature: {bad}"


def test_core_exceptions_are_still_real():
    for module, target in CORE_EXCEPTIONS:
        assert target in GRAPH[module], f"{module} no longer imports {target}: drop the entry"
        leaf = {i for i in GRAPH[target] if _within(i, "shared")}
        assert leaf <= CORE, f"{target} grew dependencies beyond the core: {leaf - CORE}"


def test_shared_is_the_core_the_wiring_and_feature_packages():
    loose = sorted(m for m in MODULES if m.count(".") == 1 and _within(m, "shared")
                   and m not in CORE | {WIRING} and MODULES[m].name != "__init__.py")
    assert not loose, f"put these in a feature package (or the core): {loose}"
    packages = {m for m in MODULES if m.count(".") == 1 and _within(m, "shared")
                and MODULES[m].name == "__init__.py"}
    assert packages == set(FEATURES), "a feature package was added or removed: update FEATURES"


def test_only_the_entry_layer_imports_the_wiring():
    bad = sorted(m for m, imports in GRAPH.items()
                 if WIRING in imports and not _within(m, ("functions", WIRING)))
    assert not bad


def test_the_azure_sdks_stay_behind_storage_and_the_microsoft_clients():
    """Services speak in repositories and their errors (shared/storage/errors.py); only
    storage touches the Table and Queue SDKs, only microsoft/ the identity SDK."""
    bad = sorted((m, i) for m, imports in GRAPH.items() if _within(m, "shared")
                 and not _within(m, ("shared.storage", "shared.microsoft"))
                 for i in imports if _within(i, "azure"))
    assert not bad
