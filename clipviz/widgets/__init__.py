"""ipywidgets apps. They wire compute (clipviz.*) to pictures (clipviz.plotting); nothing else imports them."""

from importlib import import_module

_APPS = {
    "ZeroShotApp": "clipviz.widgets.zeroshot",
    "AttentionApp": "clipviz.widgets.attention",
    "EmbeddingApp": "clipviz.widgets.embedding",
    "Dashboard": "clipviz.widgets.dashboard",
    "HeadsApp": "clipviz.widgets.heads",
}

__all__ = sorted(_APPS)


def __getattr__(name):
    if name in _APPS:
        return getattr(import_module(_APPS[name]), name)
    raise AttributeError(f"module 'clipviz.widgets' has no attribute {name!r}")
