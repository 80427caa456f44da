import ast
import importlib
from pathlib import Path

import dyntrace.analysis as analysis

PACKAGE = Path(analysis.__file__).parent
MODULES = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")


def imported_modules(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            yield node.module or ""


def test_analysis_imports_neither_torch_nor_matplotlib():
    for path in PACKAGE.glob("*.py"):
        roots = {name.split(".")[0] for name in imported_modules(path)}
        assert not roots & {"torch", "matplotlib", "seaborn", "h5py"}, path.name


def test_every_module_declares_all_and_the_package_reexports_it():
    assert MODULES == [
        "curvature",
        "diagnoses",
        "noise",
        "plateaus",
        "radam",
        "smoothing",
        "stats",
        "summaries",
    ]
    exported = set(analysis.__all__)
    for name in MODULES:
        module = importlib.import_module(f"dyntrace.analysis.{name}")
        assert set(module.__all__) <= exported, name
        assert all(hasattr(module, item) for item in module.__all__), name
    assert all(hasattr(analysis, item) for item in analysis.__all__)
