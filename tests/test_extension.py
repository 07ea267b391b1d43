"""The extension as built: one exported symbol per module, and type stubs that match what it holds."""

from __future__ import annotations

import ast
import shutil
import subprocess
from pathlib import Path

import pytest

import locust_c
from locust_c import _engine, _testserver

PACKAGE = Path(locust_c.__file__).resolve().parent


@pytest.mark.skipif(shutil.which("nm") is None, reason="needs binutils' nm")
@pytest.mark.parametrize("module", [_engine, _testserver])
def test_only_the_module_init_function_is_exported(module):
    """Built with -fvisibility=hidden: the engine's symbols cannot clash with another extension's libcurl glue."""
    out = subprocess.run(["nm", "-D", "--defined-only", module.__file__], capture_output=True, text=True,
                         check=True).stdout
    exported = {line.split()[-1] for line in out.splitlines() if line.split()[1] in "TDBR"}
    assert exported == {f"PyInit_{module.__name__.rsplit('.', 1)[1]}"}


def _stub_names() -> tuple[set[str], dict[str, set[str]]]:
    tree = ast.parse((PACKAGE / "_engine.pyi").read_text())
    top: set[str] = set()
    classes: dict[str, set[str]] = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            members = {n.name for n in node.body if isinstance(n, ast.FunctionDef) and not n.name.startswith("_")}
            members |= {n.target.id for n in node.body
                        if isinstance(n, ast.AnnAssign) and not n.target.id.startswith("_")}
            classes[node.name] = members
        elif isinstance(node, ast.FunctionDef):
            top.add(node.name)
        elif isinstance(node, ast.AnnAssign):
            top.add(node.target.id)
    return top, classes


def test_the_type_stubs_name_what_the_extension_holds():
    top, classes = _stub_names()
    public = {name for name in dir(_engine) if not name.startswith("_")}
    assert public == top | set(classes)
    for name, members in classes.items():
        assert members == {m for m in dir(getattr(_engine, name)) if not m.startswith("_")}, name
    assert (PACKAGE / "py.typed").exists()
