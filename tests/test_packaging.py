"""The wheel: what `pip install` gives a user outside this repository works on its own."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """The project's wheel, built from a copy of its sources (the checkout gets no build/ or egg-info)."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    shutil.copytree(ROOT / "archsearch", source / "archsearch", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    # Without build isolation: the environment's setuptools (the dev extra's), and no download.
    done = subprocess.run(
        [*PIP, "wheel", "--no-deps", "--no-build-isolation", "--quiet", "-w", str(tmp / "dist"), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (built,) = (tmp / "dist").glob("archsearch-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory):
    """The wheel installed into a folder of its own: `(site, run)`, `run` a command there from an empty folder."""
    site = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [*PIP, "install", "--no-deps", "--no-index", "--quiet", "--target", str(site), str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    empty = tmp_path_factory.mktemp("empty")

    def run(*args, program=sys.executable):
        # PYTHONPATH names the installed copy only, so the checkout (or an editable install of it) is not what runs.
        env = {**os.environ, "PYTHONPATH": str(site)}
        return subprocess.run(
            [str(program), *args], capture_output=True, text=True, timeout=300, cwd=empty, env=env, check=False
        )

    return site, run


def test_the_wheel_carries_the_bundled_spaces_and_the_license(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    spaces = sorted(p.name for p in (ROOT / "archsearch" / "spaces").glob("*.py"))
    assert sorted(n.removeprefix("archsearch/spaces/") for n in names if n.startswith("archsearch/spaces/")) == spaces
    (license_file,) = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
    assert "MIT License" in zipfile.ZipFile(wheel).read(license_file).decode()
    (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
    assert "License-Expression: MIT" in zipfile.ZipFile(wheel).read(metadata).decode().splitlines()
    assert not [n for n in names if n.startswith(("tests/", "results/", "search_spaces/", "conftest"))]


def test_the_installed_package_lists_and_describes_its_bundled_spaces_from_an_empty_folder(installed):
    site, run = installed
    where = run("-c", "import archsearch; print(archsearch.__file__)")
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(site)

    listed = run("-m", "archsearch", "spaces")
    assert listed.returncode == 0, listed.stderr
    for name in ("cifar", "cifar10_gpu", "digits"):
        assert any(line.startswith(f"{name} ") for line in listed.stdout.splitlines()), listed.stdout
    assert f"files: {site / 'archsearch' / 'spaces'}/NAME.py" in listed.stdout

    described = run("-m", "archsearch", "describe", "digits", "--sample", "1")
    assert described.returncode == 0, described.stderr
    assert "The offline default" in described.stdout  # the space's question, read from the installed file


def test_the_installed_package_runs_a_bundled_space_from_python_and_its_console_script_reads_the_run(installed):
    site, run = installed
    script = (
        "import archsearch\n"
        "overrides = dict(max_trials=2, epochs=1, top_k=1, retrain_epochs=1, seeds=1)\n"
        "run = archsearch.run('digits', **overrides, log=lambda line: None)\n"
        "print(type(run.leaderboard).__name__, run.status, run.path)\n"
    )
    done = run("-c", script)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    kind, status, path = done.stdout.splitlines()[-1].split()
    assert (kind, status) == ("DataFrame", "complete") and Path(path).parts[:2] == ("results", "digits")

    # The console script pip wrote for the installed copy reads the run the API left in the empty folder.
    board = run("leaderboard", "results/digits", "--format", "csv", program=site / "bin" / "archsearch")
    assert board.returncode == 0, board.stderr
    assert board.stdout.splitlines()[0].startswith("rank,trial_id,")
