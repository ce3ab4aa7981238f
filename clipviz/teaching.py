"""Exercise checks for the lessons in ``notebooks/``: tell a student whether an answer is right.

Each lesson ends with exercises. The student writes an answer into a variable (``...`` until
answered) and runs a check cell, which calls :func:`check_answer` with the value the notebook
itself measured. Nothing is hard-coded in the check: if the bundled models are retrained, the
expected values move with them. ``notebooks/solutions/`` holds one worked answer per exercise;
a solutions notebook re-runs the lesson's set-up cells (tagged ``setup``) with
:func:`run_lesson_cells` instead of copying them, so the two cannot drift apart.
"""

from __future__ import annotations

import math
from numbers import Real

__all__ = ["check_answer", "run_lesson_cells"]


def _is_number(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def check_answer(answer, expected, *, name: str = "answer", tolerance: float | None = None,
                 hint: str = "") -> bool:
    """Print whether ``answer`` matches ``expected`` and return ``True`` if it does.

    ``answer`` left as ``...`` (or ``None``) means "not answered yet". Numbers match within
    ``tolerance`` (absolute; default 1e-6); arrays (numpy or torch) must have ``expected``'s shape
    and match element-wise within ``tolerance``; strings match ignoring case and surrounding
    spaces; anything else (booleans, tuples of labels) must be equal. ``hint`` is shown after a wrong
    answer; the expected value is not, so the exercise keeps its point.

        >>> check_answer(True, True, name="loss rises")
        loss rises: right
        True
    """
    if answer is ... or answer is None:
        print(f"{name}: not answered yet (replace the ... with your answer, then run this cell again)")
        return False
    if hasattr(expected, "shape") and hasattr(expected, "__array__"):
        import numpy as np

        answer_array = np.asarray(answer, dtype=float) if hasattr(answer, "__array__") else None
        limit = 1e-6 if tolerance is None else tolerance
        expected_array = np.asarray(expected, dtype=float)
        if answer_array is None or answer_array.shape != expected_array.shape:
            shape = getattr(answer, "shape", type(answer).__name__)
            print(f"{name}: expected an array of shape {tuple(expected_array.shape)}, got {shape}")
            return False
        right = bool(np.allclose(answer_array, expected_array, rtol=0.0, atol=limit))
    elif _is_number(expected):
        if not _is_number(answer):
            print(f"{name}: expected a number, got {type(answer).__name__} {answer!r}")
            return False
        limit = 1e-6 if tolerance is None else tolerance
        right = math.isclose(float(answer), float(expected), rel_tol=0.0, abs_tol=limit)
    elif isinstance(expected, str):
        right = isinstance(answer, str) and answer.strip().lower() == expected.strip().lower()
    else:
        right = answer == expected
    if right:
        print(f"{name}: right")
    else:
        print(f"{name}: not yet" + (f". Hint: {hint}" if hint else ""))
    return bool(right)


def run_lesson_cells(notebook, namespace: dict, tag: str = "setup") -> int:
    """Execute the code cells of ``notebook`` tagged ``tag`` in ``namespace``; returns how many ran.

    A solutions notebook calls ``run_lesson_cells("../05_train_a_tiny_clip.ipynb", globals())``
    to get the lesson's definitions (models, data, functions) without re-running all of it.
    """
    import json
    from pathlib import Path

    path = Path(notebook)
    if not path.is_file():
        raise FileNotFoundError(f"no lesson notebook at {path.resolve()}: pass the path of the .ipynb file")
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    chosen = [c for c in cells if c.get("cell_type") == "code" and tag in c.get("metadata", {}).get("tags", [])]
    if not chosen:
        raise ValueError(f"{path.name} has no code cell tagged {tag!r}")
    for cell in chosen:
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        exec(compile(source, f"{path.name}[{tag}]", "exec"), namespace)
    return len(chosen)
