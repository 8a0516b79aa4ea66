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


def _named_packages(path: Path) -> set[str]:
    """The packages ``path`` names in a relative ``from ... import`` (``from . import x``)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    named = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level and not node.module:
            named.add(package.rsplit(".", node.level - 1)[0] if node.level > 1 else package)
    return named


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        targets = set()
        named = _named_packages(path)
        for target in _imports(path):
            # Importing a.b.c runs a/__init__ and a/b/__init__ first: arrows to those packages too.
            # The importer's own packages are being imported already, so an arrow to one of them
            # comes only from naming it ("from . import x" reads the package x is looked up in,
            # and what its __init__ imports must not need the importer).
            parts = target.split(".")
            for end in range(2, len(parts) + 1):
                parent = ".".join(parts[:end])
                if not (name + ".").startswith(parent + ".") or parent in named:
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


def _compilations_with_autograph(path: Path) -> list[int]:
    """Lines of ``path`` where ``tf.function`` is used (called or as a bare decorator) without
    ``autograph=False``."""
    def is_tf_function(node) -> bool:
        return (isinstance(node, ast.Attribute) and node.attr == "function"
                and isinstance(node.value, ast.Name) and node.value.id == "tf")

    def skips_autograph(call: ast.Call) -> bool:
        return any(keyword.arg == "autograph" and isinstance(keyword.value, ast.Constant)
                   and keyword.value.value is False for keyword in call.keywords)

    nodes = list(ast.walk(ast.parse(path.read_text())))
    calls = {id(node.func): node for node in nodes if isinstance(node, ast.Call)}
    # A bare `tf.function` (a decorator without arguments) is the `tf.function` no call holds.
    return sorted(node.lineno for node in nodes if is_tf_function(node)
                  and (id(node) not in calls or not skips_autograph(calls[id(node)])))


def test_every_compiled_function_is_traced_without_autograph(tmp_path):
    # No compiled function of the package branches in Python on a tensor's value; autograph's
    # rewriting of every function a trace reaches (Keras's layers included) only costs start-up
    # time in every command (docs/performance.md, "Tracing without autograph").
    found = {str(path.relative_to(PACKAGE)): lines for path in PACKAGE.rglob("*.py")
             if (lines := _compilations_with_autograph(path))}
    assert not found
    # The check itself sees each way of compiling a function.
    example = tmp_path / "example.py"
    example.write_text("import tensorflow as tf\n"
                       "@tf.function\n"
                       "def a(x): return x\n"
                       "@tf.function(reduce_retracing=True)\n"
                       "def b(x): return x\n"
                       "c = tf.function(lambda x: x, autograph=True)\n"
                       "d = tf.function(lambda x: x, autograph=False)\n")
    assert _compilations_with_autograph(example) == [2, 4, 6]


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


# Runs a command as the menu does and reports on stdout whether TensorFlow was imported.
_RUN_COMMAND = """
import importlib, sys
from eeg2image_tf.errors import run_main
code = run_main(importlib.import_module("eeg2image_tf." + sys.argv[1]).main, sys.argv[2:])
print("tensorflow" in sys.modules)
sys.exit(code)
"""


def _bad_inputs(tmp: Path) -> list[tuple[list[str], str]]:
    """``(command line, the error it must give)``: missing or broken runs, config.json, EEG files,
    image folders and checkpoints, each refused before TensorFlow loads."""
    from eeg2image_tf.config import EncoderTrainConfig, GanTrainConfig
    from eeg2image_tf.runs import save_config

    gone = tmp / "gone"
    empty_run = tmp / "empty_run"
    empty_run.mkdir()
    broken_run = tmp / "broken_run"
    broken_run.mkdir()
    (broken_run / "config.json").write_text("{not json")
    eeg = tmp / "data.pkl"
    eeg.write_bytes(b"")                       # only its existence is checked before TensorFlow
    (tmp / "images" / "train" / "A").mkdir(parents=True)
    (tmp / "images" / "train" / "A" / "a.png").write_bytes(b"")
    gan_run = tmp / "gan_run"                  # a GAN run whose EEG file was moved away
    save_config(GanTrainConfig(data=str(gone / "data.pkl"), images=str(tmp / "images"),
                               encoder=str(tmp), run=str(gan_run)), gan_run)
    encoder_run = tmp / "encoder_run"
    save_config(EncoderTrainConfig(data=str(gone / "data.pkl"), run=str(encoder_run)), encoder_run)
    return [
        (["generate", "--run", str(gone), "--out", str(tmp / "out")], f"{gone}/config.json: file not found"),
        (["generate", "--run", str(empty_run), "--out", str(tmp / "out")], "config.json: file not found"),
        (["generate", "--run", str(broken_run), "--out", str(tmp / "out")], f"{broken_run}/config.json"),
        (["generate", "--run", str(gan_run), "--out", str(tmp / "out")], f"{gone}/data.pkl: file not found"),
        (["generate", "--gan", str(gone), "--encoder", str(tmp), "--data", str(eeg), "--out",
          str(tmp / "out")], f"{gone}: no such checkpoint, checkpoint directory or run directory"),
        (["evaluate", "--run", str(gone)], f"{gone}/config.json: file not found"),
        (["evaluate", "--run", str(gan_run)], f"{gone}/data.pkl: file not found"),
        (["curve", "--run", str(gone)], f"{gone}/checkpoints: no checkpoint directory"),
        (["export", "--run", str(gone), "--out", str(tmp / "out")],
         f"{gone}/config.json: not found; --run must be a GAN run directory of train_gan"),
        (["export", "--run", str(gan_run), "--out", str(tmp / "out")], f"{gone}/data.pkl: file not found"),
        (["export", "--original-encoder", str(gone), "--original-gan", str(gone), "--out",
          str(tmp / "out")], f"{gone}: no such checkpoint (expected a prefix"),
        (["average_checkpoints", "--run", str(gone), "--out", str(tmp / "out")],
         f"{gone}/config.json: file not found"),
        (["average_checkpoints", "--run", str(gan_run), "--out", str(tmp / "out")],
         f"{gan_run}/checkpoints: no checkpoint directory"),
        (["import_original", "--encoder", str(gone), "--out", str(tmp / "out")],
         f"{gone}: no such checkpoint (expected a prefix"),
        (["import_original", "--gan", str(gone / "ckpt-1"), "--out", str(tmp / "out")],
         f"{gone}/ckpt-1: no such checkpoint (expected a prefix"),
        (["select_encoder", "--run", str(gone)], f"{gone}/config.json: file not found"),
        (["select_encoder", "--run", str(encoder_run)], f"{gone}/data.pkl: file not found"),
        (["train_encoder", "--data", str(gone / "data.pkl"), "--run", str(tmp / "new_run")],
         f"{gone}/data.pkl: file not found"),
        (["train_image_classifier", "--images", str(gone), "--run", str(tmp / "new_run")],
         f"{gone}/train: image folder not found"),
        (["train_gan", "--data", str(gone / "data.pkl"), "--images", str(tmp / "images"),
          "--encoder", str(tmp), "--run", str(tmp / "new_run")], f"{gone}/data.pkl: file not found"),
        (["train_gan", "--data", str(eeg), "--images", str(gone), "--encoder", str(tmp),
          "--run", str(tmp / "new_run")], f"{gone}: image folder not found"),
        (["train_gan", "--data", str(eeg), "--images", str(tmp / "images"), "--encoder", str(gone),
          "--run", str(tmp / "new_run")], f"{gone}: no such checkpoint, checkpoint directory"),
        (["prepare_data", "--convert", str(gone / "data.pkl")], f"{gone}/data.pkl: file not found"),
        (["pipeline", "--profile", "no_such_profile", "--run", str(tmp / "new_run")],
         "unknown profile 'no_such_profile'"),
    ]


def test_bad_input_is_one_error_line_before_tensorflow_loads(tmp_path):
    cases = _bad_inputs(tmp_path)
    assert {argv[0] for argv, _ in cases} == set(COMMANDS)
    for argv, expected in cases:
        result = subprocess.run([sys.executable, "-c", _RUN_COMMAND, *argv], capture_output=True,
                                text=True)
        lines = result.stderr.splitlines()
        assert (result.returncode, len(lines)) == (2, 1), (argv, result.stderr)
        assert lines[0].startswith("error: ") and expected in lines[0], (argv, lines[0])
        assert result.stdout.strip() == "False", (argv, "TensorFlow was imported")
    # Nothing was written for a training run refused before it started.
    assert not (tmp_path / "new_run").exists()


def test_flags_that_do_not_fit_together_are_reported_before_missing_paths(tmp_path):
    """The input check leaves a wrong combination of flags to the library call's own message."""
    gone = tmp_path / "gone"
    cases = [
        (["export", "--run", str(gone), "--original-gan", str(gone), "--out", str(tmp_path / "m")],
         "not both"),
        (["export", "--original-gan", str(gone), "--out", str(tmp_path / "m")],
         "give --run DIR, or both --original-encoder PATH and --original-gan PATH"),
        (["generate", "--gan", str(gone), "--out", str(tmp_path / "m")],
         "give --run, or all of --gan, --encoder and --data (missing --encoder, --data)"),
    ]
    for argv, expected in cases:
        result = subprocess.run([sys.executable, "-c", _RUN_COMMAND, *argv], capture_output=True,
                                text=True)
        assert result.returncode == 2 and expected in result.stderr, (argv, result.stderr)
