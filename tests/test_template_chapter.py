"""The chapter template (templates/chapter/, CONTRIBUTING.md): copied and registered as CONTRIBUTING.md
says, with its exercise's solution and guide row as step 6 gives them, its notebook runs (with the book's
figure check), its claim test passes and the contract, edge, exercise and chapter-reference tests find it,
with nothing else to edit; uncopied, it is in neither the book's toc nor the package's registry."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from book_toc import toc_entries

from vgcourse.chapters import CHAPTERS, chapter_ids

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "templates" / "chapter"
ID = "example_chapter"
TITLE = "Example chapter: gradients through a deep sigmoid network"
EXERCISE = f"{ID}.depth_to_vanish"
# what the copy's tests need besides the package (tests/small_runs/<id>.py comes with the template)
TESTS = (
    "conftest.py",
    "claims.py",
    "book_toc.py",
    "nbval_sanitize.cfg",
    "exercise_solutions.py",
    "test_contracts.py",
    "test_config_bounds.py",
    "test_exercises.py",
    "test_chapter_references.py",
    "small_runs/__init__.py",
)


def test_the_template_is_not_part_of_the_book_or_the_package() -> None:
    assert ID not in chapter_ids()
    assert not any(Path(entry).name == ID for entry in toc_entries())
    assert not list((ROOT / "vgcourse").glob(f"*/{ID}.py"))
    assert not (ROOT / "book" / f"{ID}.ipynb").exists()
    assert "templates" in yaml.safe_load((ROOT / "_config.yml").read_text())["exclude_patterns"]


def _copy_as_contributing_says(repo: Path) -> None:
    """A copy of the project with the template copied in and registered (CONTRIBUTING.md, steps 1-2)."""
    # the package as committed (files git tracks; all of them outside a git checkout): a module someone
    # is writing and has not added yet stays out of the copy
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "vgcourse"], cwd=ROOT, capture_output=True, check=True
        ).stdout.decode()
        package = [ROOT / name for name in listed.split("\0") if name and (ROOT / name).is_file()]
    except (OSError, subprocess.CalledProcessError):
        package = []
    if not package:
        package = [p for p in (ROOT / "vgcourse").rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    for path in package:
        target = repo / path.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    (repo / "tests" / "small_runs").mkdir(parents=True)
    for name in TESTS:
        shutil.copy(ROOT / "tests" / name, repo / "tests" / name)
    (repo / "book").mkdir()
    for c in CHAPTERS:
        shutil.copy(ROOT / f"{c.notebook}.ipynb", repo / f"{c.notebook}.ipynb")
    shutil.copy(ROOT / "book" / "instructors_guide.md", repo / "book" / "instructors_guide.md")
    shutil.copy(ROOT / "pyproject.toml", repo / "pyproject.toml")
    # step 1: copy the template's files to the same paths in the project
    for path in TEMPLATE.rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts and path.name != "ruff.toml":
            target = repo / path.relative_to(TEMPLATE)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target)
    # step 2: register the chapter in vgcourse/chapters.py and _toc.yml (here: last)
    registry = repo / "vgcourse" / "chapters.py"
    text = registry.read_text()
    last = '    ("detecting_and_fixing", "Detecting and fixing vanishing gradients"),\n'
    assert last in text, "vgcourse/chapters.py changed: update this test's registration step"
    registry.write_text(text.replace(last, last + f'    ("{ID}", "{TITLE}"),\n'))
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    numbered = next(part for part in toc["parts"] if part.get("numbered"))
    numbered["chapters"].append({"file": f"book/{ID}"})
    (repo / "_toc.yml").write_text(yaml.safe_dump(toc, sort_keys=False))
    # ... with its number N in its exercise headings and solution prompts
    notebook = repo / "book" / f"{ID}.ipynb"
    assert "xercise N." in notebook.read_text(), "the template's exercise numbers changed: update this step"
    notebook.write_text(notebook.read_text().replace("xercise N.", f"xercise {len(CHAPTERS) + 1}."))
    # ... and in the intro's "Map of the course" (its last item is the last chapter's)
    intro = (ROOT / "book" / "intro.md").read_text()
    closing = "\nThe {doc}`instructor's guide <instructors_guide>`"
    assert intro.count(closing) == 1, "book/intro.md changed: update this test's registration step"
    item = f"{len(CHAPTERS) + 1}. **{{doc}}`{TITLE} <{ID}>`.** Gradients through a deep sigmoid network.\n"
    (repo / "book" / "intro.md").write_text(intro.replace(closing, item + closing))
    # ... and in the instructor's guide's "Learning goals" (its last term is the last chapter's)
    guide = repo / "book" / "instructors_guide.md"
    goals_end = "\n\n## The exercises\n"
    assert guide.read_text().count(goals_end) == 1, "the guide's sections changed: update this test's step 2"
    term = (
        f"\n\n{{doc}}`Chapter {len(CHAPTERS) + 1}: {TITLE} <{ID}>`\n: Measure a sigmoid network's gradients."
    )
    guide.write_text(guide.read_text().replace(goals_end, term + goals_end))
    # step 6: the exercise's solution and typical mistakes, and its row in the instructor's guide, as
    # CONTRIBUTING.md writes them for the template's exercise
    guide_row, solution = _step_6_entries()
    solutions = repo / "tests" / "exercise_solutions.py"
    opening = "SOLUTIONS: dict[str, tuple[Callable[[], Any], tuple[Callable[[], Any], ...]]] = {\n"
    assert opening in solutions.read_text(), "tests/exercise_solutions.py changed: update this test's step 6"
    solutions.write_text(solutions.read_text().replace(opening, opening + solution + "\n"))
    header = "| id | kind | the task |\n| --- | --- | --- |\n"
    assert header in guide.read_text(), "the guide's exercise table changed: update this test's step 6"
    guide.write_text(guide.read_text().replace(header, header + guide_row + "\n"))


def _step_6_entries() -> tuple[str, str]:
    """The guide's table row and the SOLUTIONS entry of the template's exercise, from CONTRIBUTING.md."""
    lines = (ROOT / "CONTRIBUTING.md").read_text().splitlines()
    mentions = [line.strip() for line in lines if f"`{EXERCISE}`" in line or f'"{EXERCISE}"' in line]
    rows = [line for line in mentions if line.startswith(f"| `{EXERCISE}` |")]
    entries = [line for line in mentions if line.startswith(f'"{EXERCISE}": (')]
    assert len(rows) == 1 and len(entries) == 1, f"CONTRIBUTING.md, step 6: a guide row, an entry: {mentions}"
    return rows[0], "    " + entries[0]


def test_a_copied_and_registered_template_passes_its_claims_and_the_contracts(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    _copy_as_contributing_says(repo)
    # the chapter's tests and the registry-wide ones, then its notebook as CONTRIBUTING.md runs it
    selected = f"{ID} or toc or registered or diagnose or exercises_register or discovery"
    selected += " or every_exercise_has or instructors_guide or link_the_chapter or write_no_chapter_numbers"
    tests = [f"tests/test_{ID}.py", "tests/test_contracts.py", "tests/test_config_bounds.py"]
    tests += ["tests/test_exercises.py", "tests/test_chapter_references.py", "-k", selected]
    notebook = ["--nbval-lax", "--nbval-current-env", "--nbval-sanitize-with", "tests/nbval_sanitize.cfg"]
    notebook += [f"book/{ID}.ipynb"]
    code = (
        "import sys, pytest, vgcourse\n"
        f"assert vgcourse.__file__.startswith({str(repo)!r}), vgcourse.__file__\n"
        "options = ['-q', '-p', 'no:cacheprovider', '-o', 'addopts=--strict-markers']\n"
        f"sys.exit(pytest.main(options + {tests!r}) or pytest.main(options + {notebook!r}))\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(repo),
        "MPLBACKEND": "Agg",
        "VGCOURSE_CLAIM_SEEDS": "0",
        "VGCOURSE_STRICT_FIGURES": "1",
    }
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=repo, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "failed" not in done.stdout and "xfail" not in done.stdout
