"""The package is layered: each top-level module and each package imports only those below it in
LAYERS (imports inside functions count; ``if TYPE_CHECKING:`` imports, which never run, do not), every
module is placed in a layer, and no modules import each other in a circle."""

from __future__ import annotations

import ast
from pathlib import Path

import label_studio_ml

PACKAGE = Path(label_studio_ml.__file__).parent
ROOT = "label_studio_ml"

# Bottom first. core/README.md's package map says what each one is for.
LAYERS = [
    "errors",
    "config",
    "sdk_extra",
    "exceptions",
    "predictions",
    "response",
    "devices",
    "clients",
    "state",
    "media",
    "results",
    "training",
    "utils",
    "cache",
    "model",
    "engine",
    "preannotate",
    "server",
    "cli",
    "testing",
    "api",
    "__main__",
    "__init__",
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def unit(module: str) -> str:
    """The layer a module belongs to: its package under label_studio_ml, or itself at the top level."""
    parts = module.split(".")
    name = parts[1] if len(parts) > 1 else "__init__"
    return name


def runtime_imports(tree: ast.AST) -> list[ast.ImportFrom | ast.Import]:
    """Import statements that run: all of them but those under ``if TYPE_CHECKING:``."""
    found: list[ast.ImportFrom | ast.Import] = []

    def walk(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for orelse in child.orelse:
                    walk(orelse)
                continue
            if isinstance(child, ast.Import | ast.ImportFrom):
                found.append(child)
            walk(child)

    walk(tree)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the label_studio_ml modules it imports (a package's ``__init__`` counts as the package)."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        deps: set[str] = set()
        for node in runtime_imports(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.startswith(ROOT + ".")]
            elif node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            elif node.module and (node.module == ROOT or node.module.startswith(ROOT + ".")):
                targets = [
                    f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                    for a in node.names
                ]
            else:
                continue
            # the root package is not a dependency: Python runs its __init__ before any submodule anyway
            deps.update(t for t in targets if t in modules and t not in (name, ROOT))
        graph[name] = deps
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path (first module repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return path[path.index(dep) :] + [dep] if dep in path else [node, dep, node]
            if dep not in state and (found := visit(dep, path + [dep])):
                return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [start])):
            return found
    return None


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    rank = {name: i for i, name in enumerate(LAYERS)}
    return sorted(
        f"{module} -> {dep}"
        for module, deps in graph.items()
        for dep in deps
        if unit(dep) != unit(module) and rank[unit(dep)] > rank[unit(module)]
    )


def test_finder_sees_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_every_module_is_placed_in_a_layer() -> None:
    units = {unit(name) for name in import_graph()}
    assert units - set(LAYERS) == set(), "add these to LAYERS (and to core/README.md's package map)"
    assert set(LAYERS) - units == set(), "LAYERS names modules or packages that no longer exist"


def test_no_import_runs_up_a_layer() -> None:
    graph = import_graph()
    assert "label_studio_ml.model" in graph
    assert upward_imports(graph) == []


def test_the_layer_check_sees_an_upward_import() -> None:
    graph = {"label_studio_ml.errors": {"label_studio_ml.model"}, "label_studio_ml.model": set()}
    assert upward_imports(graph) == ["label_studio_ml.errors -> label_studio_ml.model"]


def test_no_modules_import_each_other_in_a_circle() -> None:
    graph = import_graph()
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_nothing_imports_the_entry_module() -> None:
    graph = import_graph()
    entry = "label_studio_ml.cli.main" if "label_studio_ml.cli.main" in graph else "label_studio_ml.cli"
    importers = sorted(name for name, deps in graph.items() if entry in deps)
    assert importers == ["label_studio_ml.__main__"]


def test_old_module_names_answer_from_the_top_level() -> None:
    """``from label_studio_ml import regions`` (services, users' code) keeps working after the moves."""
    import importlib

    import label_studio_ml

    for old, new in label_studio_ml._MOVED.items():
        assert getattr(label_studio_ml, old) is importlib.import_module(new, "label_studio_ml"), old


def test_plugin_names_answer_from_the_testing_package() -> None:
    """Projects generated before the move import the plugin's names from ``label_studio_ml.testing``."""
    from label_studio_ml.testing import assert_conformant, ocr, plugin

    assert assert_conformant is plugin.assert_conformant
    assert ocr.__name__ == "label_studio_ml.testing.ocr"
