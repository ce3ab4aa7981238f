"""The public surface: small, lazy, and every documented submodule reachable after ``import clipviz``."""

import subprocess
import sys

import clipviz


def test_documented_submodules_are_reachable_lazily():
    """In a fresh interpreter: nothing heavy at import, then every submodule by attribute."""
    code = (
        "import sys, clipviz\n"
        "heavy = [m for m in ('torch', 'transformers', 'matplotlib', 'ipywidgets', 'umap') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "assert clipviz.widgets.ZeroShotApp.__name__ == 'ZeroShotApp'\n"
        "assert callable(clipviz.zoo.path) and 'relevance' in clipviz.heatmaps.HEATMAP_METHODS\n"
        "assert callable(clipviz.plotting.heatmaps.blend)\n"
        "for name in clipviz.SUBMODULES:\n"
        "    assert getattr(clipviz, name).__name__ == 'clipviz.' + name, name\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


def test_unknown_names_are_attribute_errors():
    import pytest

    for name in ("no_such_module", "_private"):
        with pytest.raises(AttributeError, match=name):
            getattr(clipviz, name)
    assert set(clipviz.SUBMODULES) <= set(dir(clipviz))


def test_classify_is_a_method_and_a_function(tiny_hooked, photos):
    """The verb rule: where both exist, the method calls the function and they agree."""
    model = tiny_hooked["clip"]
    labels = ["red circle", "blue square"]
    by_method = model.classify(photos, labels, templates="single")
    by_function = clipviz.classify(model, photos, labels, templates="single")
    assert (by_method.probs == by_function.probs).all()
