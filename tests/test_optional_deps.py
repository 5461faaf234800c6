"""Optional dependencies: what needs one checks for it when built, and the error names the extra.

A package is made missing by putting ``None`` into ``sys.modules`` (Python's import block), which
the real check (``importlib.util.find_spec``) and ``import`` both obey. Where a package is already
imported in this process that cannot hide its submodules, so the last test runs the plain-install
script (``_plain_install.py``) in a fresh interpreter where the optional packages are not found at
all, as in ``pip install lit-noise`` without extras (``test_wheel.py`` runs the same script there).
"""

from __future__ import annotations

import subprocess
import sys
import types
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest depends on tomli before Python 3.11
    import tomli as tomllib

from lit_noise import CalibrationMonitor, ConfigurationError, ReliabilityDiagram, RobustnessMonitor
from lit_noise._optional import EXTRAS, MissingDependencyError, available, require
from lit_noise.examples import DigitsDataModule
from lit_noise.examples.demo import main

ROOT = Path(__file__).resolve().parents[1]
PLOTS = 'pip install "lit-noise[plots]"'
EXAMPLES = 'pip install "lit-noise[examples]"'

#: module, its pip distribution, the extra that installs it (typed in: the oracle for EXTRAS).
OPTIONAL = [
    ("matplotlib", "matplotlib", "plots"),
    ("sklearn", "scikit-learn", "examples"),
    ("wandb", "wandb", "wandb"),
    ("hydra", "hydra-core", "cli"),
]

Block = Callable[[str], None]


@pytest.fixture
def block(monkeypatch: pytest.MonkeyPatch) -> Block:
    """``block("sklearn")`` makes the package unimportable until the test ends."""

    def _block(module: str) -> None:
        monkeypatch.setitem(sys.modules, module, None)

    return _block


# ------------------------------------------------------------------------------------ the check


@pytest.mark.parametrize(("module", "package", "extra"), OPTIONAL)
def test_require_names_the_package_and_the_extra(block: Block, module: str, package: str, extra: str) -> None:
    block(module)
    assert not available(module)
    with pytest.raises(MissingDependencyError) as info:
        require(module, "Owner", "some feature")
    assert str(info.value) == (
        f"Owner needs the optional package '{package}' for some feature, which is not installed."
        f' Install it with: pip install "lit-noise[{extra}]"'
    )
    assert isinstance(info.value, ConfigurationError)
    assert isinstance(info.value, ModuleNotFoundError)
    assert info.value.name == module


def test_require_passes_for_installed_modules_and_names_pip_without_an_extra() -> None:
    assert require("torch", "Owner") is None
    assert available("torch")
    assert available("lit_noise")
    with pytest.raises(ImportError, match=r"^Owner needs .* Install it with: pip install no_such_module_x$"):
        require("no_such_module_x", "Owner")


def test_a_module_already_imported_counts_even_without_a_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("lit_noise_test_fake_module")  # __spec__ is None: find_spec raises
    monkeypatch.setitem(sys.modules, module.__name__, module)
    assert available(module.__name__)
    require(module.__name__, "Owner")


def test_extras_are_the_ones_pyproject_declares() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert {module: extra for module, _, extra in OPTIONAL} == EXTRAS
    for _, package, extra in OPTIONAL:
        assert any(req.startswith(package) for req in declared[extra]), (extra, declared[extra])


def test_readme_lists_every_extra() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    readme = (ROOT / "README.md").read_text()
    missing = [extra for extra in declared if f'pip install "lit-noise[{extra}]"' not in readme]
    assert not missing, f"README.md does not list the extras {missing}"


# ------------------------------------------------------------------------- what needs a package


def test_digits_refused_at_construction_without_scikit_learn(block: Block) -> None:
    block("sklearn")
    with pytest.raises(MissingDependencyError, match=r"^DigitsDataModule needs .*'scikit-learn'") as info:
        DigitsDataModule()
    assert str(info.value).endswith(EXAMPLES)


def test_demo_exits_1_with_one_line_naming_the_extra_before_training(
    block: Block, capsys: pytest.CaptureFixture[str]
) -> None:
    block("sklearn")
    assert main(["--epochs", "1"]) == 1
    out, err = capsys.readouterr()
    assert out == ""  # no training table: it stopped before training
    assert err.startswith("lit-noise-demo: error: DigitsDataModule needs")
    assert err.rstrip().endswith(EXAMPLES)
    assert err.count("\n") == 1
    assert "Traceback" not in err


MONITORS: list[tuple[str, Callable[..., object]]] = [
    ("CalibrationMonitor", lambda **kw: CalibrationMonitor(num_classes=3, **kw)),
    ("RobustnessMonitor", lambda **kw: RobustnessMonitor(**kw)),
]


@pytest.mark.parametrize(("owner", "build"), MONITORS, ids=[owner for owner, _ in MONITORS])
def test_monitor_with_figures_refused_without_matplotlib(
    block: Block, owner: str, build: Callable[..., object]
) -> None:
    block("matplotlib")
    with pytest.raises(MissingDependencyError, match=rf"^{owner} needs .*'matplotlib'") as info:
        build()
    assert "log_figures=False" in str(info.value)
    assert str(info.value).endswith(PLOTS)
    monitor = build(log_figures=False)
    assert monitor.log_figures is False  # type: ignore[attr-defined]


def test_reliability_diagram_computes_without_matplotlib_but_plot_refuses(block: Block) -> None:
    block("matplotlib")
    diagram = ReliabilityDiagram(num_classes=2, n_bins=2)
    diagram.update(torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7]]), torch.tensor([0, 0, 1]))
    out = diagram.compute()
    # confidences 0.9, 0.8, 0.7 all in (0.5, 1]; correct 1, 0, 1
    assert out["count"].tolist() == [0.0, 3.0]
    assert out["accuracy"][1].item() == pytest.approx(2 / 3)
    assert out["confidence"][1].item() == pytest.approx(0.8)
    with pytest.raises(
        MissingDependencyError, match=r"^ReliabilityDiagram.plot needs .*'matplotlib'"
    ) as info:
        diagram.plot()
    assert str(info.value).endswith(PLOTS)


# ------------------------------------------------------------------ a plain install, simulated


@pytest.mark.slow  # a fresh interpreter that trains (5 s); the in-process tests above cover each refusal
def test_plain_install_script_with_optional_packages_hidden(tmp_path: Path) -> None:
    """Core fit and monitors without figures run; what needs an extra is refused, naming it."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "_plain_install.py"), "--hide"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stdout.strip().endswith("plain install OK")
