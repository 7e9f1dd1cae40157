"""Make the student edition of chapters: solutions removed, numerical exercises auto-checked.

An instructor runs

    python tools/student_edition.py ch02                 # one chapter (a prefix or a stem)
    python tools/student_edition.py --all                # every chapter
    python tools/student_edition.py ch02 --autograder    # also otter-grader's autograder.zip

and gets, for each chapter, ``_homework/<chapter>/<chapter>_student.ipynb``: a Colab-ready
notebook without any solution (the ``{solution}`` blocks and everything between
``{solution-start}`` and ``{solution-end}``, prose and code), in which every numerical exercise
("Check it yourself") ends with a ``grader.check("<label>")`` cell. The checks are
otter-grader tests (https://otter-grader.readthedocs.io, exception-based format), one file per
exercise under ``_homework/<chapter>/tests/``, made from the chapter's cell tagged
``exercise-check``; the notebook carries them too (its grader cell unpacks them), so the single
``.ipynb`` works on Colab and offline. Running a check cell shows pass or fail and the check's
hint, never the answer. With ``--autograder``, ``otter generate`` also writes
``autograder.zip`` for grading submissions with ``otter run`` or on Gradescope.

The chapter markup this relies on (CONTRIBUTING.md, "Exercises"): an ``{exercise}`` block with
a ``:label:``; a code cell tagged ``exercise-answer`` that sets the student's variables to
``None``; the worked solution between ``{solution-start} <label>`` and ``{solution-end}``; a
code cell tagged ``exercise-check`` that compares the variables with an independent reference
and raises ``AssertionError`` with a hint when they disagree.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import subprocess
import sys
import textwrap
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import jupytext
import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sync_notebooks import chapter_sources, macros_cell  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "_homework"
ANSWER_TAG, CHECK_TAG = "exercise-answer", "exercise-check"
OPENER = re.compile(r"^(`{3,})\{([\w-]+)\}\s*(.*?)\s*$")
OPTION = re.compile(r"^:[\w-]+:")
COLAB_LINK = re.compile(r"^\[Open in Colab\]\(.*\)\s*$", re.M)
TITLE = re.compile(r"^# (\S+?)\. ", re.M)  # "# 8. RG flow ...", "# ∞. The end of training"
ANSWER_LINE = re.compile(r"^((?:my_\w+\s*=\s*)+)None\b")

CHECK_FILE = """\
from otter.test_files import test_case

OK_FORMAT = False

name = {name!r}
points = 1


@test_case(points=1, hidden=False)
def {function}(env):
    # the check cell of the chapter, run in the student's namespace
    globals().update(env)
{body}
"""

GRADER_CELL = """\
# Set up the automatic checks: otter-grader tests, one per numerical exercise.
try:
    import otter
except ImportError:
    %pip install -q otter-grader
    import otter
import base64, json, pathlib, zlib

checks_dir = pathlib.Path("pdlt_checks") / {stem!r}
checks_dir.mkdir(parents=True, exist_ok=True)
for check_name, source in json.loads(zlib.decompress(base64.b64decode({blob!r}))).items():
    (checks_dir / f"{{check_name}}.py").write_text(source)
