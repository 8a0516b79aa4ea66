"""The documents: README fits in 15,000 bytes, every repository path that the Markdown files and the
code's comments and docstrings name exists, and every citation points at a section that is there.

Which words are repository paths (``repository_paths``):

- a word with a ``/`` whose first component is an entry of the repository root (``docs/...``,
  ``benchmarks/...``, ``.ci/run``) or a subpackage of ``eeg2image_tf`` (``models/gan.py``, written
  relative to the package); any other word with a slash is not about the repository (TensorBoard
  tags such as ``gan/d_hinge``, units such as ``images/s``, the authors' files, URLs);
- paths outside the checkout are the user's machine, not the repository: absolute paths, ``~/...``
  and ``../...`` (the fixtures in ``../shared/fixtures``, the authors' stack);
- a path that ``.gitignore`` ignores is produced at run time (``data/eeg/...``, ``data/images/...``,
  ``runs/...``) and need not exist;
- placeholders (``<set>``, ``{train,test}``, ``*``, ``...``) make a path a pattern, which at least
  one file or folder of the repository must match.

A Markdown link or image target (``[text](target)``) that is not a URL is a path relative to the
Markdown file's folder, and must exist.

Dotted names of this project's modules (``eeg2image_tf.models.inference``,
``benchmarks.reference``) must name a module, and a name after it must appear in that module.
"""

from __future__ import annotations

import ast
import fnmatch
import io
import re
import tokenize
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "eeg2image_tf"
README_LIMIT = 15_000
CODE_ROOTS = ("eeg2image_tf", "benchmarks", "tests", "examples")
SKIPPED_DIRS = {".git", ".venv", "__pycache__", "build", "dist", "runs", ".pytest_cache"}
SPLIT = re.compile(r"[\s`'\"()\[\]=|;]+|,(?![^{]*})")   # commas inside {a,b} stay in the word
DOTTED = re.compile(r"(?<![\w./-])(?:eeg2image_tf|benchmarks)(?:\.\w+)+")
# "docs/method.md section 4", "sections 3-4", across a comment's line break too.
LINK = re.compile(r"\]\(([^)\s#]+)[^)]*\)")
METHOD_CITATION = re.compile(r"docs/method\.md\W+sections?\s+(\d+)(?:\s*-\s*(\d+))?")
FOREIGN_CITATIONS = re.compile(r"\bspec(?:ification)?(?:'s)?\s+(?:sections?|text)\b|\(spec[,)]"
                               r"|docs: performance-notes", re.IGNORECASE)
STORY = re.compile(r"\b(?:sessions?|planning|issues?|the day before|we then|used to)\b",
                   re.IGNORECASE)


def _walk(root: Path, suffix: str):
    for path in sorted(root.rglob(f"*{suffix}")):
        if not SKIPPED_DIRS.intersection(path.relative_to(REPO).parts) and \
                not _ignored(str(path.relative_to(REPO))):
            yield path


def markdown_files() -> list[Path]:
    return list(_walk(REPO, ".md"))


def code_texts(path: Path) -> list[str]:
    """A Python file's comments (consecutive comment lines joined) and docstrings."""
    source = path.read_text(encoding="utf-8")
    texts, block, last = [], [], -2
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            if token.start[0] != last + 1 and block:
                texts.append(" ".join(block))
                block = []
            block.append(token.string.lstrip("#").strip())
            last = token.start[0]
    if block:
        texts.append(" ".join(block))
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            docstring = ast.get_docstring(node, clean=False)
            if docstring:
                texts.append(docstring)
    return texts


def documents() -> dict[str, str]:
    """Every text the rule covers, by where it comes from."""
    found = {str(path.relative_to(REPO)): path.read_text(encoding="utf-8")
             for path in markdown_files()}
    for root in CODE_ROOTS:
        for path in _walk(REPO / root, ".py"):
            found[str(path.relative_to(REPO))] = "\n".join(code_texts(path))
    for name in ("Makefile", ".ci/run"):
        lines = (REPO / name).read_text(encoding="utf-8").splitlines()
        found[name] = " ".join(line.lstrip("#").strip() for line in lines
                               if line.lstrip().startswith("#"))
    return found


def _ignore_patterns() -> list[str]:
    return [line.strip() for line in (REPO / ".gitignore").read_text().splitlines()
            if line.strip() and not line.startswith("#")]


def _ignored(path: str) -> bool:
    """Whether ``.gitignore`` ignores ``path`` (or a folder above it)."""
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[:end]) for end in range(1, len(parts) + 1)]
    for pattern in _ignore_patterns():
        anchored = pattern.strip("/")
        if "/" in anchored:
            if any(fnmatch.fnmatch(prefix, anchored) for prefix in prefixes):
                return True
        elif any(fnmatch.fnmatch(part, anchored) for part in parts):
            return True
    return False


