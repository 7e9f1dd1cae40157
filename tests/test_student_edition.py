"""Homework mode (tools/student_edition.py): the student edition of a chapter contains no
solution text, every numerical exercise becomes an otter-grader check, and a check passes a
correct answer and fails a wrong one."""

import json
import re
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import student_edition  # noqa: E402

CHAPTERS = sorted((ROOT / "chapters").glob("ch*.md"))
SOLUTION_SPAN = re.compile(
    r"^(`{3,})\{solution-start\}.*?^`{3,}\{solution-end\}"  # a worked solution with code
    r"|^(`{3,})\{solution\}.*?^\2\s*$",  # a solution block
    re.S | re.M,
)


def solution_lines(text: str) -> set[str]:
    """Distinctive lines (>= 25 characters) that occur only inside a chapter's solutions,
    found in the raw MyST source independently of the tool's parser."""
    spans = [m.group(0) for m in SOLUTION_SPAN.finditer(text)]
    outside = SOLUTION_SPAN.sub("", text)
    lines = {line.strip() for span in spans for line in span.splitlines()}
    return {
        line
        for line in lines
        if len(line) >= 25 and not line.startswith(("```", ":")) and line not in outside
    }


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[c.stem for c in CHAPTERS])
def test_student_edition_has_no_solutions_and_checks_every_numerical_exercise(chapter):
    text = chapter.read_text()
    edition = student_edition.student_edition(chapter)
    student_text = "\n".join(cell.source for cell in edition.notebook.cells)
    assert "{solution" not in student_text
    hidden = solution_lines(text)
    assert hidden, f"{chapter.name}: no solution text found"
    leaked = [line for line in hidden if line in student_text]
    assert not leaked, f"{chapter.name}: solution text in the student edition: {leaked[:3]}"
    checks = [
        c for c in edition.notebook.cells if c.cell_type == "code" and "grader.check(" in c.source
    ]
    assert len(checks) == text.count("[exercise-check]") >= 2, chapter.name
    derivations = [e for e in edition.exercises if e.check is None]
    assert derivations, f"{chapter.name} has no derivation exercise"
    for exercise in edition.exercises:
        solved = re.search(rf"\{{solution(?:-start)?\}} {re.escape(exercise.label)}\s", text)
        assert solved, f"{chapter.name}: exercise {exercise.label} has no worked solution"
    for exercise in edition.exercises:
        if exercise.check is None:
            continue
        assert exercise.solution, f"{exercise.label} has no worked solution code"
        compile(edition.checks[exercise.label], exercise.label, "exec")
        answer = next(
            c.source for c in edition.notebook.cells if c.source.startswith(exercise.answers[0])
        )
        assert answer.split("#")[0].strip().endswith("= None"), answer


def test_bad_markup_is_refused(tmp_path):
    chapter = tmp_path / "ch42_broken.md"
    chapter.write_text(
        "---\njupytext:\n  text_representation:\n    format_name: myst\nkernelspec:\n"
        "  display_name: Python 3\n  language: python\n  name: python3\n---\n\n# 42. Broken\n\n"
        "```{exercise} Check it yourself: x\n:label: ch42-ex\n\nFind x.\n```\n\n"
        "```{code-cell} ipython3\n:tags: [exercise-check]\n\nassert my_x == 1\n```\n"
    )
    with pytest.raises(student_edition.FormatError, match="exercise-answer"):
        student_edition.student_edition(chapter)


WRONG = """
import numpy as _np
def _wrong(value):
    wrong = _np.asarray(value, dtype=float) * 1.5 + 0.5
    return float(wrong) if wrong.ndim == 0 else tuple(wrong.ravel().tolist())
"""


@pytest.mark.parametrize("name", ["ch01_pretraining", "ch02_neural_networks"])
def test_checks_pass_a_correct_answer_and_fail_a_wrong_one(name, tmp_path):
    edition = student_edition.student_edition(ROOT / "chapters" / f"{name}.md")
    path = student_edition.write(edition, tmp_path)
    nb = nbformat.read(path, as_version=4)
    probe = ["_verdicts = {}", WRONG]
    for exercise in edition.exercises:
        if exercise.check is None:
            continue
        label = json.dumps(exercise.label)
        probe.append(f"_verdicts[{label}] = [grader.check({label}).passed_all]")  # still None
        probe.extend(exercise.solution)
        probe.append(f"_verdicts[{label}].append(grader.check({label}).passed_all)")
        probe.extend(f"{v} = _wrong({v})" for v in exercise.answers)
        probe.append(f"_verdicts[{label}].append(grader.check({label}).passed_all)")
    probe.append("import json; print(json.dumps(_verdicts))")
    nb.cells.append(nbformat.v4.new_code_cell("\n".join(probe)))
    NotebookClient(nb, timeout=900, resources={"metadata": {"path": str(tmp_path)}}).execute()
    verdicts = json.loads(nb.cells[-1].outputs[-1]["text"].strip().splitlines()[-1])
    assert len(verdicts) >= 2
    for label, (unanswered, correct, wrong) in verdicts.items():
        assert not unanswered, f"{label}: the check passes before the student answers"
        assert correct, f"{label}: the check fails the worked solution"
        assert not wrong, f"{label}: the check passes a wrong answer"
