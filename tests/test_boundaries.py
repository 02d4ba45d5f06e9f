"""Package boundaries (DESIGN §1), checked by importing *every* module of a package in a fresh interpreter
(a new module that breaks a boundary fails here without anyone adding it to a list):

* `mtl` never loads ray, optuna or pandas;
* `results_store` (the Parquet store below `study` and `analysis`) loads no torch, ray or optuna and no
  module of `study` or `analysis`;
* `analysis` (Parquet only) never loads torch, ray or optuna, nor any module of `study`;
* the read-only side of `study` (layout, the study file, the runner's readers, `study status`'s imports)
  loads neither torch nor ray, so reading a study is fast;
* `mtl.data.references` (the published STL rows) loads no torch.
"""

import subprocess
import sys

import pytest

WALK = """
import importlib, pkgutil, sys
import {package}
for info in pkgutil.walk_packages({package}.__path__, '{package}.'):
    if not info.name.endswith('.__main__'):  # runs the command line when imported
        importlib.import_module(info.name)
print(','.join(sorted(m for m in sys.modules if m in {forbidden!r} or m.startswith({prefixes!r}))))
"""

IMPORT = """
import sys
{imports}
print(','.join(sorted(m for m in {forbidden!r} if m in sys.modules)))
"""


def _loaded(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip()


@pytest.mark.parametrize(
    ("package", "forbidden", "packages"),
    [
        ("mtl", ("ray", "optuna", "pandas"), ()),
        ("results_store", ("torch", "ray", "optuna"), ("study", "analysis")),
        ("analysis", ("torch", "ray", "optuna"), ("study",)),
    ],
)
def test_every_module_of_a_package_keeps_its_boundary(package, forbidden, packages):
    """``forbidden`` top-level modules, and every module of ``packages``, stay unloaded."""
    prefixes = tuple(p + "." for p in packages)
    code = WALK.format(package=package, forbidden=forbidden + packages, prefixes=prefixes or ("\0",))
    loaded = _loaded(code)
    assert loaded == "", f"importing every module of {package} loaded {loaded}"


def test_reading_a_study_loads_neither_torch_nor_ray():
    imports = "import results_store.reader, study.layout, study.schema, study.runner, study.cli"
    loaded = _loaded(IMPORT.format(imports=imports, forbidden=("torch", "ray")))
    assert loaded == "", f"the read-only side of study loaded {loaded}"


def test_the_published_stl_rows_load_no_torch():
    loaded = _loaded(IMPORT.format(imports="import mtl.data.references", forbidden=("torch",)))
    assert loaded == ""