grader = otter.Notebook(tests_dir=str(checks_dir))
"""

NOTE = """\
**Student edition.** The solutions are removed. Each numerical exercise ("Check it
yourself") has a cell that sets your answer to `None`: replace `None` by your answer and run
the `grader.check(...)` cell below it, which compares it with sampled networks or an
independent computation and says whether it passes, with a hint when it does not. Run the
chapter from the top first: the checks use its imports and results.
"""


class FormatError(ValueError):
    """The chapter's exercise markup does not follow CONTRIBUTING.md."""


@dataclass
class Exercise:
    label: str
    title: str
    answers: list[str] = field(default_factory=list)  # the variables the student sets
    check: str | None = None  # the source of its exercise-check cell
    solution: list[str] = field(default_factory=list)  # its worked solution's code cells


@dataclass
class StudentEdition:
    """A chapter's student notebook, its otter checks, and the solution text it dropped."""

    stem: str
    notebook: nbformat.NotebookNode
    checks: dict[str, str]  # exercise label -> otter test file source
    exercises: list[Exercise]
    removed: list[str]  # solution prose and code, for the tests


def _tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def _block_end(lines: list[str], start: int, fence: str) -> int:
    for j in range(start + 1, len(lines)):
        if lines[j].strip() == fence:
            return j
    raise FormatError(f"unclosed directive {lines[start]!r}")


class _Converter:
    def __init__(self, stem: str):
        self.stem = stem
        self.chapter = str(int(stem[2:4]))  # until the title "# ∞. ..." says otherwise
        self.in_solution: str | None = None
        self.exercises: list[Exercise] = []
        self.removed: list[str] = []

    def markdown(self, source: str) -> str:
        """Drop solutions; turn {exercise} directives into plain, Colab-readable markdown."""
        lines, out, i = source.split("\n"), [], 0
        title = TITLE.search(source)
        if title and not self.exercises:
            self.chapter = title.group(1)
        while i < len(lines):
            opener = OPENER.match(lines[i])
            if not opener:
                (self.removed if self.in_solution else out).append(lines[i])
                i += 1
                continue
            fence, name, argument = opener.groups()
            end = _block_end(lines, i, fence)
            body = lines[i + 1 : end]
            if name == "solution-start":
                if self.in_solution:
                    raise FormatError(f"solution-start {argument} inside {self.in_solution}")
                self.in_solution = argument
            elif name == "solution-end":
                if not self.in_solution:
                    raise FormatError("solution-end without solution-start")
                self.in_solution = None
            elif name == "solution":
                self.removed.extend(b for b in body if not OPTION.match(b))
            elif self.in_solution:
                self.removed.extend(lines[i : end + 1])
            elif name == "exercise":
                out.extend(self._exercise(argument, body))
            else:
                out.extend(lines[i : end + 1])
            i = end + 1
        return "\n".join(out).strip("\n")

    def _exercise(self, title: str, body: list[str]) -> list[str]:
        options = [b for b in body if OPTION.match(b)]
        label = next((o.split(":", 2)[2].strip() for o in options if o.startswith(":label:")), "")
        if not label:
            raise FormatError(f"exercise {title!r} has no :label:")
        self.exercises.append(Exercise(label, title))
        number = f"{self.chapter}.{len(self.exercises)}"
        text = [b for b in body if not OPTION.match(b)]
        return [f"**Exercise {number}** ({label}): *{title}*", "", *text]

    def code(self, cell) -> nbformat.NotebookNode | None:
        if self.in_solution:
            self.removed.append(cell.source)
            for exercise in self.exercises:
                if exercise.label == self.in_solution:
                    exercise.solution.append(cell.source)
            return None
        tags = _tags(cell)
        if ANSWER_TAG in tags:
            exercise = self._current("an exercise-answer cell")
            match = ANSWER_LINE.match(cell.source.strip())
            if not match or "\n" in cell.source.strip():
                raise FormatError(
                    f"{exercise.label}: the exercise-answer cell must be one line "
                    f"'my_x = ... = None  # ...', got {cell.source!r}"
                )
            exercise.answers = re.findall(r"(my_\w+)\s*=", match.group(1))
        if CHECK_TAG in tags:
            exercise = self._current("an exercise-check cell")
            if not exercise.answers or exercise.check is not None:
                raise FormatError(
                    f"{exercise.label}: an exercise-check cell needs exactly one exercise-answer "
                    "cell before it"
                )
            exercise.check = cell.source
            return nbformat.v4.new_code_cell(
                f'grader.check("{exercise.label}")  # checks {", ".join(exercise.answers)}'
            )
        return nbformat.v4.new_code_cell(cell.source, metadata=dict(cell.metadata))

    def _current(self, what: str) -> Exercise:
        if not self.exercises:
            raise FormatError(f"{self.stem}: {what} before any exercise")
        return self.exercises[-1]


def check_file(label: str, source: str) -> str:
    """The otter-grader test file (exception-based format) of one check cell."""
    function = "test_" + re.sub(r"\W", "_", label)
    return CHECK_FILE.format(name=label, function=function, body=textwrap.indent(source, "    "))


def student_edition(chapter: Path) -> StudentEdition:
    """Build the student edition of one chapter source ``chapters/chNN_name.md``."""
    stem = chapter.stem
    converter = _Converter(stem)
    cells = []
    for cell in jupytext.read(chapter, fmt="md:myst").cells:
        if cell.cell_type == "markdown":
            text = converter.markdown(cell.source)
            if not cells:  # the title cell: its Colab link opens the full edition
                text = COLAB_LINK.sub("", text).rstrip() + "\n\n" + NOTE
            if text.strip():
                cells.append(nbformat.v4.new_markdown_cell(text))
        elif cell.cell_type == "code":
            new = converter.code(cell)
            if new is not None:
                cells.append(new)
    if converter.in_solution:
        raise FormatError(f"{stem}: solution {converter.in_solution} is never closed")
    numerical = [e for e in converter.exercises if e.check is not None]
    for exercise in converter.exercises:
        if exercise.answers and exercise.check is None:
            raise FormatError(f"{stem}: exercise {exercise.label} has no exercise-check cell")
    checks = {e.label: check_file(e.label, e.check) for e in numerical}
    blob = base64.b64encode(zlib.compress(json.dumps(checks).encode(), 9)).decode()
    code = [i for i, c in enumerate(cells) if c.cell_type == "code"]
    if not code:
        raise FormatError(f"{stem}: no code cells (the template starts with a setup cell)")
    setup = code[0] + 1
    cells.insert(setup, nbformat.v4.new_code_cell(GRADER_CELL.format(stem=stem, blob=blob)))
    cells.insert(0, macros_cell())
    for i, cell in enumerate(cells):
        cell["id"] = f"{stem[:4]}-student-{i:03d}"
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata.update(
        kernelspec={"display_name": "Python 3", "language": "python", "name": "python3"},
        colab={"provenance": [], "name": f"{stem}_student.ipynb"},
    )
    return StudentEdition(stem, nb, checks, converter.exercises, converter.removed)


def write(edition: StudentEdition, out: Path, autograder: bool = False) -> Path:
    """Write the notebook and the otter test files (and optionally autograder.zip)."""
    folder = out / edition.stem
    tests = folder / "tests"
    tests.mkdir(parents=True, exist_ok=True)
    for old in tests.glob("*.py"):
        old.unlink()
    for label, source in edition.checks.items():
        (tests / f"{label}.py").write_text(source)
    path = folder / f"{edition.stem}_student.ipynb"
    nbformat.write(edition.notebook, path)
    if autograder:
        subprocess.run(
            ["otter", "generate", "-t", str(tests), "-o", str(folder / "autograder.zip"),
             "-r", str(ROOT / "requirements.txt")],
            check=True, cwd=folder,
        )  # fmt: skip
    return path


def resolve(names: list[str]) -> list[Path]:
    """Chapter sources named by stem or prefix (``ch02``, ``ch02_neural_networks``)."""
    sources, chosen = chapter_sources(), []
    for name in names:
        found = [s for s in sources if s.stem == name or s.stem.startswith(name)]
        if len(found) != 1:
            known = ", ".join(s.stem for s in sources)
            raise SystemExit(f"chapter {name!r} matches {len(found)} chapters; known: {known}")
        chosen.extend(found)
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chapters", nargs="*", help="chapter stems or prefixes, e.g. ch02")
    parser.add_argument("--all", action="store_true", help="every chapter")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    parser.add_argument("--autograder", action="store_true", help="also write autograder.zip")
    args = parser.parse_args(argv)
    if args.all == bool(args.chapters):
        parser.error("name chapters or pass --all")
    for chapter in chapter_sources() if args.all else resolve(args.chapters):
        edition = student_edition(chapter)
        path = write(edition, args.out, args.autograder)
        print(f"wrote {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}"
              f" ({len(edition.checks)} checked exercises)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