def repository_paths(text: str) -> set[str]:
    """The words of ``text`` that name repository paths (module docstring)."""
    roots = {entry.name for entry in REPO.iterdir()}
    subpackages = {entry.name for entry in PACKAGE.iterdir() if entry.is_dir()}
    found = set()
    for word in SPLIT.split(text):
        word = word.rstrip(".,:;!?").lstrip("~").removeprefix("./")
        if "/" not in word or "://" in word or word.startswith(("/", "..", "$", "~")):
            continue
        first = word.split("/")[0]
        if first in roots or first in subpackages:
            found.add(word)
    return found


def path_exists(word: str) -> bool:
    """``word`` exists (or matches, if it is a pattern) in the repository or the package, or is
    run-time output that ``.gitignore`` ignores."""
    pattern = re.sub(r"<[^>]*>|\{[^}]*\}|\.\.\.", "*", word).rstrip("/")
    if _ignored(pattern):
        return True
    return any(any(base.glob(pattern)) if "*" in pattern else (base / pattern).exists()
               for base in (REPO, PACKAGE))


def module_reference_exists(dotted: str) -> bool:
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        base = REPO.joinpath(*parts[:end])
        module = base.with_suffix(".py")
        source = module if module.exists() else base / "__init__.py"
        if source.exists():
            rest = parts[end:]
            return not rest or re.search(rf"\b{rest[0]}\b", source.read_text()) is not None
    return False


def method_sections() -> set[int]:
    text = (REPO / "docs" / "method.md").read_text(encoding="utf-8")
    return {int(number) for number in re.findall(r"^## (\d+)\. ", text, re.MULTILINE)}


def problems(texts: dict[str, str]) -> list[str]:
    sections = method_sections()
    found = []
    for where, text in texts.items():
        if where.endswith(".md"):
            folder = (REPO / where).parent
            found += [f"{where}: link {target} does not exist" for target in LINK.findall(text)
                      if "://" not in target and not (folder / target).exists()]
        found += [f"{where}: {word} does not exist" for word in sorted(repository_paths(text))
                  if not path_exists(word)]
        found += [f"{where}: {name} names no module or name"
                  for name in sorted(set(DOTTED.findall(text))) if not module_reference_exists(name)]
        found += [f"{where}: cites {match.group(0)!r}, not in the repository"
                  for match in FOREIGN_CITATIONS.finditer(text)]
        for match in METHOD_CITATION.finditer(text):
            first, last = int(match.group(1)), int(match.group(2) or match.group(1))
            missing = set(range(first, last + 1)) - sections
            if missing or last < first:
                found.append(f"{where}: {match.group(0)!r} cites no section of docs/method.md")
    return found


def test_readme_is_at_most_15000_bytes():
    size = (REPO / "README.md").stat().st_size
    assert size <= README_LIMIT, f"README.md is {size} bytes"


def test_every_named_path_exists_and_every_citation_resolves():
    texts = documents()
    assert "README.md" in texts and "docs/method.md" in texts and "Makefile" in texts
    checked = set().union(*(repository_paths(text) for text in texts.values()))
    assert len(checked) > 50, "the rule found almost no paths: the extraction is broken"
    assert problems(texts) == []


def test_readme_and_docs_describe_the_software_not_its_making():
    stories = [f"{path.relative_to(REPO)}: {match.group(0)!r}" for path in markdown_files()
               for match in STORY.finditer(path.read_text(encoding="utf-8"))]
    assert stories == []


@pytest.mark.parametrize("text, expected", [
    ("see docs/nowhere.md", ["docs/nowhere.md does not exist"]),
    ("models/nothing.py", ["models/nothing.py does not exist"]),
    ("the fused kernel (spec section 4)", ["cites 'spec section'"]),
    ("docs: performance-notes", ["cites 'docs: performance-notes'"]),
    ("docs/method.md section 99", ["cites no section"]),
    ("eeg2image_tf.models.no_such_module", ["names no module"]),
    ("eeg2image_tf.models.inference.no_such_name_anywhere", ["names no module"]),
])
def test_the_rule_reports_what_is_missing(text, expected):
    found = problems({"sample": text})
    assert len(found) == len(expected)
    assert all(part in line for part, line in zip(expected, found)), found


@pytest.mark.parametrize("text", [
    "docs/method.md section 4 and sections 3-4", "models/gan.py and eeg2image_tf/models/gan.py",
    "data/eeg/<set>/data.pkl", "runs/demo/gan", "../shared/fixtures", "/tmp/eeg2image-ref/code",
    "gan/d_hinge at 60 images/s", "docs/*.md", "data/images/{train,test}/<Class>/*.png",
    "eeg2image_tf.models.inference.fast_generator_call", "benchmarks.reference",
    "https://arxiv.org/abs/2302.10121", "lstm_kmean/model.py",
])
def test_the_rule_accepts_what_exists_or_is_not_the_repository(text):
    assert problems({"sample": text}) == []


def test_markdown_links_are_relative_to_their_file():
    text = "![grid](gone.png), ![grid](demo_grid.png), [x](https://a.b/c)"
    assert problems({"docs/sample.md": text}) == ["docs/sample.md: link gone.png does not exist"]
