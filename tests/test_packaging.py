"""A wheel built from the repository installs into a fresh venv as ``wxio``, with
``wxio.protocol``, ``wxio.adapter`` and ``wxio.client`` and no top-level
``protocol``/``adapter``/``client``."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_every_package_folder_is_listed_in_pyproject() -> None:
    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = set()
    for top in ("protocol", "adapter", "client"):
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT).parts
            found.add(".".join(("wxio", *rel)))
    assert found == listed


@pytest.mark.slow
def test_wheel_installs_into_a_fresh_venv_and_runs(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--wheel",
            "--no-isolation",
            "--outdir",
            str(dist),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = dist.glob("wxio-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.startswith("wxio/protocol/") for n in names)
    assert any(n.startswith("wxio/adapter/") for n in names)
    assert any(n.startswith("wxio/client/") for n in names)
    assert not any(n.startswith(("protocol/", "adapter/", "client/")) for n in names)
    assert {"wxio/protocol/py.typed", "wxio/adapter/py.typed", "wxio/client/py.typed"} <= set(
        names
    )  # PEP 561
    # The dashboard's page, its assets and the JS client it serves are package data: every
    # file of adapter/static/.
    statics = sorted(p.name for p in (ROOT / "adapter" / "static").iterdir() if p.is_file())
    assert {"index.html", "dashboard.js", "favicon.svg", "wxio.js"} <= set(statics)
    for static in statics:
        assert f"wxio/adapter/static/{static}" in names

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    bin_dir = env_dir / "bin"
    subprocess.run(
        [str(bin_dir / "python"), "-m", "pip", "install", "--quiet", str(wheel)],
        check=True,
        capture_output=True,
    )
    help_text = subprocess.run(
        [str(bin_dir / "wxio"), "--help"], check=True, capture_output=True, text=True
    ).stdout
    assert "serve" in help_text and "sign" in help_text
    version = subprocess.run(
        [str(bin_dir / "wxio"), "--version"], check=True, capture_output=True, text=True
    ).stdout
    assert (
        version.strip()
        == "wxio " + tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    )
    signed = subprocess.run(
        [str(bin_dir / "wxio"), "sign", "demo", "secret", "--timestamp", "1700000000000"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert "sign=0a40d27b61d4c698859e0b7156feb067" in signed
    probe = (
        "import wxio.protocol, wxio.adapter.app, wxio.client, importlib.util as u;"
        " print(u.find_spec('protocol'), u.find_spec('adapter'), u.find_spec('client'))"
    )
    out = subprocess.run(
        [str(bin_dir / "python"), "-c", probe],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    ).stdout
    assert out.strip() == "None None None"
