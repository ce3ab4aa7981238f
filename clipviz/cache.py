"""ActivationCache: the activations one ``run_with_cache`` call captured.

A plain mapping of hook name to detached CPU tensor, with TransformerLens-style shorthands::

    cache["vision.blocks.3.attn.hook_pattern"]   # the full name
    cache["pattern", 3]                           # same: (short name, layer[, tower="vision"])
    cache["resid_post", 1, "text"]                # text.blocks.1.hook_resid_post
    cache["pooled", "text"]                       # text.hook_pooled
    cache.stack("resid_post", "vision")           # [layer, batch, pos, d_model]
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import torch

from .hooks import UnknownHookError

_BLOCK_SHORT_NAMES = {
    "pattern": "attn.hook_pattern",
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

    def __init__(self, activations: dict[str, torch.Tensor], *, attention_rows: str = "all"):
        self._activations = activations
        self.attention_rows = attention_rows  # "all": [b, h, q, k]; "cls": pooled-token row [b, h, k]

    def __getitem__(self, key) -> torch.Tensor:
        name = expand_name(key)
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

    def layers(self, tower: str = "vision") -> list[int]:
        """The layers of ``tower`` that have at least one cached activation."""
        found = {int(n.split(".")[2]) for n in self._activations if n.startswith(f"{tower}.blocks.")}
        return sorted(found)

    def __repr__(self) -> str:
        mb = self.nbytes / 2**20
        return f"ActivationCache({len(self)} activations, {mb:.2f} MiB, attention_rows={self.attention_rows!r})"
