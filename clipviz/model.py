"""HookedCLIP: one API over CLIP, Chinese-CLIP and AltCLIP, with hook points in both towers."""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import torch

from . import images as _images
from .cache import ActivationCache
from .families import TOWERS, family_of, text_pooling_positions, tower_modules
from .hooks import (
    ATTENTION_IMPLEMENTATION,
    HookPoint,
    UnknownHookError,
    attached,
    register_attention_implementation,
)

DEFAULT_CACHE_BUDGET = 4 * 2**30  # bytes; run_with_cache refuses larger captures before running


class CacheTooLargeError(MemoryError):
    """A capture would exceed the memory budget; the message says how to narrow it."""


@dataclass
class CapturedOutput:
    """What ``run_with_cache`` computed: unit-norm embeddings and, with both towers, the logits."""

    image_embeds: torch.Tensor | None = None  # [n_images, D]
    text_embeds: torch.Tensor | None = None  # [n_texts, D]
    logits_per_image: torch.Tensor | None = None  # [n_images, n_texts]

    @property
    def logits_per_text(self) -> torch.Tensor | None:
        return None if self.logits_per_image is None else self.logits_per_image.t()


def _normalise(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(p=2, dim=-1, keepdim=True)


def as_text_list(texts) -> list[str]:
    """A string or a sequence of strings as a non-empty list, or a clear error."""
    texts = [texts] if isinstance(texts, str) else list(texts)
    if not texts:
        raise ValueError("no texts were given: pass a string or a non-empty list of strings")
    bad = [t for t in texts if not isinstance(t, str)]
    if bad:
        raise TypeError(f"texts must be strings; got {type(bad[0]).__name__}: {bad[0]!r}")
    return texts


def _pooler(output) -> torch.Tensor:
    # transformers 5 returns BaseModelOutputWithPooling; older releases returned the tensor.
    return output if isinstance(output, torch.Tensor) else output.pooler_output


class HookedCLIP:
    """A CLIP-family model with named hook points (see ``hook_names()``) in both towers.

    Build one with :func:`clipviz.load`, or wrap a transformers model you already hold:
    ``HookedCLIP(model, processor)``.
    """

    def __init__(self, model, processor, *, name: str = ""):
        self.family = family_of(model.config)
        self.model = model.eval()
        self.processor = processor
        self.name = name or getattr(model.config, "_name_or_path", "") or self.family
        self.max_cache_bytes = DEFAULT_CACHE_BUDGET
        if model.config._attn_implementation != ATTENTION_IMPLEMENTATION:
            register_attention_implementation()
            model.set_attn_implementation(ATTENTION_IMPLEMENTATION)
        self._towers = {tower: tower_modules(model, self.family, tower) for tower in TOWERS}
        self._points = self._make_points()

    def _make_points(self) -> dict[str, HookPoint]:
        points = {}
        for tower, modules in self._towers.items():
            names = [(f"{tower}.hook_embed", "output", modules.embed)]
            for layer, block in enumerate(modules.blocks):
                prefix = f"{tower}.blocks.{layer}"
                names += [
                    (f"{prefix}.hook_resid_pre", "input", block.block),  # [batch, pos, d_model]
                    (f"{prefix}.attn.hook_pattern", "pattern", block.attention),  # [batch, head, query, key]
                    (f"{prefix}.attn.hook_z", "z", block.o),  # [batch, pos, head, d_head]
                    (f"{prefix}.attn.hook_out", "output", block.attention_out),  # [batch, pos, d_model]
                    (f"{prefix}.hook_mlp_out", "output", block.mlp_out),  # [batch, pos, d_model]
                    (f"{prefix}.hook_resid_post", "output", block.block),  # [batch, pos, d_model]
                ]
            names += [
                (f"{tower}.hook_pooled", "input", modules.projection),  # [batch, d_pooled]
                (f"{tower}.hook_embeds", "manual", None),  # [batch, d_joint], unit norm
            ]
            points.update({name: HookPoint(name, kind, module) for name, kind, module in names})
            for layer, block in enumerate(modules.blocks):
                points[f"{tower}.blocks.{layer}.attn.hook_z"].n_heads = block.n_heads
        return points

    # ----------------------------------------------------------------- facts about the model
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def _tower_config(self, tower: str):
        if tower not in TOWERS:
            raise ValueError(f"tower must be one of {TOWERS}, not {tower!r}")
        return self.model.config.vision_config if tower == "vision" else self.model.config.text_config

    def modules(self, tower: str = "vision"):
        """The family adapter's :class:`~clipviz.families.TowerModules` for ``tower``: blocks, norms,
        q/k/v/out projections and the tower's head. Analyses ask this instead of naming transformers
        internals."""
        self._tower_config(tower)
        return self._towers[tower]

    def n_layers(self, tower: str = "vision") -> int:
        self._tower_config(tower)
        return len(self._towers[tower].blocks)

    def n_heads(self, tower: str = "vision") -> int:
        return self._tower_config(tower).num_attention_heads

    @property
    def patch_size(self) -> int:
        return self.model.config.vision_config.patch_size

    @property
    def image_size(self) -> int:
        """Side of the square crop the image processor produces (pixels)."""
        ip = self.processor.image_processor
        return ip.crop_size["height"] if ip.do_center_crop else ip.size.get("height", ip.size.get("shortest_edge"))

    @property
    def grid_size(self) -> tuple[int, int]:
        side = self.image_size // self.patch_size
        return side, side

    @property
    def logit_scale(self) -> float:
        return float(self.model.logit_scale.detach().exp())

    @property
    def context_length(self) -> int:
        """The longest text (in tokens, specials included) the text tower takes."""
        positions = self.model.config.text_config.max_position_embeddings
        if self.family == "altclip":
            positions -= 2  # XLM-R position ids start after the padding index
        tokenizer_max = getattr(self.processor.tokenizer, "model_max_length", positions)
        return min(positions, tokenizer_max) if tokenizer_max else positions

    def hook_names(self, tower: str | None = None) -> list[str]:
        """Every hook point name, in forward order; only one tower's with ``tower=``."""
        if tower is not None:
            self._tower_config(tower)
        return [n for n in self._points if tower is None or n.startswith(tower + ".")]

    def __repr__(self) -> str:
        v, t = self.n_layers("vision"), self.n_layers("text")
        return f"HookedCLIP({self.name!r}, family={self.family!r}, vision={v} layers, text={t} layers)"

    # ----------------------------------------------------------------- inputs
    def pixel_values(self, images) -> torch.Tensor:
        """The processor's ``pixel_values`` ``[N, 3, S, S]`` for images, paths or arrays."""
        loaded = _images.load_images(images)
        pixels = self.processor.image_processor(images=loaded, return_tensors="pt")["pixel_values"]
        return pixels.to(device=self.device, dtype=self.dtype)

    def tokenize(self, texts) -> dict[str, torch.Tensor]:
        """Tokenised, padded texts on the model's device; texts over the context are cut, with a warning."""
        texts = as_text_list(texts)
        tokenizer = self.processor.tokenizer
        limit = self.context_length
        lengths = [len(ids) for ids in tokenizer(texts, truncation=False, verbose=False)["input_ids"]]
        too_long = [(t, n) for t, n in zip(texts, lengths) if n > limit]
        if too_long:
            text, n = too_long[0]
            warnings.warn(
                f"{len(too_long)} text(s) are longer than the model's context of {limit} tokens and were "
                f"truncated (e.g. {text[:40]!r}... has {n} tokens)",
                stacklevel=2,
            )
        tokens = tokenizer(texts, padding=True, truncation=True, max_length=limit, return_tensors="pt")
        return {k: v.to(self.device) for k, v in tokens.items()}

    # ----------------------------------------------------------------- encoding
    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Unit-norm image embeddings ``[N, D]``; differentiable (use under ``torch.no_grad`` if you like)."""
        projected = _pooler(self.model.get_image_features(pixel_values=pixel_values))
        return self._points["vision.hook_embeds"](_normalise(projected))

    def text_features(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        """Unit-norm text embeddings ``[M, D]`` from ``tokenize`` output; differentiable."""
        projected = _pooler(self.model.get_text_features(**tokens))
        return self._points["text.hook_embeds"](_normalise(projected))

    @torch.no_grad()
    def image_embeds(self, images, batch_size: int = 32) -> torch.Tensor:
        """Unit-norm image embeddings ``[N, D]`` (on the CPU), encoded ``batch_size`` at a time."""
        sources = _images.as_list(images)
        if not sources:
            raise ValueError("no images were given: pass an image, a path, an array or a list of them")
        chunks = [
            self.image_features(self.pixel_values(sources[i : i + batch_size])).cpu()
            for i in range(0, len(sources), batch_size)
        ]
        return torch.cat(chunks)

    @torch.no_grad()
    def text_embeds(self, texts, batch_size: int = 256) -> torch.Tensor:
        """Unit-norm text embeddings ``[M, D]`` (on the CPU)."""
        texts = as_text_list(texts)
        chunks = [
            self.text_features(self.tokenize(texts[i : i + batch_size])).cpu()
            for i in range(0, len(texts), batch_size)
        ]
        return torch.cat(chunks)

    @torch.no_grad()
    def logits(self, images, texts) -> torch.Tensor:
        """``[n_images, n_texts]`` scaled cosine similarities, as the model's ``logits_per_image``."""
        return self.logit_scale * self.image_embeds(images) @ self.text_embeds(texts).t()

    def classify(self, images, labels, templates=None, lang=None, **options):
        """Zero-shot classification; see :func:`clipviz.zeroshot.classify`."""
        from .zeroshot import classify

        return classify(self, images, labels, templates=templates, lang=lang, **options)

    def pooled_positions(self, tower: str, tokens: dict[str, torch.Tensor] | None = None, batch: int = 1) -> torch.Tensor:
        """``[batch]`` index of the token the tower pools from (CLS for vision; EOS or [CLS]/<s> for text)."""
        if self.modules(tower).pooling == "first":
            n = batch if tokens is None else tokens["input_ids"].shape[0]
            return torch.zeros(n, dtype=torch.long)
        if tokens is None:
            raise ValueError("the CLIP text tower pools at each text's EOS token: pass the tokens (model.tokenize(texts))")
        eos = getattr(self.model.config.text_config, "eos_token_id", None)
        return text_pooling_positions(self.family, tokens["input_ids"], eos).cpu()

    def project(self, tower: str, resid: torch.Tensor, *, positions=None, normalise: bool = True) -> torch.Tensor:
        """Logit lens: map a residual-stream state into the joint space the way the tower's own head does.

        ``resid``: ``[batch, pos, d_model]`` (any ``hook_resid_*`` / ``hook_embed``; pooled at the
        tower's token — for the CLIP text tower pass ``positions=``, the EOS indices, e.g.
        ``cache.pooled_positions["text"]``) or ``[..., d_model]`` already at the pooled token. Then the
        tower's final norm, AltCLIP's ``transformation``, the projection and, with ``normalise``
        (default), unit norm — so the last ``hook_resid_post`` gives back ``image_embeds`` / ``text_embeds``.
        Intermediate states were never trained to be read this way (the "tricky" part of a CLIP logit
        lens): read trends across layers, not single values.
        """
        modules = self.modules(tower)
        resid = torch.as_tensor(resid)
        d_model = self._tower_config(tower).hidden_size
        if resid.shape[-1] != d_model:
            raise ValueError(f"a {tower} residual state ends in d_model={d_model}; got shape {tuple(resid.shape)}")
        if resid.dim() == 3:
            if positions is None:
                if modules.pooling != "first":
                    raise ValueError(
                        "the CLIP text tower pools at each text's EOS token: pass positions= "
                        "(cache.pooled_positions['text'] or model.pooled_positions('text', tokens))"
                    )
                positions = torch.zeros(resid.shape[0], dtype=torch.long)
            positions = torch.as_tensor(positions, dtype=torch.long, device=resid.device)
            resid = resid[torch.arange(resid.shape[0], device=resid.device), positions]
        with torch.no_grad():
            projected = modules.head(resid.to(device=self.device, dtype=self.dtype))
        return _normalise(projected) if normalise else projected

    # ----------------------------------------------------------------- hooks
    def _resolve_names(self, name_or_filter) -> list[str]:
        if callable(name_or_filter):
            return [n for n in self._points if name_or_filter(n)]
        if name_or_filter not in self._points:
            raise UnknownHookError(str(name_or_filter), self._points)
        return [name_or_filter]

    @contextlib.contextmanager
    def hooks(self, hooks: Iterable[tuple[str | Callable[[str], bool], Callable]]):
        """Attach ``fn(tensor, *, hook) -> tensor | None`` to named points inside a ``with`` block.

        A name may also be a predicate over names (``lambda n: n.endswith("hook_pattern")``).
        Every hook is removed when the block ends, however it ends.
        """
        pairs = [(self._points[n], fn) for name, fn in hooks for n in self._resolve_names(name)]
        with attached(pairs):
            yield self

    def _select_names(self, names_filter, towers: Sequence[str], layers) -> list[str]:
        if names_filter is None:
            names = [n for n in self._points if n.split(".")[0] in towers]
        elif callable(names_filter):  # a predicate picks among the towers that run
            names = [n for n in self._resolve_names(names_filter) if n.split(".")[0] in towers]
        elif isinstance(names_filter, str):
            names = self._resolve_names(names_filter)
        else:
            names = [n for item in names_filter for n in self._resolve_names(item)]
        if layers is not None:
            wanted = {layers} if isinstance(layers, int) else set(layers)
            names = [n for n in names if self._points[n].layer is None or self._points[n].layer in wanted]
        missing = sorted({n.split(".")[0] for n in names} - set(towers))
        if missing:
            needs = "images= (or pixel_values=)" if "vision" in missing else "texts="
            raise ValueError(f"hooks in the {missing[0]} tower were asked for, but no input for it: pass {needs}")
        return names

    def _estimate_bytes(self, names, shapes, heads, attention_rows, itemsize) -> int:
        total = 0
        for name in names:
            point = self._points[name]
            batch, seq = shapes[point.tower]
            config = self._tower_config(point.tower)
            n_heads = config.num_attention_heads if heads is None else len(heads)
            if point.kind == "pattern":
                total += batch * n_heads * seq * (1 if attention_rows == "cls" else seq)
            elif name.endswith("hook_pooled"):
                total += batch * self._towers[point.tower].projection.in_features
            elif name.endswith("hook_embeds"):
                total += batch * self.model.config.projection_dim
            else:
                total += batch * seq * config.hidden_size
        return total * itemsize

    def run_with_cache(
        self,
        images=None,
        texts=None,
        names_filter=None,
        *,
        pixel_values: torch.Tensor | None = None,
        towers: Sequence[str] | None = None,
        layers: int | Iterable[int] | None = None,
        heads: int | Iterable[int] | None = None,
        attention_rows: str = "all",
        cache_dtype: torch.dtype | None = None,
        max_bytes: int | None = None,
    ) -> tuple[CapturedOutput, ActivationCache]:
        """Run the model once and capture activations.

        ``names_filter``: a hook name, a list of names, or a predicate over names (default: all).
        Memory controls: ``towers`` / ``layers`` / ``heads`` narrow what is kept;
        ``attention_rows="cls"`` keeps only the pooled token's attention row (``[batch, head, key]``:
        CLS for vision, the pooled EOS/CLS token for text); ``cache_dtype=torch.float16`` halves storage.
        A capture estimated over ``max_bytes`` (default ``self.max_cache_bytes``) is refused before running.
        """
        if attention_rows not in ("all", "cls"):
            raise ValueError(f"attention_rows must be 'all' or 'cls', not {attention_rows!r}")
        if images is not None and pixel_values is not None:
            raise ValueError("pass images= or pixel_values=, not both")
        pixels = self.pixel_values(images) if images is not None else pixel_values
        tokens = self.tokenize(texts) if texts is not None else None
        given = [t for t, x in (("vision", pixels), ("text", tokens)) if x is not None]
        if not given:
            raise ValueError("nothing to run: pass images= (or pixel_values=) and/or texts=")
        towers = given if towers is None else [towers] if isinstance(towers, str) else list(towers)
        for tower in towers:
            self._tower_config(tower)  # validates the name
        heads = [heads] if isinstance(heads, int) else (None if heads is None else list(heads))
        names = self._select_names(names_filter, towers, layers)

        shapes = {}
        if pixels is not None:
            shapes["vision"] = (pixels.shape[0], self.grid_size[0] * self.grid_size[1] + 1)
        if tokens is not None:
            shapes["text"] = tuple(tokens["input_ids"].shape)
        itemsize = torch.empty((), dtype=cache_dtype or self.dtype).element_size()
        needed = self._estimate_bytes(names, shapes, heads, attention_rows, itemsize)
        budget = self.max_cache_bytes if max_bytes is None else max_bytes
        if needed > budget:
            raise CacheTooLargeError(
                f"this capture would hold {needed / 2**30:.2f} GiB of activations, over the budget of "
                f"{budget / 2**30:.2f} GiB. Narrow it: names_filter=/towers=/layers=/heads=, "
                "attention_rows='cls' (one attention row per head), cache_dtype=torch.float16, fewer "
                "images or texts at a time; or raise max_bytes= (model.max_cache_bytes for all calls)."
            )

        pooled_rows = None
        if tokens is not None and attention_rows == "cls":
            eos = getattr(self.model.config.text_config, "eos_token_id", None)
            pooled_rows = text_pooling_positions(self.family, tokens["input_ids"], eos)
        store: dict[str, torch.Tensor] = {}

        def capture(tensor, *, hook):
            if hook.kind == "pattern":
                if heads is not None:
                    tensor = tensor[:, heads]
                if attention_rows == "cls":
                    if hook.tower == "vision":
                        tensor = tensor[:, :, 0, :]
                    else:
                        tensor = tensor[torch.arange(tensor.shape[0]), :, pooled_rows.to(tensor.device), :]
            store[hook.name] = tensor.detach().to("cpu", dtype=cache_dtype or tensor.dtype).clone()

        output = CapturedOutput()
        with torch.no_grad(), self.hooks([(name, capture) for name in names]):
            if pixels is not None:
                output.image_embeds = self.image_features(pixels)
            if tokens is not None:
                output.text_embeds = self.text_features(tokens)
        if pixels is not None and tokens is not None:
            output.logits_per_image = self.logit_scale * output.image_embeds @ output.text_embeds.t()
        ordered = {name: store[name] for name in names if name in store}
        pooled = {}
        if pixels is not None:
            pooled["vision"] = self.pooled_positions("vision", batch=pixels.shape[0])
        if tokens is not None:
            pooled["text"] = self.pooled_positions("text", tokens)
        cache = ActivationCache(ordered, attention_rows=attention_rows, model=self, pooled_positions=pooled)
        return output, cache


def load(name_or_path=None, *, device=None, dtype=None) -> HookedCLIP:
    """Load a CLIP-family model as a :class:`HookedCLIP`.

    ``name_or_path``: a bundled model (``"shapes-clip"``, the default; ``"shapes-chinese-clip"``,
    ``"shapes-altclip"``), a Hub id (``"openai/clip-vit-base-patch32"``,
    ``"OFA-Sys/chinese-clip-vit-base-patch16"``, ``"BAAI/AltCLIP"``, ...) or a local directory written
    by ``save_pretrained`` (model and processor). ``device`` defaults to CUDA when available.
    """
    from .loading import read_checkpoint, resolve

    path = resolve(name_or_path)
    model, processor, _ = read_checkpoint(path, dtype=dtype)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    name = str(name_or_path) if name_or_path is not None else path.name
    return HookedCLIP(model.to(device), processor, name=name)
