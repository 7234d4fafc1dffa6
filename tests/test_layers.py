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
#: Inside the harness, top to bottom: the CLI calls both; analysis reads what running wrote; running never
#: depends on analysis (a sweep hands its rows to the summary its caller passes in).
HARNESS = ("cli", "analysis", "running")
#: All analysis may import of running: what a run directory holds (paths, the store, the cells' tile statistics,
#: hashes and versions). Not the spec, the cells, the executors or anything else that runs or decides a number.
ANALYSIS_READS_FROM_RUNNING = {"benchmark.running", "benchmark.running.rundir", "benchmark.running.store",
                               "benchmark.running.tilestats", "benchmark.running.provenance"}  # fmt: skip
#: Folders whose modules stay readable: the acceptance limit of issue 24 (the aim is about 350 lines).
MAX_LINES = 400


@pytest.fixture(scope="module")
def graph():
    return grimp.build_graph(*PACKAGES, include_external_packages=False)


def test_no_module_imports_a_layer_above_its_own(graph):
    illegal = graph.find_illegal_dependencies_for_layers(layers=LAYERS)
    described = [f"{d.importer} -> {d.imported}: {[list(r.middle) for r in d.routes][:2]}" for d in illegal]
    assert not described, "upward imports:\n" + "\n".join(described)


def test_the_harness_is_cli_over_analysis_over_running(graph):
    illegal = graph.find_illegal_dependencies_for_layers(layers=HARNESS, containers={"benchmark"})
    described = [f"{d.importer} -> {d.imported}: {[list(r.middle) for r in d.routes][:2]}" for d in illegal]
    assert not described, "upward imports inside benchmark/:\n" + "\n".join(described)


def test_analysis_reads_only_what_a_run_directory_holds(graph):
    analysis = {m for m in graph.modules if m == "benchmark.analysis" or m.startswith("benchmark.analysis.")}
    reached = {(a, b) for a in analysis for b in graph.find_modules_directly_imported_by(a)
               if b.startswith("benchmark.running") and b not in ANALYSIS_READS_FROM_RUNNING}  # fmt: skip
    assert not reached, sorted(reached)


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


def test_no_module_is_a_room_of_its_own():
    long = {str(p.relative_to(REPO)): n for folder in ("benchmark", "tasks", "rsdatasets")
            for p in (REPO / folder).rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_LINES}  # fmt: skip
    assert not long, f"modules over {MAX_LINES} lines: {long}"


@pytest.mark.parametrize("package", ["benchmark", "benchmark.running", "benchmark.analysis", "tasks", "rsdatasets",
                                     "backbones"])  # fmt: skip
def test_each_package_says_what_it_is_for_and_what_it_may_import(package):
    init = REPO.joinpath(*package.split("."), "__init__.py")
    doc = ast.get_docstring(ast.parse(init.read_text())) or ""
    assert len(doc) > 100 and ("may import" in doc.lower() or "imports point down" in doc.lower()), doc
