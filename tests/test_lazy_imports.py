"""The package namespace: every public name and submodule resolves, each loaded on first use.

``lit_noise`` loads its public names and submodules on first use (PEP 562), so that
``import lit_noise`` and composing a ``lit-noise-train`` job import neither torch nor Lightning,
and ``import lit_noise.functional`` in a plain PyTorch loop costs torch alone. The tests that
check imports run in fresh interpreters, where nothing was imported before.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import lit_noise

PURE_TENSOR_MODULES = [
    "lit_noise.functional",
    "lit_noise.noise",
    "lit_noise.schedules",
    "lit_noise.layers",
    "lit_noise.corruptions",
    "lit_noise.soft_labels",
]


def fresh_python(script: str, timeout: int = 120) -> str:
    """The standard output of ``script`` run in a fresh interpreter (which must succeed)."""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_the_pure_tensor_modules_import_neither_lightning_nor_torchmetrics() -> None:
    script = (
        "import sys\n"
        f"for name in {PURE_TENSOR_MODULES!r}:\n"
        "    __import__(name)\n"
        "import lit_noise\n"
        "lit_noise.Gaussian, lit_noise.Linear, lit_noise.SoftLabels\n"
        "print(sorted(m for m in ('lightning', 'torchmetrics', 'pytorch_lightning') if m in sys.modules))\n"
        "lit_noise.InputNoise\n"
        "print('lightning' in sys.modules)\n"
    )
    assert fresh_python(script).split() == ["[]", "True"]  # nothing heavy until a callback is read


def test_composing_a_job_imports_neither_torch_nor_lightning_until_it_runs(tmp_path: Path) -> None:
    """``lit-noise-train --cfg job``, ``--help`` and ``compose_job`` stay light; ``run`` loads it."""
    script = (
        "import sys\n"
        "from lit_noise.cli.train import compose_job, run\n"
        f"cfg = compose_job(['logger=none'], output_dir={str(tmp_path)!r})\n"
        "print(cfg.trainer.max_epochs > 0, 'torch' in sys.modules, 'lightning' in sys.modules)\n"
    )
    assert fresh_python(script).split() == ["True", "False", "False"]
    for flag in ("--cfg", "--help"):
        printed = fresh_python(_SCRIPT_WITH.format(flag=flag))
        assert printed.splitlines()[-1] == "False False", flag
        assert ("trainer:" if flag == "--cfg" else "== Configuration groups ==") in printed


#: ``lit-noise-train {flag} job`` in this interpreter, then whether torch and Lightning were imported.
_SCRIPT_WITH = """
import sys
sys.argv = ['lit-noise-train', '{flag}'] + (['job'] if '{flag}' == '--cfg' else [])
from lit_noise.cli.scripts import train
try:
    train()
except SystemExit:
    pass
print('torch' in sys.modules, 'lightning' in sys.modules)
"""


def test_import_lit_noise_loads_no_torch_and_reaches_every_submodule() -> None:
    script = (
        "import sys\n"
        "import lit_noise\n"
        "print('torch' in sys.modules, lit_noise.__version__ != '')\n"
        "print(lit_noise.ConfigurationError.__module__, 'torch' in sys.modules)\n"
        "import pkgutil\n"
        "names = [m.name for m in pkgutil.iter_modules(lit_noise.__path__) if m.name != 'conf']\n"
        "print(all(getattr(lit_noise, n).__name__ == 'lit_noise.' + n for n in names), len(names) > 10)\n"
    )
    assert fresh_python(script).split() == ["False", "True", "lit_noise.errors", "False", "True", "True"]


@pytest.mark.parametrize("name", sorted(set(lit_noise.__all__) - {"__version__"}))
def test_every_public_name_is_the_object_of_its_module(name: str) -> None:
    value = getattr(lit_noise, name)
    module = importlib.import_module(value.__module__)
    assert getattr(module, value.__name__) is value
    assert name in dir(lit_noise)


def test_star_import_gives_every_public_name() -> None:
    namespace: dict[str, object] = {}
    exec("from lit_noise import *", namespace)
    assert set(lit_noise.__all__) <= set(namespace)
    assert namespace["InputNoise"] is lit_noise.callbacks.InputNoise
    assert namespace["MixupDataModule"] is lit_noise.data.MixupDataModule
    assert namespace["BrierScore"] is lit_noise.metrics.BrierScore


def test_an_unknown_name_is_an_attribute_error_naming_it() -> None:
    with pytest.raises(AttributeError, match=r"module 'lit_noise' has no attribute 'InputNoize'"):
        lit_noise.InputNoize  # noqa: B018
    assert not hasattr(lit_noise, "InputNoize")


def test_a_name_that_is_no_submodule_or_a_broken_submodule_is_an_attribute_error(tmp_path: Path) -> None:
    assert not hasattr(lit_noise, "a.b")
    assert not hasattr(lit_noise, ".")
    (tmp_path / "broken_for_the_test.py").write_text("raise ImportError('needs a package not installed')\n")
    lit_noise.__path__.append(str(tmp_path))
    try:
        assert not hasattr(lit_noise, "broken_for_the_test")
        with pytest.raises(AttributeError, match=r"importing lit_noise\.broken_for_the_test failed") as info:
            lit_noise.broken_for_the_test  # noqa: B018
        assert isinstance(info.value.__cause__, ImportError)
    finally:
        lit_noise.__path__.remove(str(tmp_path))
        sys.modules.pop("lit_noise.broken_for_the_test", None)


def test_each_public_name_has_one_home_and_the_type_checking_imports_list_them_all() -> None:
    homes = {
        name: [m for m in lit_noise._LAZY_MODULES if name in importlib.import_module(m).__all__]
        for name in set(lit_noise.__all__) - {"__version__"}
    }
    assert {name: where for name, where in homes.items() if len(where) != 1} == {}
    tree = ast.parse(Path(lit_noise.__file__).read_text())
    (block,) = [n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING"]
    imported = {
        (alias.name, node.module)
        for node in block.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert {name for name, _ in imported} == set(homes)
    assert all(homes[name] == [module] for name, module in imported)


#: Imports each module of the package first, into an interpreter where no lit_noise module is loaded.
_EACH_MODULE_FIRST = """
import importlib, pkgutil, sys
import lit_noise
modules = pkgutil.walk_packages(lit_noise.__path__, "lit_noise.")
names = sorted(m.name for m in modules if ".conf" not in m.name)
failed = []
for name in names:
    for key in [k for k in sys.modules if k == "lit_noise" or k.startswith("lit_noise.")]:
        del sys.modules[key]
    try:
        importlib.import_module(name)
    except Exception as err:
        failed.append(f"{name}: {type(err).__name__}: {err}")
print(len(names))
print("\\n".join(failed))
"""


def test_every_module_imports_first_without_an_import_cycle() -> None:
    """No order of first imports meets a cycle (``import lit_noise.data`` used to be one)."""
    count, *failed = fresh_python(_EACH_MODULE_FIRST, timeout=300).strip().splitlines()
    assert int(count) > 50  # every module of the package was tried
    assert failed == []
