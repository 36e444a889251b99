"""Imports sit at the top of a module (issue "One house"). An import inside a function carries its reason as a trailing
comment on its line (`import open_clip  # optional: the clip extra, ...`); the command modules, which import their
stack inside run() to keep the CLI's start light, are the one exception (janus_rig/commands/__init__.py)."""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("janus_rig", "reward_models", "data_prep", "train")
EXEMPT = ROOT / "janus_rig" / "commands"
FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)


def function_imports(tree: ast.AST, in_function: bool = False) -> list[ast.stmt]:
    """Every import statement inside a function body, at any depth."""
    found = []
    for node in ast.iter_child_nodes(tree):
        if in_function and isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        found += function_imports(node, in_function or isinstance(node, FUNCTIONS))
    return found


def reasons(source: str) -> dict[int, str]:
    """Line -> its comment's text, a bare `noqa: CODE` left out (that is no reason)."""
    comments = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            text = re.sub(r"^#\s*(noqa(:\s*[A-Z]+\d+(,\s*[A-Z]+\d+)*)?)?", "", token.string).strip()
            if text:
                comments[token.start[0]] = text
    return comments


def unexplained(path: Path, root: Path = ROOT) -> list[str]:
    """`FILE:LINE: import ...` for each function-level import of `path` with no reason on its line."""
    source = path.read_text()
    commented = reasons(source)
    return [f"{path.relative_to(root)}:{node.lineno}: {ast.unparse(node)}"
            for node in function_imports(ast.parse(source)) if node.lineno not in commented]


def test_function_level_imports_give_their_reason():
    files = [p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py")) if EXEMPT not in p.parents]
    assert len(files) > 50  # the walk found the packages
    bad = [line for path in files for line in unexplained(path)]
    assert not bad, ("move these imports to the top of the module, or say on the import's line why it must stay in "
                     "the function (an optional extra, a startup cost):\n" + "\n".join(bad))


def test_the_check_sees_a_function_level_import(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("import os\n\n\ndef f():\n    import json\n    import wandb  # optional: never a dependency\n"
                      "    import numpy  # noqa: F401\n    return json\n")
    assert [line.split(": ", 1)[1] for line in unexplained(module, tmp_path)] == ["import json", "import numpy"]

