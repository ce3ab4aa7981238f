"""Hook points, and the context manager that adds hooks and always removes them.

Hooks are global state on the model's modules (TransformerLens says so plainly), so clipviz only
adds them inside :func:`attached`, whose ``finally`` removes every one of them whatever happens —
an exception in a user's hook, in the model, or a ``KeyboardInterrupt``.

Attention patterns need more than a module hook: transformers 5 computes attention in a function
(``sdpa`` by default) that never materialises the softmax. clipviz registers its own attention
implementation, ``"clipviz"``, with transformers' ``AttentionInterface``. It runs ``sdpa`` while no
pattern hook is attached (full speed) and the exact eager computation, with the probabilities
passing through the ``hook_pattern`` point, when one is. The pattern is then a real node of the
graph: a hook may replace it, and gradients flow through it.
"""

from __future__ import annotations

import contextlib
import difflib
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from .errors import ClipvizError, InvalidArgument, WrongType

ATTENTION_IMPLEMENTATION = "clipviz"

# attention module -> the pattern hook point attached to it (only while hooks are attached)
_PATTERN_POINTS: weakref.WeakKeyDictionary[nn.Module, HookPoint] = weakref.WeakKeyDictionary()


@dataclass(eq=False)
class HookPoint:
    """A named activation: ``fn(tensor, *, hook=point)`` sees it and may return a replacement.

    ``kind`` says how the activation is reached: ``"output"`` (a module's output), ``"input"``
    (a module's first input), ``"z"`` (the first input of the attention's output projection, seen
    per head as ``[batch, pos, head, d_head]``), ``"pattern"`` (softmax probabilities inside the
    attention function) or ``"manual"`` (computed by clipviz itself, e.g. the normalised embedding).
    """

    name: str
    kind: str
    module: nn.Module | None = None
    fns: list[Callable] = field(default_factory=list)
    n_heads: int = 0  # for kind "z": how the flat [.., n_heads * d_head] input splits into heads
    # the one torch hook that runs ``fns``: registered with the first fn, removed with the last, so
    # contexts that overlap may exit in any order and each takes away exactly its own fns
    handle: object = field(default=None, repr=False)

    @property
    def tower(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def layer(self) -> int | None:
        parts = self.name.split(".")
        return int(parts[2]) if len(parts) > 2 and parts[1] == "blocks" else None

    def __call__(self, tensor: torch.Tensor) -> torch.Tensor:
        """Run the attached hooks in order; each sees the previous one's result."""
        for fn in self.fns:
            result = fn(tensor, hook=self)
            if result is not None:
                if not isinstance(result, torch.Tensor) or result.shape != tensor.shape:
                    raise InvalidArgument(
                        f"hook on {self.name!r} returned {type(result).__name__} "
                        f"{tuple(getattr(result, 'shape', ()))}; a hook must return None or a tensor "
                        f"of the same shape {tuple(tensor.shape)}"
                    )
                tensor = result
        return tensor

    def __repr__(self) -> str:
        return f"HookPoint({self.name!r}, {len(self.fns)} hook(s))"


class UnknownHookError(ClipvizError, KeyError):
    """A hook name that the model does not have."""

    def __init__(self, name: str, valid: Iterable[str]):
        valid = list(valid)
        close = difflib.get_close_matches(name, valid, n=5, cutoff=0.5)
        hint = f" Closest valid names: {', '.join(close)}." if close else ""
        super().__init__(
            f"unknown hook name {name!r}.{hint} model.hook_names() lists all {len(valid)} names."
        )

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return self.args[0]


def _replace_first(output, new_first):
    if isinstance(output, tuple):
        return (new_first, *output[1:])
    return new_first


def _first(output):
    return output[0] if isinstance(output, tuple) else output


def _output_hook(point: HookPoint):
    def clipviz_output_hook(module, args, output):
        return _replace_first(output, point(_first(output)))

    return clipviz_output_hook


def _input_hook(point: HookPoint):
    def clipviz_input_hook(module, args, kwargs):
        if args:
            return (point(args[0]), *args[1:]), kwargs
        key = next(iter(kwargs))  # the first keyword is the hidden states in every family
        return args, {**kwargs, key: point(kwargs[key])}

    return clipviz_input_hook


def _z_hook(point: HookPoint):
    # The output projection's input is the heads' outputs concatenated: [batch, pos, head * d_head].
    def clipviz_z_hook(module, args, kwargs):
        flat = args[0]
        z = point(flat.view(*flat.shape[:-1], point.n_heads, flat.shape[-1] // point.n_heads))
        return (z.reshape(flat.shape), *args[1:]), kwargs

    return clipviz_z_hook


def _attach(point: HookPoint, fn: Callable) -> None:
    if not point.fns:
        if point.kind == "output":
            point.handle = point.module.register_forward_hook(_output_hook(point))
        elif point.kind == "input":
            point.handle = point.module.register_forward_pre_hook(_input_hook(point), with_kwargs=True)
        elif point.kind == "z":
            point.handle = point.module.register_forward_pre_hook(_z_hook(point), with_kwargs=True)
        elif point.kind == "pattern":
            _PATTERN_POINTS[point.module] = point
    point.fns.append(fn)


def _detach(point: HookPoint, fn: Callable) -> None:
    # by identity, the last occurrence: the same fn attached twice is removed once per context
    position = max(i for i, attached_fn in enumerate(point.fns) if attached_fn is fn)
    del point.fns[position]
    if not point.fns:
        if point.handle is not None:
            point.handle.remove()
            point.handle = None
        if point.kind == "pattern":
            _PATTERN_POINTS.pop(point.module, None)


@contextlib.contextmanager
def attached(points: Iterable[tuple[HookPoint, Callable]]) -> Iterator[None]:
    """Attach ``fn`` to each ``point`` for the duration of the block, then remove exactly those.

    Contexts compose when nested and when they overlap and exit out of order: each removes its own
    functions, and a point's torch hook goes only with its last function.
    """
    added: list[tuple[HookPoint, Callable]] = []
    try:
        for point, fn in points:
            if not callable(fn):
                raise WrongType("hooks", f"the hook for {point.name!r} is not callable: {fn!r}")
            _attach(point, fn)
            added.append((point, fn))
        yield
    finally:
        for point, fn in reversed(added):
            _detach(point, fn)


def clipviz_hooks_on(model: nn.Module) -> int:
    """How many hooks added by clipviz are on ``model``'s modules (transformers' own are not counted)."""
    count = 0
    for module in model.modules():
        for hooks in (module._forward_hooks, module._forward_pre_hooks):
            count += sum(1 for fn in hooks.values() if getattr(fn, "__module__", "") == __name__)
    return count + sum(1 for module in model.modules() if module in _PATTERN_POINTS)


def clipviz_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs,
):
    """Attention with a ``hook_pattern`` point: sdpa when unobserved, the exact eager math when observed.

    Shapes: query/key/value ``[batch, head, pos, head_dim]``; returns ``[batch, pos, head, head_dim]``
    and the pattern (``None`` on the sdpa path), as transformers' attention functions do.
    """
    point = _PATTERN_POINTS.get(module)
    if point is None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(
            module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs
        )
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    scores = torch.matmul(query, key.transpose(-1, -2)) * scaling
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + attention_mask
    pattern = nn.functional.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    pattern = nn.functional.dropout(pattern, p=dropout, training=module.training)
    pattern = point(pattern)  # [batch, head, query_pos, key_pos]
    output = torch.matmul(pattern, value).transpose(1, 2).contiguous()
    return output, pattern


def register_attention_implementation() -> None:
    """Make ``"clipviz"`` a valid ``attn_implementation`` (idempotent).

    The mask interface maps it to transformers' eager mask: an additive float mask that holds the
    causal and padding structure, which both the sdpa and the eager path above accept.
    """
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    AttentionInterface.register(ATTENTION_IMPLEMENTATION, clipviz_attention)
    AttentionMaskInterface.register(ATTENTION_IMPLEMENTATION, eager_mask)
