"""Imports point down and never in a circle (docs/layout.md), checked on the real import graph with grimp.

Every ``import`` statement counts, the ones inside functions too: a lazy import is still a dependency.
"""

import ast
from pathlib import Path

import grimp
import pytest
from grimp import Layer

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("benchmark", "tasks", "rsdatasets", "backbones", "rsbench")
#: Top to bottom. Datasets and backbones are independent of each other; rsbench holds only the registries.
LAYERS = ("benchmark", "tasks", Layer("rsdatasets", "backbones"), "rsbench")


@pytest.fixture(scope="module")
def graph():
    return grimp.build_graph(*PACKAGES, include_external_packages=False)


def test_no_module_imports_a_layer_above_its_own(graph):
    illegal = graph.find_illegal_dependencies_for_layers(layers=LAYERS)
    described = [f"{d.importer} -> {d.imported}: {[list(r.middle) for r in d.routes][:2]}" for d in illegal]
    assert not described, "upward imports:\n" + "\n".join(described)


def test_the_registry_layer_imports_no_project_module(graph):
    imported = {m for m in graph.find_modules_directly_imported_by("rsbench.registry") if m.split(".")[0] in PACKAGES}
    assert not imported, imported


def test_the_registry_layer_names_no_upper_module_in_a_string():
    """No ``locations=["tasks.segmentation", ...]``: a lazy import by name is an upward dependency no checker sees.
    Packages declare themselves (``scan_package``) instead."""
    tree = ast.parse((REPO / "rsbench" / "registry.py").read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef) and node.body
                  and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}  # fmt: skip
    named = [node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)
             and id(node) not in docstrings and node.value.split(".")[0] in PACKAGES[:-1]]  # fmt: skip
    assert not named, named


def test_there_is_no_import_cycle(graph):
    cycles = []
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            if importer.startswith(imported + ".") or imported.startswith(importer + "."):
                continue  # a package and its own submodules (__init__ re-exports) are one unit
            back = graph.find_shortest_chain(importer=imported, imported=importer)
            if back:
                cycles.append(" -> ".join((importer, *back)))
    assert not cycles, "import cycles:\n" + "\n".join(sorted(set(cycles)))
