"""Activation patching and ablation: what changes if one activation is taken from elsewhere?

Activation patching (Meng et al., "Locating and Editing Factual Associations in GPT", 2022, as
"causal tracing"; Wang et al., "Interpretability in the Wild", 2022; the TransformerLens workflow)
runs the model on a *corrupted* input while one hook point's activation — a whole layer's, one
head's, one position's — is copied from the run on the *clean* input, and reports a metric (e.g.
the logit of the right label). Where the metric recovers, that activation carries what tells the
two inputs apart. Mean-ablation replaces an activation by its mean over a reference set instead:
the component keeps its typical output but loses the information about this input.

Alignment: activations are copied position by position, so the clean and corrupted inputs of one
tower must have the same shape — images always do (same processor); texts must tokenize to the
same number of tokens (``"a red circle"`` vs ``"a blue circle"``), or clipviz says so.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..families import TOWERS
from ..model import CapturedOutput


@dataclass
class PatchResult:
    """The metric on the clean and corrupted runs, and with each patch applied.

    ``effects[name]``: a 0-d tensor (whole activation), ``[head]`` (``heads=True``), ``[pos]``
    (``positions=True``) or ``[head, pos]`` (both) of metric values.
    """

    clean: float
    corrupted: float
    effects: dict[str, torch.Tensor] = field(default_factory=dict)
    mode: str = "patch"

    def recovered(self, name: str) -> torch.Tensor:
        """(patched − corrupted) / (clean − corrupted): 1 = the patch restores the clean metric."""
        return (self.effects[name] - self.corrupted) / (self.clean - self.corrupted)

    def __repr__(self) -> str:
        return f"PatchResult(mode={self.mode!r}, clean={self.clean:.4g}, corrupted={self.corrupted:.4g}, {len(self.effects)} hook(s))"


def _tower_of(inputs) -> str:
    if isinstance(inputs, str) or (isinstance(inputs, (list, tuple)) and inputs and all(isinstance(x, str) for x in inputs)):
        return "text"
    return "vision"


def _prepare(model, tower: str, inputs):
    if tower == "text":
        return model.tokenize(inputs)
    if isinstance(inputs, torch.Tensor) and inputs.dim() == 4:
        return inputs.to(model.device, model.dtype)  # pixel_values
    return model.pixel_values(inputs)


def _encode(model, tower: str, prepared):
    return model.image_features(prepared) if tower == "vision" else model.text_features(prepared)


def _seq_shape(tower: str, prepared) -> tuple:
    return tuple(prepared["input_ids"].shape) if tower == "text" else tuple(prepared.shape)


def _resolve_hook_names(model, hooks, tower: str) -> list[str]:
    if isinstance(hooks, str) or callable(hooks):
        hooks = [hooks]
    names = []
    for item in hooks:
        if isinstance(item, str) and ".blocks.-" in item:
            t, _, layer, rest = item.split(".", 3)
            n = model.n_layers(t)
            layer = int(layer)
            if layer < -n:
                raise ValueError(f"layer {layer} is out of range for the {t} tower's {n} blocks")
            item = f"{t}.blocks.{layer + n}.{rest}"
        names += model._resolve_names(item)
    wrong = [n for n in names if n.split(".")[0] != tower]
    if wrong:
        raise ValueError(f"hook {wrong[0]!r} is not in the {tower} tower, whose inputs are being patched")
    bad = [n for n in names if n.endswith(("hook_pooled", "hook_embeds"))]
    if bad:
        raise ValueError(f"patch block-level hooks (resid, attn, mlp, embed); {bad[0]!r} has no positions to align")
    return names


def _head_dim(name: str) -> int | None:
    return 2 if name.endswith("hook_z") else 1 if name.endswith("hook_pattern") else None


def _pos_dim(name: str) -> int:
    return 2 if name.endswith("hook_pattern") else 1  # pattern: the query position


def _indices(name: str, shape, heads: bool, positions: bool):
    """(label index, tensor index) pairs for each patch of one activation."""
    head_dim = _head_dim(name) if heads else None  # per-head: hook_z and hook_pattern only
    n_heads = shape[head_dim] if head_dim is not None else None
    n_pos = shape[_pos_dim(name)] if positions else None
    for h in range(n_heads) if n_heads is not None else [None]:
        for p in range(n_pos) if n_pos is not None else [None]:
            index = [slice(None)] * len(shape)
            if h is not None:
                index[head_dim] = h
            if p is not None:
                index[_pos_dim(name)] = p
            label = tuple(i for i in (h, p) if i is not None)
            yield label, tuple(index)


def patch(model, *, clean, corrupted, hooks, metric: Callable[[CapturedOutput], float], images=None, texts=None,
          heads: bool = False, positions: bool = False, mode: str = "patch") -> PatchResult:
    """Activation patching (``mode="patch"``) or mean-ablation (``mode="mean"``) over ``hooks``.

    ``clean`` / ``corrupted``: inputs of one tower (images, or texts with the same token count).
    The other tower's inputs (``texts=`` when patching images, ``images=`` when patching texts) are
    encoded once, so ``metric(output)`` can read ``output.logits_per_image``.
    ``hooks``: names or predicates (``"vision.blocks.-1.attn.hook_z"``, ``lambda n: "resid_post" in n``).
    ``heads=True`` patches each head of ``hook_z`` / ``hook_pattern`` separately; ``positions=True``
    each position (the query position for patterns).

    - ``mode="patch"``: run ``corrupted`` with the activation copied from the ``clean`` run.
    - ``mode="mean"``: run ``clean`` with the activation replaced by its mean over ``corrupted``
      (a reference set of any size), position by position.
    """
    if mode not in ("patch", "mean"):
        raise ValueError(f"mode must be 'patch' or 'mean', not {mode!r}")
    tower = _tower_of(clean)
    if _tower_of(corrupted) != tower:
        raise ValueError("clean and corrupted must be inputs of the same tower (both images or both texts)")
    names = _resolve_hook_names(model, hooks, tower)
    clean_in, corrupted_in = _prepare(model, tower, clean), _prepare(model, tower, corrupted)
    a, b = _seq_shape(tower, clean_in), _seq_shape(tower, corrupted_in)
    if tower == "text" and a[1] != b[1]:
        raise ValueError(
            f"the clean texts tokenize to {a[1]} tokens and the corrupted to {b[1]} (padding included); "
            "patching copies activations token by token, so give texts with the same number of tokens "
            "(e.g. 'a red circle' vs 'a blue circle')"
        )
    if mode == "patch" and a[0] != b[0]:
        raise ValueError(f"clean and corrupted need the same batch size for patching ({a[0]} vs {b[0]})")

    other_tower = "text" if tower == "vision" else "vision"
    other = texts if tower == "vision" else images
    other_embeds = None
    if other is not None:
        with torch.no_grad():
            other_embeds = _encode(model, other_tower, _prepare(model, other_tower, other))

    def run(prepared, hook_pairs=()) -> float:
        with torch.no_grad(), model.hooks(hook_pairs):
            embeds = _encode(model, tower, prepared)
        out = CapturedOutput(**{"image_embeds" if tower == "vision" else "text_embeds": embeds})
        if other_embeds is not None:
            if tower == "vision":
                out.text_embeds = other_embeds
                out.logits_per_image = model.logit_scale * embeds @ other_embeds.t()
            else:
                out.image_embeds = other_embeds
                out.logits_per_image = model.logit_scale * other_embeds @ embeds.t()
        return float(metric(out))

    target_in = corrupted_in if mode == "patch" else clean_in
    stored = {}

    def keep(tensor, *, hook):
        stored[hook.name] = tensor.detach().clone()

    clean_metric = run(clean_in, [(n, keep) for n in names] if mode == "patch" else ())
    corrupted_metric = run(corrupted_in, [(n, keep) for n in names] if mode == "mean" else ())
    if mode == "mean":
        stored = {n: t.mean(0, keepdim=True) for n, t in stored.items()}

    effects = {}
    for name in names:
        source = stored[name]
        shape = source.shape
        values, labels = [], []
        for label, index in _indices(name, shape, heads, positions):

            def replace(tensor, *, hook, index=index, source=source):
                patched = tensor.clone()
                patched[index] = source.expand_as(tensor)[index].to(tensor.dtype)
                return patched

            values.append(run(target_in, [(name, replace)]))
            labels.append(label)
        dims = [len({lab[i] for lab in labels}) for i in range(len(labels[0]))]
        effects[name] = torch.tensor(values).reshape(dims)
    return PatchResult(clean=clean_metric, corrupted=corrupted_metric, effects=effects, mode=mode)


@contextlib.contextmanager
def ablated(model, heads, *, reference=None, tower: str = "vision", how: str = "mean"):
    """Inside the block, the listed heads (``[(layer, head), ...]``) are ablated in every forward.

    ``how="mean"``: each head's output (``hook_z``) is replaced, position by position, by its mean
    over ``reference`` (images or texts of that tower; the usual choice is a held-out set of the
    same kind); ``how="zero"``: by zeros. Layers may be negative.
    """
    if tower not in TOWERS:
        raise ValueError(f"tower must be one of {TOWERS}, not {tower!r}")
    if how not in ("mean", "zero"):
        raise ValueError(f"how must be 'mean' or 'zero', not {how!r}")
    n_layers = model.n_layers(tower)
    by_layer: dict[int, list[int]] = {}
    for layer, head in heads:
        if not -n_layers <= layer < n_layers:
            raise ValueError(f"layer {layer} is out of range for the {tower} tower's {n_layers} blocks")
        by_layer.setdefault(layer % n_layers, []).append(int(head))
    names = {layer: f"{tower}.blocks.{layer}.attn.hook_z" for layer in by_layer}
    means = {}
    if how == "mean":
        if reference is None:
            raise ValueError("mean-ablation needs reference= (images or texts to average the heads' outputs over)")
        prepared = _prepare(model, tower, reference)

        def keep(tensor, *, hook):
            means[hook.name] = tensor.detach().mean(0, keepdim=True)

        with torch.no_grad(), model.hooks([(n, keep) for n in names.values()]):
            _encode(model, tower, prepared)

    def make(layer):
        chosen = by_layer[layer]

        def ablate(tensor, *, hook):
            patched = tensor.clone()
            if how == "zero":
                patched[:, :, chosen] = 0
            else:
                mean = means[hook.name]
                if mean.shape[1] != tensor.shape[1]:
                    mean = mean.mean(1, keepdim=True)  # texts of another length: the mean over positions
                patched[:, :, chosen] = mean[:, :, chosen].expand(tensor.shape[0], tensor.shape[1], -1, -1)
            return patched

        return ablate

    with model.hooks([(names[layer], make(layer)) for layer in by_layer]):
        yield model
