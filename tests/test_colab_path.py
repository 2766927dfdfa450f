"""The Colab path: each chapter's install cell and the whole reader notebook, replayed as Colab runs them.

A Colab runtime already has Python 3.12 (moving to 3.13), a torch and torchvision a few releases older
than the newest, ipywidgets 7.7.1 and the Jupyter kernel; a reader who opens a chapter runs its reader
notebook (`_build/colab/<chapter>.ipynb`, written by `make book`: the chapter with its glued numbers filled
in), whose first cell, only on Colab, runs `%pip install "vgcourse==X"`. Here:

1. The wheel of vgcourse is built from a clean copy of the package sources.
2. A "Colab image" virtual environment is made once per key and cached outside the checkout, in
   $XDG_CACHE_HOME/vgcourse/colab-venvs (default ~/.cache/...), so a fresh clone on the same machine
   reuses it; the key hashes the pins (constraints.txt, tests/colab/*.txt) and the Python version. The
   image has Colab's Python, the torch and torchvision of tests/colab/image.txt, and ipykernel and nbclient
   at the versions of constraints.txt, nothing else. The "colab" image adds ipywidgets 7.7.1, as Colab
   ships it (pins in tests/colab/ipywidgets7.txt).
3. For each image, a throw-away runtime is cloned from it (hard links: seconds, no extra disk) and the
   chapters run there in toc order, in a fresh kernel working in an empty folder, with a `google.colab`
   module planted first so the install cell installs; pip finds the wheel through PIP_FIND_LINKS and the
   other packages at the versions of constraints.txt through PIP_CONSTRAINT (torch, torchvision and, on
   the ipywidgets 7.7 runtime, the ipywidgets family are left out of it, so a cell that upgraded them would
   show). The "colab" runtimes (Python 3.12, ipywidgets 7.7.1; two clones of one image, each running half
   of the chapters, so that two pytest-xdist workers share them) run every chapter. The "ipywidgets8"
   runtime (Python 3.13, no ipywidgets: the install cell brings ipywidgets 8) runs the first two chapters
   only: the install cell's two cases (installs, finds vgcourse installed) on the other Python and widget
   major; the book build already runs every chapter with ipywidgets 8.
4. After each chapter: torch and torchvision (and the preinstalled ipywidgets 7.7.1) are the very
   files of the image (same inodes, mtimes, sizes), vgcourse is the wheel's files, the chapter's
   kernel ran in the runtime, and every widget it displayed has saved state.

A Python of the version a runtime needs is looked up on PATH and in pyenv; where it is missing, the
runtime uses the Python running the tests and says so. Executed notebooks land in
_build/colab_path/<runtime>/ for inspection. Needs the package index (or its mirror) the first time an
image is built, like `make test` itself.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import pytest
from book_toc import chapter_notebooks

import vgcourse

ROOT = Path(__file__).resolve().parents[1]
CONSTRAINTS = ROOT / "constraints.txt"
IPYWIDGETS7 = ROOT / "tests" / "colab" / "ipywidgets7.txt"
IMAGE_PINS = ROOT / "tests" / "colab" / "image.txt"
RUNNER = ROOT / "tests" / "colab" / "run_notebook.py"
READER = ROOT / "_build" / "colab"  # the reader notebooks `make book` writes
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vgcourse" / "colab-venvs"
OUTPUT = ROOT / "_build" / "colab_path"
IMAGE = ("torch", "torchvision", "ipykernel", "nbclient")  # what every Colab runtime has here
PREINSTALLED = ("torch", "torchvision")  # the install cell must leave these files alone
# torch's own exact dependencies (CUDA libraries, triton): the image's older torch brings its own versions
TORCH_STACK = re.compile(r"^(nvidia-.*|cuda-.*|triton)$")
WIDGET_FAMILY = ("ipywidgets", "widgetsnbextension", "jupyterlab-widgets")
PYTHONS = {"colab": "3.12", "ipywidgets8": "3.13"}  # the Python of each runtime
CACHE_FORMAT = 2  # bump when the way images are made changes
VIEW_MIME = "application/vnd.jupyter.widget-view+json"
STATE_MIME = "application/vnd.jupyter.widget-state+json"
# A whole chapter on the Colab path, install cell included (~30 s here): past this it has hung.
CHAPTER_TIMEOUT_S = 900


CHAPTERS = chapter_notebooks()


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(path: Path) -> dict[str, str]:
    """{canonical name: 'Name==version'} of a constraints file."""
    lines = [line.strip() for line in path.read_text().splitlines()]
    return {_canonical(line.split("==")[0]): line for line in lines if line and not line.startswith("#")}


def _write_constraints(
    path: Path, *, without: tuple[str, ...], extra: Path | None = None, also: Path | None = None
) -> Path:
    """constraints.txt without torch's own stack and the pins of `without`, plus those of `extra`, `also`."""
    pins = {name: pin for name, pin in _pins(CONSTRAINTS).items() if not TORCH_STACK.match(name)}
    for name in without:
        pins.pop(_canonical(name), None)
    for more in (extra, also):
        if more is not None:
            pins.update(_pins(more))
    path.write_text("\n".join(sorted(pins.values(), key=str.lower)) + "\n")
    return path


