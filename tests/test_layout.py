"""The package's layout: commands on top, no import cycle, small modules, a light --help."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "eeg2image_tf"
COMMANDS = ("prepare_data", "train_encoder", "select_encoder", "train_image_classifier", "train_gan",
            "generate", "evaluate", "curve", "average_checkpoints", "export", "import_original",
            "pipeline")
MAX_LINES = 550
MAX_TOP_LEVEL_LIBRARY_MODULES = 4


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """The package modules ``path`` imports (at the top or inside functions)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("eeg2image_tf")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            if not module.startswith("eeg2image_tf"):
                continue
            found.add(module)
            # "from . import x" and "from .models import precision" name modules too.
            for alias in node.names:
                candidate = f"{module}.{alias.name}"
                if (PACKAGE.parent / Path(*candidate.split("."))).with_suffix(".py").exists() or \
                        (PACKAGE.parent / Path(*candidate.split("."))).is_dir():
                    found.add(candidate)
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        targets = set()
        for target in _imports(path):
            # Importing a.b.c runs a/__init__ and a/b/__init__ first: arrows to those packages too
            # (except the importer's own packages, which are being imported already).
            parts = target.split(".")
            for end in range(2, len(parts) + 1):
                parent = ".".join(parts[:end])
                if not (name + ".").startswith(parent + "."):
                    targets.add(parent)
        graph[name] = {target for target in targets if target in modules and target != name}
    return graph


def _room(module: str) -> str:
    """The room a module is in: its top-level module, or its subpackage."""
    return ".".join(module.split(".")[:2])


def _rooms() -> dict[str, set[str]]:
    rooms: dict[str, set[str]] = {}
    for name, targets in _graph().items():
        rooms.setdefault(_room(name), set()).update(
            _room(target) for target in targets if _room(target) != _room(name))
    return rooms


@pytest.mark.parametrize("graph_of", [_graph, _rooms], ids=["modules", "subpackages"])
def test_no_import_cycle(graph_of):
    graph = graph_of()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                cycle = stack[stack.index(target):] + [target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_commands_and_few_library_modules_at_the_top():
    top = {path.stem for path in PACKAGE.glob("*.py")} - {"__init__", "__main__"}
    assert set(COMMANDS) <= top
    library = top - set(COMMANDS)
    assert len(library) <= MAX_TOP_LEVEL_LIBRARY_MODULES, sorted(library)


def test_no_module_is_long():
    long = {str(path.relative_to(PACKAGE)): n for path in PACKAGE.rglob("*.py")
            if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long


def test_commands_import_no_tensorflow_before_parsing():
    code = ("import sys; import eeg2image_tf.__main__; "
            + "; ".join(f"import eeg2image_tf.{name}" for name in COMMANDS)
            + "; print('tensorflow' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_the_menu_lists_every_command(capsys):
    from eeg2image_tf import __main__ as menu
    from eeg2image_tf.errors import EXIT_BAD_INPUT

    assert [name for name, _ in menu.COMMANDS] == list(COMMANDS)
    assert menu.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(f"  {name} " in out for name in COMMANDS)
    assert menu.main(["no_such_command"]) == EXIT_BAD_INPUT


def test_python_dash_m_package_runs_a_command():
    result = subprocess.run([sys.executable, "-m", "eeg2image_tf", "select_encoder", "--help"],
                            capture_output=True, text=True)
    assert result.returncode == 0 and "python -m eeg2image_tf.select_encoder" in result.stdout
