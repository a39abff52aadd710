"""Every package imagesim and its web app import is declared in pyproject.toml (CI also runs the app after a plain
`pip install -e .`: .ci/smoke_install.py)."""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import sys
import tomllib

from tests.support.photos import ROOT

# import name -> distribution, where the installed metadata does not say (dlib-bin ships a bare extension module)
ALIASES = {"dlib": "dlib-bin"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def third_party_imports() -> dict[str, str]:
    """Top-level third-party module -> the first file importing it, over imagesim/ and ui/."""
    found: dict[str, str] = {}
    for path in sorted([*ROOT.joinpath("imagesim").rglob("*.py"), *ROOT.joinpath("ui").rglob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else [])
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in ("imagesim", "imagesim_ui"):
                    found.setdefault(top, str(path.relative_to(ROOT)))
    return found


def test_every_imported_package_is_declared() -> None:
    project = tomllib.loads(ROOT.joinpath("pyproject.toml").read_text())["project"]
    declared = {_norm(re.split(r"[<>=!~\[ ;]", dep)[0]) for dep in project["dependencies"]}
    # An extra's packages count only for the modules that run when the extra's feature is asked for.
    extras = {name: {_norm(re.split(r"[<>=!~\[ ;]", dep)[0]) for dep in deps}
              for name, deps in project["optional-dependencies"].items() if name != "dev"}
    declared |= extras["ray"]
    owners = md.packages_distributions()
    imports = third_party_imports()
    assert {"torch", "hnswlib", "gradio", "dlib", "scipy"} <= set(imports)  # the scan sees the real imports
    missing = {module: where for module, where in imports.items()
               if not ({_norm(d) for d in owners.get(module, [])} | {_norm(ALIASES.get(module, module))}) & declared}
    assert not missing, f"imported but not declared in [project] dependencies: {missing}"
    assert {m for m, where in imports.items() if _norm(m) in extras["ray"]} <= {"ray"}
    assert imports.get("ray") == "imagesim/indexer/cluster.py"  # the one module behind `--ray`


def test_the_web_app_installs_under_the_projects_name() -> None:
    import imagesim_ui

    project = tomllib.loads(ROOT.joinpath("pyproject.toml").read_text())["tool"]["setuptools"]
    assert "ui" not in project["packages"] and "imagesim_ui" in project["packages"]
    assert imagesim_ui.__file__ is not None and imagesim_ui.__file__.endswith("ui/__init__.py")