def _python(version: str) -> str:
    """A Python `version` ("3.12") interpreter: on PATH, else pyenv's newest; else the one running here."""
    found = shutil.which(f"python{version}")
    pyenv = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    candidates = sorted(pyenv.glob(f"{version}.*/bin/python{version}"), key=lambda p: p.stat().st_mtime)
    for path in ([found] if found else []) + [str(p) for p in reversed(candidates)]:
        if subprocess.run([path, "-c", "import venv"], capture_output=True).returncode == 0:
            return path
    print(f"\nNo Python {version} found (PATH, pyenv): the Colab runtime uses {sys.executable} instead")
    return sys.executable


def _python_version(python: str) -> str:
    return _run([python, "-c", "import sys; print(sys.version)"]).stdout.strip()


def _cache_key(python: str) -> str:
    digest = hashlib.sha256()
    pins = (CONSTRAINTS, IPYWIDGETS7, IMAGE_PINS)
    for part in (*(path.read_bytes() for path in pins), " ".join(IMAGE).encode()):
        digest.update(part)
    version = _python_version(python)
    digest.update(f"{version} {CACHE_FORMAT}".encode())
    return f"py{version.split()[0]}-{digest.hexdigest()[:12]}"


def _run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess:
    """Run a command; on failure show its output in the test report."""
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        shown = " ".join(map(str, command))
        raise RuntimeError(f"{shown} failed:\n{result.stdout[-4000:]}{result.stderr[-4000:]}")
    return result


