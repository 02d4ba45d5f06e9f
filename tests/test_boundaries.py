"""Package boundaries (DESIGN §1): `mtl` never loads ray, optuna or pandas."""

import subprocess
import sys

CHECK_MTL = """
import importlib, pkgutil, sys
import mtl
for info in pkgutil.walk_packages(mtl.__path__, 'mtl.'):
    importlib.import_module(info.name)
bad = sorted(m for m in ('ray', 'optuna', 'pandas') if m in sys.modules)
print(','.join(bad))
"""


def test_mtl_does_not_import_ray_optuna_or_pandas():
    out = subprocess.run([sys.executable, "-c", CHECK_MTL], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"mtl imported: {out.stdout.strip()}"
