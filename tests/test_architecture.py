"""The layout's promises: dependencies run one way, nothing generic is installed at top level, the command line starts
without torch, and a plain install needs none of the training stack."""

import ast
import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = ROOT / "hf_vit_port"
TOOLING = [ROOT / "hf_vit_port_tools", ROOT / "conversion"]


def imported_modules(path: Path) -> set[str]:
    """Every absolute module name a file imports, at any depth (function-level imports included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def run_elsewhere(code: str) -> subprocess.CompletedProcess:
    """Python in a directory outside the checkout, so that only installed packages are importable."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-c", code], cwd="/", env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("path", sorted(PLUGIN.rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_plugin_imports_nothing_of_the_tooling(path):
    tooling = {name for name in imported_modules(path) if name.split(".")[0] in ("hf_vit_port_tools", "conversion")}
    assert not tooling, f"{path.relative_to(ROOT)} imports {sorted(tooling)}"


def test_the_tooling_never_imports_the_checkout_folders_by_their_bare_names():
    offenders = [str(path.relative_to(ROOT)) for folder in TOOLING for path in folder.rglob("*.py")
                 if any(name.split(".")[0] in ("conversion", "model_cards") for name in imported_modules(path))]
    assert offenders == []


def test_nothing_generic_is_installed_at_top_level():
    result = run_elsewhere(
        "import importlib.util as u; "
        "print([n for n in ('conversion', 'model_cards', 'training', 'cli') if u.find_spec(n)]); "
        "import hf_vit_port_tools.conversion.convert, hf_vit_port_tools.model_cards; print('ok')"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["[]", "ok"]


@pytest.mark.parametrize("argv", [["--help"], ["convert", "--help"], ["finetune", "--bogus"], ["list"]])
def test_help_list_and_argument_errors_import_no_torch(argv):
    result = run_elsewhere(
        "import sys\n"
        "from hf_vit_port_tools.cli import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('torch loaded:', 'torch' in sys.modules, 'transformers loaded:', 'transformers' in sys.modules)\n"
    )
    assert "torch loaded: False transformers loaded: False" in result.stdout, result.stdout + result.stderr


def test_a_plain_install_needs_no_training_stack():
    requirements = importlib.metadata.requires("hf-vit-port")
    plain = {requirement.split(">")[0].split("=")[0].split("<")[0].strip()
             for requirement in requirements if "extra ==" not in requirement}
    assert plain == {"torch", "transformers", "huggingface_hub", "safetensors", "numpy", "pillow", "jinja2"}
    train = {r.split(">")[0].strip() for r in requirements if 'extra == "train"' in r}
    assert {"datasets", "evaluate", "accelerate", "matplotlib"} <= train


def test_python_dash_m_conversion_is_the_command_from_a_checkout():
    result = subprocess.run([sys.executable, "-m", "conversion", "list"], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and "imagenet21k/ViT-B_16" in result.stdout, result.stderr


def test_import_registers_with_the_auto_classes_only_when_transformers_loads_them():
    # Importing transformers.models.auto scans every model folder transformers ships: `import hf_vit_port` must not
    # pay for it, yet vit_port must be registered the moment the Auto classes exist.
    code = (
        "import sys, hf_vit_port\n"
        "assert 'transformers.models.auto' not in sys.modules, 'auto imported early'\n"
        "from transformers import AutoConfig, AutoModel\n"
        "assert AutoConfig.for_model('vit_port').model_type == 'vit_port'\n"
        "assert AutoModel._model_mapping[hf_vit_port.ViTPortConfig].__name__ == 'ViTPortModel'\n"
    )
    result = run_elsewhere(code)
    assert result.returncode == 0, result.stderr


def test_import_after_the_auto_classes_registers_at_once():
    code = (
        "from transformers import AutoConfig, AutoModelForImageClassification\n"
        "import hf_vit_port\n"
        "assert AutoConfig.for_model('vit_port').model_type == 'vit_port'\n"
        "model = AutoModelForImageClassification._model_mapping[hf_vit_port.ViTPortConfig]\n"
        "assert model.__name__ == 'ViTPortForImageClassification'\n"
    )
    result = run_elsewhere(code)
    assert result.returncode == 0, result.stderr


def test_an_unverified_conversion_loads_no_model_or_image_stack(tmp_path):
    # --no-verify reads the .npz and writes files: transformers' model folders (a scan of every one), its modeling
    # and image-processing stacks are start-up time and memory it has no use for.
    from npz_factory import make_official_params

    np.savez(tmp_path / "tiny.npz", **make_official_params())
    code = (
        "import sys\n"
        "from hf_vit_port_tools.cli import main\n"
        f"code = main(['convert', '--npz', {str(tmp_path / 'tiny.npz')!r}, '--out', {str(tmp_path / 'out')!r},"
        " '--no-verify'])\n"
        "heavy = [m for m in sys.modules if m.startswith(('transformers.models', 'transformers.modeling_utils',"
        " 'transformers.image_processing'))]\n"
        "assert code == 0 and not heavy, (code, heavy[:5])\n"
    )
    result = run_elsewhere(code)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "preprocessor_config.json").exists()
