"""clipviz.teaching.check_answer: the exercise checks the lessons use."""

from clipviz.teaching import check_answer


def test_unanswered_is_not_right(capsys):
    assert check_answer(..., 3.0, name="q") is False
    assert "not answered yet" in capsys.readouterr().out


def test_numbers_match_within_tolerance(capsys):
    assert check_answer(1.39, 1.386, tolerance=0.01, name="loss") is True
    assert capsys.readouterr().out == "loss: right\n"
    assert check_answer(1.5, 1.386, tolerance=0.01, hint="log of the batch size") is False
    out = capsys.readouterr().out
    assert "not yet" in out and "log of the batch size" in out and "1.386" not in out


def test_booleans_are_not_numbers(capsys):
    assert check_answer(True, 1.0) is False
    assert "expected a number" in capsys.readouterr().out
    assert check_answer(False, True) is False
    assert check_answer(True, True) is True


def test_strings_ignore_case_and_spaces():
    assert check_answer("  Relevance ", "relevance") is True
    assert check_answer("rollout", "relevance") is False
    assert check_answer(3, "relevance") is False


def test_other_values_compare_equal():
    assert check_answer(("red", "star"), ("red", "star")) is True
    assert check_answer(("red", "star"), ("red", "circle")) is False


def test_arrays_match_shape_and_values(capsys):
    import numpy as np
    import torch

    expected = np.arange(6.0).reshape(2, 3)
    assert check_answer(torch.arange(6.0).reshape(2, 3), expected) is True
    assert check_answer(expected + 0.1, expected) is False
    assert check_answer(expected + 0.1, expected, tolerance=0.2) is True
    capsys.readouterr()
    assert check_answer(expected.ravel(), expected) is False
    assert "shape (2, 3)" in capsys.readouterr().out
    assert check_answer("a map", expected) is False


def test_run_lesson_cells_runs_only_tagged_code(tmp_path):
    import json

    import pytest

    from clipviz.teaching import run_lesson_cells

    notebook = {"cells": [
        {"cell_type": "code", "metadata": {"tags": ["setup"]}, "source": ["x = 2\n", "y = x * 3"]},
        {"cell_type": "code", "metadata": {}, "source": "raise RuntimeError('not a set-up cell')"},
        {"cell_type": "markdown", "metadata": {"tags": ["setup"]}, "source": "prose"},
        {"cell_type": "code", "metadata": {"tags": ["setup", "other"]}, "source": "z = y + 1"},
    ]}
    path = tmp_path / "lesson.ipynb"
    path.write_text(json.dumps(notebook))
    namespace = {}
    assert run_lesson_cells(path, namespace) == 2
    assert (namespace["x"], namespace["y"], namespace["z"]) == (2, 6, 7)
    with pytest.raises(ValueError, match="no code cell tagged 'missing'"):
        run_lesson_cells(path, {}, tag="missing")
    with pytest.raises(FileNotFoundError):
        run_lesson_cells(tmp_path / "absent.ipynb", {})


def test_committed_notebooks_carry_no_widget_bundle():
    """Executing a notebook with a jupyter-scatter map stores anywidget's ~2 MB JavaScript bundle in
    ``metadata.widgets``; the lessons are committed without it (their outputs are what is read)."""
    import json
    from pathlib import Path

    notebooks = sorted((Path(__file__).parent.parent / "notebooks").rglob("*.ipynb"))
    assert notebooks
    for path in notebooks:
        state = json.loads(path.read_text(encoding="utf-8"))["metadata"].get("widgets", {})
        size = len(json.dumps(state))
        assert size < 512 * 1024, (f"{path.name} stores {size / 2**20:.1f} MB of widget state: drop "
                                   "notebook['metadata']['widgets'] before committing")