def _pip_env(**settings: str) -> dict[str, str]:
    """The environment for pip in a runtime: the caller's, minus anything that could leak the repository."""
    leaks = ("PIP_CONSTRAINT", "PIP_FIND_LINKS", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV")
    env = {key: value for key, value in os.environ.items() if key not in leaks}
    env.pop("MPLBACKEND", None)  # Colab's kernel uses the inline backend
    env.update(PYTHONNOUSERSITE="1", PIP_DISABLE_PIP_VERSION_CHECK="1", **settings)
    return env


def _clone(source: Path, target: Path) -> None:
    """A copy of a virtual environment made of hard links (instant, no extra disk). pip replaces
    files rather than writing into them, so nothing done in the copy reaches the source."""
    shutil.copytree(source, target, symlinks=True, copy_function=os.link)


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """One builder at a time (pytest-xdist workers, parallel runs) for the images."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _image(variant: str) -> Path:
    """The cached Colab image of a variant ("colab": ipywidgets 7.7.1; "ipywidgets8": none preinstalled)."""
    python = _python(PYTHONS[variant])
    folder = CACHE / _cache_key(python)
    with _locked():
        keep = {CACHE / _cache_key(_python(version)) for version in set(PYTHONS.values())}
        for stale in CACHE.iterdir():  # images made for other pins or Pythons
            if stale.is_dir() and stale not in keep:
                shutil.rmtree(stale, ignore_errors=True)
        return _build_image(folder, variant, python)


def _build_image(folder: Path, variant: str, python: str) -> Path:
    image = folder / variant
    if image.is_dir():
        return image
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f"{variant}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    venv_python = str(partial / "bin" / "python")
    start = time.perf_counter()
    _run([python, "-m", "venv", str(partial)])
    _run([venv_python, "-m", "pip", "install", "--quiet", "--upgrade", "pip>=24"], env=_pip_env())
    colab = variant == "colab"  # ipywidgets 7.7.1 preinstalled, with the packages it needs
    constraints = _write_constraints(
        folder / f"{variant}-constraints.txt",
        without=PREINSTALLED + (WIDGET_FAMILY if colab else ()),
        extra=IMAGE_PINS,
        also=IPYWIDGETS7 if colab else None,
    )
    packages = [*IMAGE, *(["ipywidgets==7.7.1"] if colab else [])]
    _run([venv_python, "-m", "pip", "install", "--quiet", "-c", str(constraints), *packages], env=_pip_env())
    partial.rename(image)
    print(f"\n{variant}: image built in {time.perf_counter() - start:.0f} s")
    return image


def _site_packages(venv: Path) -> Path:
    (site,) = venv.glob("lib/python3.*/site-packages")
    return site


def _dist_info(venv: Path, name: str) -> Path | None:
    matches = [
        path
        for path in _site_packages(venv).glob("*.dist-info")
        if _canonical(path.name.removesuffix(".dist-info").rsplit("-", 1)[0]) == _canonical(name)
    ]
    return matches[0] if len(matches) == 1 else None


def _snapshot(venv: Path, name: str) -> dict[str, tuple[int, int, int]]:
    """(inode, mtime, size) of every file a distribution installed: any reinstall changes it."""
    info = _dist_info(venv, name)
    assert info is not None, f"{name} is not installed (exactly once) in {venv}"
    files = {}
    for row in csv.reader(io.StringIO((info / "RECORD").read_text())):
        path = (_site_packages(venv) / row[0]).resolve()
        if path.is_file():
            stat = path.stat()
            files[row[0]] = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
    files[f"<{info.name}>"] = (0, 0, 0)
    return files


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The vgcourse wheel, built from a clean copy of the sources (no stale build/ folder)."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "vgcourse", source / "vgcourse", ignore=shutil.ignore_patterns("__pycache__"))
    wheels = tmp_path_factory.mktemp("wheels")
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(source)])
    (built,) = wheels.glob("vgcourse-*.whl")
    assert built.name.startswith(f"vgcourse-{vgcourse.__version__}-")
    return built


@dataclass
class Runtime:
    """A throw-away Colab runtime cloned from an image."""

    variant: str
    path: Path
    image: Path
    env: dict[str, str]
    workdir: Path
    preinstalled: dict[str, dict] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def _runtime(variant: str, wheel: Path, tmp_path: Path, label: str) -> Iterator[Runtime]:
    image = _image(variant)
    for stale in image.parent.glob(f"run-{variant}-*"):  # left by a run that was killed
        with contextlib.suppress(ValueError, ProcessLookupError):
            os.kill(int(stale.name.rsplit("-", 1)[1]), 0)
            continue
        shutil.rmtree(stale, ignore_errors=True)
    path = image.parent / f"run-{variant}-{os.getpid()}"
    shutil.rmtree(path, ignore_errors=True)
    start = time.perf_counter()
    _clone(image, path)
    print(f"\n{variant}: runtime cloned in {time.perf_counter() - start:.1f} s")
    leave_alone = PREINSTALLED + (("ipywidgets",) if variant == "colab" else ())
    cell_constraints = _write_constraints(
        tmp_path / "cell-constraints.txt",
        without=PREINSTALLED + (WIDGET_FAMILY if variant == "colab" else ()),
    )
    home = tmp_path / "home"
    for sub in ("jupyter-data", "jupyter-config", "ipython", "content"):
        (home / sub).mkdir(parents=True)
    env = _pip_env(
        PIP_FIND_LINKS=str(wheel.parent),
        PIP_CONSTRAINT=str(cell_constraints),
        JUPYTER_DATA_DIR=str(home / "jupyter-data"),
        JUPYTER_CONFIG_DIR=str(home / "jupyter-config"),
        IPYTHONDIR=str(home / "ipython"),
    )
    env.pop("JUPYTER_PATH", None)
    runtime = Runtime(variant=variant, path=path, image=image, env=env, workdir=home / "content")
    runtime.preinstalled = {name: _snapshot(image, name) for name in leave_alone}
    try:
        yield runtime
    finally:
        OUTPUT.mkdir(parents=True, exist_ok=True)
        (OUTPUT / f"{label}-times.json").write_text(json.dumps(runtime.seconds, indent=1) + "\n")
        shutil.rmtree(path, ignore_errors=True)


def _facts(notebook: nbformat.NotebookNode) -> dict:
    for output in notebook.cells[-1].outputs:
        for line in output.get("text", "").splitlines():
            if line.startswith("COLAB-PATH-FACTS "):
                return json.loads(line.removeprefix("COLAB-PATH-FACTS "))
    raise AssertionError("the chapter ran, but the facts cell printed nothing")


def _wheel_record(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        record = next(n for n in archive.namelist() if n.endswith(".dist-info/RECORD"))
        rows = csv.reader(io.StringIO(archive.read(record).decode()))
        return {f"{row[0]},{row[1]}" for row in rows if row[1]}


def _installed_record(venv: Path) -> set[str]:
    info = _dist_info(venv, "vgcourse")
    assert info is not None, "vgcourse is not installed in the runtime"
    rows = csv.reader(io.StringIO((info / "RECORD").read_text()))
    pip_adds = ("INSTALLER", "REQUESTED", "direct_url.json")  # files pip writes at install time
    return {
        f"{row[0]},{row[1]}"
        for row in rows
        if row[1] and not row[0].startswith(("../", "/")) and not row[0].endswith(pip_adds)
    }


def _check_chapter(runtime: Runtime, wheel: Path, chapter: Path) -> None:
    target = OUTPUT / runtime.variant / chapter.name
    target.parent.mkdir(parents=True, exist_ok=True)
    python = runtime.path / "bin" / "python"
    command = [str(python), str(RUNNER), str(chapter), str(target), str(runtime.workdir)]
    try:
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            env=runtime.env,
            cwd=runtime.workdir,
            timeout=CHAPTER_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as error:
        pytest.fail(
            f"{chapter.name} did not finish in {CHAPTER_TIMEOUT_S} s on the Colab path:\n{error.stderr}"
        )
    executed = nbformat.read(target, as_version=4) if target.exists() else None
    if executed is not None:
        runtime.seconds[chapter.name] = round(executed.metadata.get("colab_path_seconds", 0.0), 1)
    assert result.returncode == 0, f"{chapter.name} failed on the Colab path:\n{result.stderr[-6000:]}"

    install = executed.cells[1]  # the chapter's first cell, after the planted google.colab cell
    pip_says = "".join(output.get("text", "") for output in install.outputs)
    assert "ERROR" not in pip_says and "Uninstalling" not in pip_says, f"pip in the install cell: {pip_says}"

    facts = _facts(executed)
    assert Path(facts["prefix"]).resolve() == runtime.path.resolve(), f"the kernel ran elsewhere: {facts}"
    site = _site_packages(runtime.path).resolve()
    assert Path(facts["vgcourse_file"]).resolve().is_relative_to(site), (
        f"vgcourse is not the wheel's: {facts}"
    )
    assert facts["vgcourse"] == vgcourse.__version__
    assert _installed_record(runtime.path) == _wheel_record(wheel), "installed vgcourse != the built wheel"

    for name, before in runtime.preinstalled.items():
        version = _dist_info(runtime.image, name).name.removesuffix(".dist-info").rsplit("-", 1)[1]
        assert facts[name] == version, f"{chapter.name}: {name} {version} became {facts[name]}"
        after = _snapshot(runtime.path, name)
        changed = sorted(path for path in before.keys() | after.keys() if before.get(path) != after.get(path))
        assert not changed, f"{chapter.name}: the install cell reinstalled or upgraded {name}: {changed[:5]}"
    if runtime.variant == "colab":
        assert facts["ipywidgets"] == "7.7.1"
    else:
        assert facts["ipywidgets"].startswith("8.")

    views = [
        output["data"][VIEW_MIME]["model_id"]
        for cell in executed.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if VIEW_MIME in output.get("data", {})
    ]
    state = executed.metadata.get("widgets", {}).get(STATE_MIME, {}).get("state", {})
    missing = [model for model in views if model not in state]
    assert not missing, f"{chapter.name}: widgets displayed without saved state (comm broken?): {missing}"


@pytest.fixture(scope="class")
def runtime(
    request: pytest.FixtureRequest, wheel: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Runtime]:
    """The throw-away runtime of the test class's variant, shared by its chapters (in toc order)."""
    variant = request.cls.VARIANT
    yield from _runtime(variant, wheel, tmp_path_factory.mktemp(variant), request.cls.__name__)


def _reader_notebook(chapter: Path) -> Path:
    """The reader notebook `make book` wrote for a chapter (what Colab's launch button opens)."""
    path = READER / chapter.name
    if not path.exists():
        pytest.fail(f"{path} is missing: the Colab path runs the reader notebooks that `make book` writes")
    return path


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Each runtime class runs the chapters its ``CHAPTER_FILES`` names, in toc order."""
    if "chapter" in metafunc.fixturenames:
        metafunc.parametrize("chapter", metafunc.cls.CHAPTER_FILES, ids=lambda path: path.stem)


@pytest.mark.skipif(not CHAPTERS, reason="the toc lists no chapter notebook yet")
class _Chapters:
    """Runs each of ``CHAPTER_FILES`` in one throw-away runtime of ``VARIANT`` (a class per runtime)."""

    VARIANT: str
    CHAPTER_FILES: list[Path]

    def test_chapter_runs_after_its_install_cell(self, runtime: Runtime, wheel: Path, chapter: Path) -> None:
        _check_chapter(runtime, wheel, _reader_notebook(chapter))


# Two classes for Colab's runtime, each with half of the chapters, so that pytest-xdist (--dist
# loadscope: one class per worker at a time) runs the Colab chapters on both cores, not one after another.
HALF = (len(CHAPTERS) + 1) // 2


class TestColab(_Chapters):
    """As Colab is: Python 3.12, an older torch, ipywidgets 7.7.1 preinstalled (the install cell keeps it).
    The first half of the chapters."""

    VARIANT = "colab"
    CHAPTER_FILES = CHAPTERS[:HALF]


class TestColabSecondHalf(_Chapters):
    """The same Colab runtime (a fresh clone of its image) for the other half of the chapters."""

    VARIANT = "colab"
    CHAPTER_FILES = CHAPTERS[HALF:]


class TestIpywidgets8(_Chapters):
    """Python 3.13 and no ipywidgets: the install cell brings ipywidgets 8 (first two chapters only)."""

    VARIANT = "ipywidgets8"
    CHAPTER_FILES = CHAPTERS[:2]
