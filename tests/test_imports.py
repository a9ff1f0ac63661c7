"""The package's structure: layers point down, no import cycle, no private name crosses a module."""

import ast
from pathlib import Path

from tests.conftest import REPO

PACKAGE = REPO / "brainlit"
# the data flow, bottom up: a module imports from its own layer or the ones below
LAYERS = [
    ("brainlit.errors", "brainlit.logs", "brainlit.progress", "brainlit.metrics", "brainlit.version"),
    ("brainlit.data",),
    ("brainlit.models", "brainlit.baselines", "brainlit.sites", "brainlit.stack", "brainlit.viz", "brainlit.ensembles"),
    ("brainlit.tasks",),
    ("brainlit.cli", "brainlit.config_check", "brainlit.model_folder", "brainlit.brain_age", "brainlit.new_site",
     "brainlit.apply", "brainlit.report",
     "brainlit.experiment", "brainlit.__main__", "brainlit"),
]


def module_name(path: Path) -> str:
    name = ".".join(path.relative_to(REPO).with_suffix("").parts)
    return name.removesuffix(".__init__")


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports(name: str) -> list[tuple[str, list[str]]]:
    """``(imported module, names taken from it)`` for every brainlit import of ``name``, at any depth."""
    found = []
    for node in ast.walk(ast.parse(MODULES[name].read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("brainlit"):
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.append((submodule, []) if submodule in MODULES else (node.module, [alias.name]))
        elif isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names if alias.name.startswith("brainlit")]
    return found


def layer(name: str) -> int:
    """The layer of a module: that of the longest layer prefix it falls under."""
    matches = [(len(prefix), i) for i, prefixes in enumerate(LAYERS) for prefix in prefixes
               if name == prefix or name.startswith(prefix + ".")]
    assert matches, f"{name} belongs to no layer: add it to LAYERS"
    return max(matches)[1]


GRAPH = {name: {target for target, _ in imports(name)} for name in MODULES}


def test_every_import_points_to_the_same_layer_or_below():
    upward = [f"{name} -> {target}" for name, targets in GRAPH.items() for target in targets
              if layer(target) > layer(name)]
    assert not upward, upward


def test_models_and_baselines_know_nothing_of_the_tasks_or_of_lightning():
    for name, path in MODULES.items():
        if name.startswith(("brainlit.models", "brainlit.baselines")):
            assert not [t for t in GRAPH[name] if t.startswith("brainlit.tasks")], name
            assert "lightning" not in path.read_text(), name


def import_cycles(graph: dict[str, set[str]]) -> list[str]:
    """Every cycle a depth-first walk of ``graph`` meets, as ``a -> b -> a``."""
    state: dict[str, str] = {}
    found: list[str] = []

    def visit(name: str, path: list[str]) -> None:
        state[name] = "open"
        for target in sorted(graph.get(name, ())):
            if state.get(target) == "open":
                found.append(" -> ".join([*path, name, target]))
            elif target in graph and target not in state:
                visit(target, [*path, name])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [])
    return found


def test_there_is_no_import_cycle():
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a -> b -> c -> a"]  # the walk sees one
    assert import_cycles(GRAPH) == []


def test_no_module_takes_a_private_name_from_another():
    private = [f"{name}: {target}.{taken}" for name in MODULES for target, names in imports(name)
               for taken in names if taken.startswith("_") and not taken.startswith("__")]
    assert not private, private
