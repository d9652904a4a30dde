"""The package's layers (docs/architecture.md): each module imports only from the layers below it
or from its own package, at the top of the file, and imports on its own."""

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import qcc

PACKAGE = Path(qcc.__file__).parent

# Lower numbers are lower layers. A module may import from a lower layer or from its own package.
LAYERS = {
    "qcc.errors": 0, "qcc.ir": 0, "qcc.numerics": 0, "qcc.onnx_graph": 0, "qcc.tflite_graph": 0, "qcc.sample_inputs": 0,
    "qcc.comparison": 0, "qcc.assets": 0, "qcc.access_order": 0, "qcc.runtimes": 0, "qcc.toolchain": 0,
    "qcc.ops": 1,
    "qcc.frontend": 2, "qcc.passes": 2, "qcc.reference": 2,
    "qcc.pipeline": 3,
    "qcc.backend": 4,
    "qcc.commands": 5, "qcc.api": 6, "qcc.cli": 7, "qcc.__main__": 8, "qcc": 8,
}
# Within these layers, modules of different packages may use each other (without a cycle); the
# frontend, the passes and the reference interpreter stay apart.
SHARED_LAYERS = {0, 5}
# The API imports each command when it runs: `qcc compile` must work without onnxruntime, which
# `qcc verify` needs; the package imports the API on first use, so that `import qcc.x` stays cheap.
# Nothing below the API defers an import.
DEFERRED_IMPORTS_ALLOWED = {"qcc.api", "qcc"}


def modules() -> list[str]:
    return ["qcc"] + sorted(m.name for m in pkgutil.walk_packages(qcc.__path__, "qcc."))


def unit(module: str) -> str:
    """The layer table's entry a module belongs to (its package, or itself)."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in LAYERS:
            return ".".join(parts[:n])
    raise AssertionError(f"{module} is in no layer of LAYERS: add it")


def source_path(module: str) -> Path:
    relative = Path(*module.split(".")[1:])
    package = PACKAGE / relative / "__init__.py"
    return package if package.exists() else PACKAGE / relative.with_suffix(".py")


def qcc_imports(tree: ast.AST, module: str):
    """(imported qcc module, node) for every import statement, with `from qcc import x` read as qcc.x."""
    package = module if source_path(module).name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "qcc":
                    yield alias.name, node
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            if base.split(".")[0] != "qcc":
                continue
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                yield (candidate if candidate in ALL_MODULES else base), node


ALL_MODULES = set(modules())


@pytest.mark.parametrize("module", modules())
def test_each_module_imports_alone(module):
    result = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True)
    assert result.returncode == 0 or module == "qcc.__main__", result.stderr


def test_imports_go_down_the_layers_at_the_top_of_each_module():
    problems = []
    for module in modules():
        tree = ast.parse(source_path(module).read_text())
        top_level = {id(node) for node in tree.body}
        own = unit(module)
        for imported, node in qcc_imports(tree, module):
            target = unit(imported)
            upward = LAYERS[target] > LAYERS[own]
            sideways = LAYERS[target] == LAYERS[own] and target != own and LAYERS[own] not in SHARED_LAYERS
            if (upward or sideways) and imported != "qcc":
                problems.append(f"{module} imports {imported}: layer {LAYERS[own]} -> {LAYERS[target]}")
            if id(node) not in top_level and module not in DEFERRED_IMPORTS_ALLOWED:
                problems.append(f"{module}:{node.lineno} imports {imported} inside a block (deferred)")
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and node.id == "TYPE_CHECKING":
                problems.append(f"{module}:{node.lineno} has an import only for type checking")
    assert not problems, "\n".join(problems)


def test_no_import_cycles():
    graph = {}
    for module in modules():
        tree = ast.parse(source_path(module).read_text())
        graph[module] = {imported for imported, _ in qcc_imports(tree, module) if imported in ALL_MODULES} - {"qcc"}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module, path):
        state[module] = 1
        for imported in sorted(graph.get(module, ())):
            if state.get(imported) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(imported):] + [imported]))
            if imported not in state:
                visit(imported, path + [imported])
        state[module] = 2

    for module in graph:
        if module not in state:
            visit(module, [module])


def test_the_layer_check_sees_an_upward_import(tmp_path):
    """The check above can fail: an op module importing the frontend is caught."""
    tree = ast.parse("from qcc.frontend.onnx.qdq import fuse\n")
    ((imported, _),) = list(qcc_imports(tree, "qcc.ops.conv"))
    assert imported == "qcc.frontend.onnx.qdq"
    assert LAYERS[unit(imported)] > LAYERS[unit("qcc.ops.conv")]
