"""The imports go one way (docs/architecture.md): entry (app.py, the CLI, the server) -> web ->
features (alerts, payments, messages) -> bot and outbox -> models, db, config and helpers.

Every `import` and `from ... import` in geekai/ counts, module-level or inside a function (a lazy
import is still a dependency). A test fails on an import that goes up a layer, and on a cycle.
"""
from __future__ import annotations

import ast
import os

from conftest import ROOT_DIR

PACKAGE = os.path.join(ROOT_DIR, "geekai")
ENTRY = {"geekai", "geekai.cli", "geekai.__main__", "geekai.server", "geekai.wsgi"}
LAYERS = (("web", 3), ("alerts", 2), ("payments", 2), ("messages", 2), ("bot", 1), ("outbox", 1))


def layer(module: str) -> int:
    if module in ENTRY:
        return 4
    part = module.split(".")[1]
    return dict(LAYERS).get(part, 0)


def module_of(path: str) -> str:
    name = os.path.relpath(path, ROOT_DIR)[:-3].replace(os.sep, ".")
    return name[: -len(".__init__")] if name.endswith(".__init__") else name


def is_module(name: str) -> bool:
    path = os.path.join(ROOT_DIR, *name.split("."))
    return os.path.exists(path + ".py") or os.path.exists(os.path.join(path, "__init__.py"))


def imports() -> dict[str, set[str]]:
    """Each geekai module and the geekai modules it imports."""
    found: dict[str, set[str]] = {}
    for folder, dirs, files in os.walk(PACKAGE):
        dirs[:] = [d for d in dirs if d not in ("__pycache__", "migrations")]
        for file in files:
            if not file.endswith(".py"):
                continue
            path = os.path.join(folder, file)
            module = module_of(path)
            package = module if file == "__init__.py" else module.rsplit(".", 1)[0]
            targets = found.setdefault(module, set())
            with open(path, encoding="utf-8") as handle:
                tree = ast.parse(handle.read(), path)
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    targets.update(a.name for a in node.names if a.name.split(".")[0] == "geekai")
                elif isinstance(node, ast.ImportFrom):
                    if node.level:
                        base = package.split(".")[: len(package.split(".")) - node.level + 1]
                        target = ".".join(base + ([node.module] if node.module else []))
                    else:
                        target = node.module or ""
                    if target.split(".")[0] != "geekai":
                        continue
                    for alias in node.names:
                        name = f"{target}.{alias.name}"
                        targets.add(name if is_module(name) else target)
            targets.discard(module)
    return found


def upward(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{module} (layer {layer(module)}) imports {target} (layer {layer(target)})"
                  for module, targets in graph.items() for target in targets
                  if layer(target) > layer(module) and not module.startswith(target + "."))


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Import cycles (a module importing its own parent package does not count: Python loads it first)."""
    graph = {module: {t for t in targets if not module.startswith(t + ".")} for module, targets in graph.items()}
    found, done, path = [], set(), []

    def visit(module):
        if module in path:
            found.append(path[path.index(module):] + [module])
            return
        if module in done:
            return
        path.append(module)
        for target in sorted(graph.get(module, ())):
            visit(target)
        path.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)
    return found


def test_no_import_goes_up_a_layer():
    assert upward(imports()) == []


def test_no_import_cycle():
    assert cycles(imports()) == []


def test_the_check_sees_an_upward_import_and_a_cycle(tmp_path, monkeypatch):
    """The walk itself: a feature importing web (lazily), and two modules importing each other."""
    import sys

    fake = tmp_path / "geekai"
    (fake / "web").mkdir(parents=True)
    (fake / "payments").mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "web" / "__init__.py").write_text("")
    (fake / "web" / "views.py").write_text("from . import forms\n")
    (fake / "web" / "forms.py").write_text("from .views import x\n")
    (fake / "payments" / "__init__.py").write_text("def f():\n    from ..web import views\n")
    module = sys.modules[__name__]
    monkeypatch.setattr(module, "ROOT_DIR", str(tmp_path))
    monkeypatch.setattr(module, "PACKAGE", str(fake))
    graph = imports()
    assert upward(graph) == ["geekai.payments (layer 2) imports geekai.web.views (layer 3)"]
    assert cycles(graph) == [["geekai.web.views", "geekai.web.forms", "geekai.web.views"]]
