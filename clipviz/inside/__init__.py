"""Inside the model: logit lens, decomposition, direct logit attribution, TextSpan, patching.

One module per job — ``decomposition`` (a tower's embedding as a sum of its parts), ``attribution``
(those parts' shares of an image–text logit), ``textspan`` (text descriptions of a head's
outputs), ``patching`` (activation patching and ablation). The logit lens itself is
``HookedCLIP.project`` and ``ActivationCache.accumulated_resid``. Pictures are in
``clipviz.plotting.inside``.
"""

from importlib import import_module

_EXPORTS = {
    "decompose": "clipviz.inside.decomposition",
    "Decomposition": "clipviz.inside.decomposition",
    "logit_attribution": "clipviz.inside.attribution",
    "LogitAttribution": "clipviz.inside.attribution",
    "text_span": "clipviz.inside.textspan",
    "describe_heads": "clipviz.inside.textspan",
    "patch": "clipviz.inside.patching",
    "ablated": "clipviz.inside.patching",
}

__all__ = ["Decomposition", "LogitAttribution", "ablated", "decompose", "describe_heads", "logit_attribution", "patch", "text_span"]


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'clipviz.inside' has no attribute {name!r}")
