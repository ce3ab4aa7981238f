"""ActivationCache: the activations one ``run_with_cache`` call captured.

A plain mapping of hook name to detached CPU tensor, with TransformerLens-style shorthands::

    cache["vision.blocks.3.attn.hook_pattern"]   # the full name
    cache["pattern", 3]                           # same: (short name, layer[, tower="vision"])
    cache["resid_post", 1, "text"]                # text.blocks.1.hook_resid_post
    cache["pooled", "text"]                       # text.hook_pooled
    cache["pattern", -1]                          # negative layers count from the end
    cache.stack("resid_post", "vision")           # [layer, batch, pos, d_model]
    cache.accumulated_resid("vision")             # logit lens: every layer's state in the joint space
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import torch

from .hooks import UnknownHookError

_BLOCK_SHORT_NAMES = {
    "pattern": "attn.hook_pattern",
    "z": "attn.hook_z",
    "attn_out": "attn.hook_out",
    "resid_pre": "hook_resid_pre",
    "resid_post": "hook_resid_post",
    "mlp_out": "hook_mlp_out",
}
_TOWER_SHORT_NAMES = {"embed": "hook_embed", "pooled": "hook_pooled", "embeds": "hook_embeds"}


def expand_name(key) -> str:
    """The full hook name for a full name or a shorthand tuple."""
    if isinstance(key, str):
        return f"vision.{_TOWER_SHORT_NAMES[key]}" if key in _TOWER_SHORT_NAMES else key
    if not isinstance(key, tuple) or not key:
        raise KeyError(f"a cache key is a hook name or a tuple like ('pattern', 3, 'vision'); got {key!r}")
    short, *rest = key
    if short in _TOWER_SHORT_NAMES:
        tower = rest[0] if rest else "vision"
        return f"{tower}.{_TOWER_SHORT_NAMES[short]}"
    if short in _BLOCK_SHORT_NAMES and rest:
        layer, tower = rest[0], rest[1] if len(rest) > 1 else "vision"
        return f"{tower}.blocks.{layer}.{_BLOCK_SHORT_NAMES[short]}"
    raise KeyError(
        f"cannot expand {key!r}: use (name, layer[, tower]) with name in {sorted(_BLOCK_SHORT_NAMES)} "
        f"or (name[, tower]) with name in {sorted(_TOWER_SHORT_NAMES)}"
    )


class ActivationCache(Mapping):
    """Detached activations keyed by hook name (see the module docstring for shorthands)."""

    def __init__(
        self,
        activations: dict[str, torch.Tensor],
        *,
        attention_rows: str = "all",
        model=None,
        pooled_positions: dict[str, torch.Tensor] | None = None,
    ):
        self._activations = activations
        self.attention_rows = attention_rows  # "all": [b, h, q, k]; "cls": pooled-token row [b, h, k]
        self.model = model  # the HookedCLIP that ran (for layer counts and the logit lens), or None
        self.pooled_positions = dict(pooled_positions or {})  # tower -> [batch] index of the pooled token

    def _n_layers(self, tower: str) -> int:
        if self.model is not None:
            return self.model.n_layers(tower)
        raise KeyError(
            "negative layer indices need the layer count: this cache was built without its model "
            "(use one from model.run_with_cache, or give the layer as a non-negative number)"
        )

    def resolve_layer(self, layer: int, tower: str = "vision") -> int:
        """``layer`` as a non-negative index (``-1`` is the last block), or a clear error."""
        layer = int(layer)
        if layer >= 0:
            return layer
        n = self._n_layers(tower)
        if layer < -n:
            raise KeyError(f"layer {layer} is out of range for the {tower} tower's {n} blocks (use -{n}..{n - 1})")
        return layer + n

    def _normalise_key(self, key):
        if isinstance(key, tuple) and len(key) >= 2 and key[0] in _BLOCK_SHORT_NAMES and isinstance(key[1], int):
            tower = key[2] if len(key) > 2 else "vision"
            return (key[0], self.resolve_layer(key[1], tower), *key[2:])
        if isinstance(key, str) and ".blocks.-" in key:
            tower, _, layer, rest = key.split(".", 3)
            return f"{tower}.blocks.{self.resolve_layer(int(layer), tower)}.{rest}"
        return key

    def __getitem__(self, key) -> torch.Tensor:
        name = expand_name(self._normalise_key(key))
        try:
            return self._activations[name]
        except KeyError:
            raise UnknownHookError(name, self._activations) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._activations)

    def __len__(self) -> int:
        return len(self._activations)

    @property
    def nbytes(self) -> int:
        """Bytes held by the cached tensors."""
        return sum(t.numel() * t.element_size() for t in self._activations.values())

    def stack(self, short_name: str, tower: str = "vision") -> torch.Tensor:
        """One block-level activation for every cached layer, stacked: ``[layer, ...]``."""
        suffix = _BLOCK_SHORT_NAMES.get(short_name, short_name)
        names = [n for n in self._activations if n.startswith(f"{tower}.blocks.") and n.endswith("." + suffix)]
        if not names:
            raise KeyError(f"no {tower} {short_name!r} activations in this cache; capture them first")
        names.sort(key=lambda n: int(n.split(".")[2]))
        return torch.stack([self._activations[n] for n in names])

    def accumulated_resid(self, tower: str = "vision", *, model=None, normalise: bool = True, return_labels: bool = False):
        """Logit lens: the residual stream after the embedding and after every block, each put
        through the tower's own head (final norm, pooled token, projection, unit norm) —
        ``[n_layers + 1, batch, D]``.

        Row 0 is ``hook_embed``, row ``L + 1`` is block ``L``'s ``hook_resid_post``; the last row is the
        model's own embedding. Comparing each row with a text embedding answers "at which layer does
        the image already match 'a red circle'?" (nostalgebraist's logit lens, 2020, read through
        CLIP's head). Needs ``hook_embed`` and every ``hook_resid_post`` of ``tower`` in the cache.
        """
        model = model or self.model
        if model is None:
            raise ValueError("accumulated_resid needs the model: pass model= (the HookedCLIP that ran)")
        names = [f"{tower}.hook_embed"] + [f"{tower}.blocks.{l}.hook_resid_post" for l in range(model.n_layers(tower))]
        missing = [n for n in names if n not in self._activations]
        if missing:
            raise KeyError(
                f"accumulated_resid needs {len(missing)} activation(s) this cache lacks, e.g. {missing[0]!r}: "
                f"capture them with run_with_cache(names_filter=lambda n: n.startswith('{tower}.') and "
                "('resid_post' in n or n.endswith('hook_embed')))"
            )
        positions = self.pooled_positions.get(tower)
        states = [
            model.project(tower, self._activations[n], positions=positions, normalise=normalise) for n in names
        ]
        stacked = torch.stack(states)
        if return_labels:
            return stacked, ["embed"] + [f"{l}_resid_post" for l in range(len(names) - 1)]
        return stacked

    def layers(self, tower: str = "vision") -> list[int]:
        """The layers of ``tower`` that have at least one cached activation."""
        found = {int(n.split(".")[2]) for n in self._activations if n.startswith(f"{tower}.blocks.")}
        return sorted(found)

    def __repr__(self) -> str:
        mb = self.nbytes / 2**20
        return f"ActivationCache({len(self)} activations, {mb:.2f} MiB, attention_rows={self.attention_rows!r})"
