"""HookedCLIP: one API over CLIP, Chinese-CLIP and AltCLIP, with hook points in both towers."""

from __future__ import annotations

import contextlib
import inspect
import numbers
import warnings
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch

from . import images as _images
from .cache import ActivationCache
from .errors import DeviceUnavailable, InvalidArgument, WrongType
from .families import TOWERS, text_pooling_positions, tower_modules
from .hooks import (
    ATTENTION_IMPLEMENTATION,
    HookPoint,
    UnknownHookError,
    attached,
    register_attention_implementation,
)
from .towers import (
    MissingTowerError,
    layout_of,
    missing_tower_message,
    text_vector,
    vector_sizes,
    vision_vector,
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


def check_encodable(text: str, what: str) -> None:
    """Refuse a string the tokenizers cannot encode (a lone surrogate, e.g. half of an emoji)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        bad = text[error.start : error.end]
        raise InvalidArgument(
            what,
            f"{text[:40]!r} holds {bad!r} at character {error.start}, a lone UTF-16 surrogate that is not "
            "a character (often half of an emoji cut in two): remove it (text.encode('utf-8', 'replace').decode() "
            "turns it into '?')",
        ) from None


def as_text_list(texts, what: str = "texts") -> list[str]:
    """A string or a sequence of strings as a non-empty list, or a clear error naming ``what``."""
    if isinstance(texts, (bytes, bytearray, memoryview)):
        raise WrongType(what, "got bytes; pass text (str): decode it first, e.g. data.decode('utf-8')")
    if isinstance(texts, str):
        texts = [texts]
    elif texts is None or not isinstance(texts, Iterable) or isinstance(texts, dict):
        raise WrongType(what, f"got {type(texts).__name__}; pass a string or a list of strings")
    else:
        texts = list(texts)
    if not texts:
        raise InvalidArgument(what, "no texts were given: pass a string or a non-empty list of strings")
    for position, text in enumerate(texts):
        if not isinstance(text, str):
            raise WrongType(what, f"item {position} is {type(text).__name__} ({text!r:.60}); texts must be strings (str)")
        check_encodable(text, f"{what}[{position}]")
    return texts


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _index_list(value, what: str) -> list[int]:
    """An int or an iterable of ints as a non-empty list; strings, floats and bools refused."""
    if _is_int(value):
        return [int(value)]
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise WrongType(what, f"got {type(value).__name__} {value!r}; pass an int or a list of ints, e.g. {what}=[0, -1]")
    items = list(value)
    if not items:
        raise InvalidArgument(what, "[] selects nothing: pass at least one index, or None for all")
    for item in items:
        if not _is_int(item):
            raise WrongType(what, f"holds {type(item).__name__} {item!r}; pass ints, e.g. {what}=[0, -1]")
    return [int(item) for item in items]


def _resolve_indices(indices: list[int], size: int, what: str, owner: str) -> list[int]:
    """Indices counted from the end when negative, checked against ``size``; ``owner`` says what has ``size``."""
    bad = [i for i in indices if not -size <= i < size]
    if bad:
        raise InvalidArgument(
            what, f"{bad[0]} is out of range: {owner}, so pass 0..{size - 1} (or -{size}..-1 from the end)"
        )
    return sorted({i % size for i in indices}, key=[i % size for i in indices].index)


_FLOAT_DTYPES = {"float16": torch.float16, "half": torch.float16, "bfloat16": torch.bfloat16,
                 "float32": torch.float32, "float": torch.float32, "float64": torch.float64, "double": torch.float64}


def _cache_dtype(value) -> torch.dtype | None:
    if value is None:
        return None
    if isinstance(value, str):
        name = value.removeprefix("torch.")
        if name in _FLOAT_DTYPES:
            return _FLOAT_DTYPES[name]
        raise InvalidArgument("cache_dtype", f"{value!r} is not a float dtype: pass torch.float16, torch.bfloat16, "
                                             "torch.float32 (or their names as strings)")
    if not isinstance(value, torch.dtype):
        raise WrongType("cache_dtype", f"got {type(value).__name__}; pass a torch float dtype such as torch.float16")
    if not value.is_floating_point:
        raise InvalidArgument("cache_dtype", f"{value} would turn attention probabilities into 0s and 1s: pass a float "
                                             "dtype (torch.float16 halves storage)")
    return value


def _max_bytes(value) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise WrongType("max_bytes", f"got {type(value).__name__} {value!r}; pass a number of bytes, e.g. "
                                     "max_bytes=2**30 for 1 GiB")
    if not value > 0:
        raise InvalidArgument("max_bytes", f"{value!r} must be a positive number of bytes, e.g. 2**30 for 1 GiB")
    return value


def _check_batch_size(batch_size, what: str = "batch_size") -> None:
    if not _is_int(batch_size):
        raise WrongType(what, f"got {type(batch_size).__name__} {batch_size!r}; pass a whole number such as 32")
    if batch_size < 1:
        raise InvalidArgument(what, f"{batch_size} must be at least 1")


def check_device(device) -> torch.device:
    """``device`` as a ``torch.device`` this machine has, or a clear error."""
    if isinstance(device, torch.device):
        parsed = device
    elif isinstance(device, (str, int)) and not isinstance(device, bool):
        try:
            parsed = torch.device(device)
        except (RuntimeError, ValueError) as error:
            raise InvalidArgument("device", f"{device!r} is not a device name: pass 'cpu', 'cuda', 'cuda:1' or 'mps'") from error
    else:
        raise WrongType("device", f"got {type(device).__name__}; pass 'cpu', 'cuda', 'cuda:0' or a torch.device")
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceUnavailable("device", f"{device!r} asks for CUDA, but this PyTorch sees no CUDA GPU "
                                              "(torch.cuda.is_available() is False): pass device='cpu'")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise DeviceUnavailable("device", f"{device!r}: this machine has {torch.cuda.device_count()} CUDA "
                                              f"device(s), 0..{torch.cuda.device_count() - 1}")
    elif parsed.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise DeviceUnavailable("device", f"{device!r}: Apple's MPS is not available here: pass device='cpu'")
    return parsed


def _pooler(output) -> torch.Tensor:
    # transformers 5 returns BaseModelOutputWithPooling; older releases returned the tensor.
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def _check_hook_signature(fn, name) -> None:
    """A hook is called as ``fn(tensor, hook=point)``: refuse functions that cannot take that, before any run."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # builtins and some C callables have none: trust them
        return
    try:
        signature.bind(object(), hook=object())
    except TypeError:
        raise WrongType(
            "hooks", f"the hook for {name!r} has the signature {getattr(fn, '__name__', 'fn')}{signature}, but hooks "
            "are called as fn(tensor, *, hook) -> tensor | None: add the keyword, e.g. "
            "def fn(tensor, *, hook): ... or lambda tensor, **_: ...",
        ) from None


class HookedCLIP:
    """A CLIP-family model with named hook points (see ``hook_names()``) in both towers.

    Build one with :func:`clipviz.load`, or wrap a transformers model you already hold:
    ``HookedCLIP(model, processor)``.
    """

    def __init__(self, model, processor, *, name: str = ""):
        self.layout = layout_of(model)  # which towers (and head) the class has; see clipviz.towers
        self.family = self.layout.family
        self.model = model.eval()
        self.processor = processor
        self.name = name or getattr(model.config, "_name_or_path", "") or self.family
        self.max_cache_bytes = DEFAULT_CACHE_BUDGET
        if model.config._attn_implementation != ATTENTION_IMPLEMENTATION:
            register_attention_implementation()
            model.set_attn_implementation(ATTENTION_IMPLEMENTATION)
        self._towers = {tower: tower_modules(self.layout.parts, self.family, tower) for tower in self.layout.towers}
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
            raise InvalidArgument("tower", f"must be 'vision' or 'text', not {tower!r}")
        return self.layout.config(tower)  # MissingTowerError naming the tower a single-tower model lacks

    def tower_config(self, tower: str):
        """The transformers config of ``tower`` (``"vision"`` or ``"text"``)."""
        return self.layout.config(tower)

    @property
    def towers(self) -> tuple[str, ...]:
        """The towers this model has: both for a dual encoder, one for a single tower or a classifier."""
        return self.layout.towers

    def require(self, tower: str, needed_for: str = "") -> None:
        """Raise :class:`MissingTowerError` (naming ``tower``) unless the model has ``tower``."""
        if tower not in self.layout.towers:
            raise MissingTowerError(missing_tower_message(self.layout, tower, needed_for))

    @property
    def is_classifier(self) -> bool:
        """True for an image classifier (``CLIPForImageClassification``): ``labels`` and a class head."""
        return self.layout.kind == "classifier"

    @property
    def labels(self) -> list[str]:
        """The image classifier's class labels (``config.id2label``), in head order."""
        if self.layout.labels is None:
            raise MissingTowerError(
                f"this model is a {self.layout.model_class}, not an image classifier: it has no class labels; "
                "zero-shot classification takes labels: model.classify(images, ['a cat', 'a dog'])"
            )
        return list(self.layout.labels)

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
        return self._tower_config("vision").patch_size

    @property
    def image_size(self) -> int:
        """Side of the square crop the image processor produces (pixels)."""
        self.require("vision", "images")
        ip = self.processor.image_processor
        return ip.crop_size["height"] if ip.do_center_crop else ip.size.get("height", ip.size.get("shortest_edge"))

    @property
    def grid_size(self) -> tuple[int, int]:
        side = self.image_size // self.patch_size
        return side, side

    @property
    def logit_scale(self) -> float:
        if self.layout.kind != "dual":
            self.require("text" if "vision" in self.layout.towers else "vision", "image-text logits")
        return float(self.model.logit_scale.detach().exp())

    @property
    def context_length(self) -> int:
        """The longest text (in tokens, specials included) the text tower takes."""
        positions = self._tower_config("text").max_position_embeddings
        if self.family == "altclip":
            positions -= 2  # XLM-R position ids start after the padding index
        tokenizer_max = getattr(self.processor.tokenizer, "model_max_length", positions)
        return min(positions, tokenizer_max) if tokenizer_max else positions

    def hook_names(self, tower: str | None = None) -> list[str]:
        """Every hook point name, in forward order; only one tower's with ``tower=``."""
        if tower is not None:
            self._tower_config(tower)
        return [n for n in self._points if tower is None or n.startswith(tower + ".")]

    def hooks_in_use(self, tower: str | None = None) -> list[str]:
        """Names of the hook points that have clipviz hooks attached right now (one tower's with ``tower=``)."""
        return [name for name in self.hook_names(tower) if self._points[name].fns]

    def _tower_parameters(self, tower: str | None) -> list[torch.Tensor]:
        """The parameters that decide ``tower``'s embeddings; every parameter with ``tower=None``."""
        if tower is None or self.layout.kind != "dual":  # a single tower (or classifier) is all one tower
            return list(self.model.parameters())
        modules = self._towers[tower]
        # the tower's root is the top-level child holding its embeddings (vision_model / text_model)
        roots = [child for child in self.model.children() if any(m is modules.embed for m in child.modules())]
        params = {id(p): p for root in roots + [modules.projection] for p in root.parameters()}
        return list(params.values())

    def weights_version(self, tower: str | None = None) -> str:
        """A fingerprint of the weights' current values: changes on every change of any weight.

        It reads every value, so edits that PyTorch's version counters miss (``p.data[...] = x``,
        ``p.data.copy_(...)``, swapping ``p.data``) change it too. ``tower="text"`` or ``"vision"``
        covers only the parameters that decide that tower's embeddings (the logit scale is in
        neither). Cost: one pass over the weights — a CRC-32 of each tensor's bytes on the CPU
        (0.15 s for ViT-B/32's text tower on 2 shared cores, 4% of a warm-cache ``classify``; 1.4 ms
        for shapes-clip; see BENCHMARKS.md), a sum of the bit patterns on other devices. Caches of derived values (the zero-shot label cache,
        ``clipviz.embed``'s cache) key on it.
        """
        if tower is not None:
            self._tower_config(tower)
        digest = 0
        with torch.no_grad():
            for param in self._tower_parameters(tower):
                flat = param.detach().reshape(-1)
                if not flat.is_contiguous():
                    flat = flat.contiguous()
                raw = flat.view(torch.uint8)
                if raw.device.type == "cpu":
                    part = zlib.crc32(raw.numpy())
                else:  # stay on the device: the exact integer sum of the bit patterns, and a position-weighted one
                    words = flat.view({1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[flat.element_size()])
                    part = hash((int(words.sum(dtype=torch.int64)), int(words[::7].sum(dtype=torch.int64))))
                digest = zlib.crc32(f"{tuple(param.shape)}{param.dtype}{part}".encode(), digest)
        return f"{digest:08x}"

    def __repr__(self) -> str:
        if self.layout.kind != "dual":
            tower = self.layout.towers[0]
            return (
                f"HookedCLIP({self.name!r}, family={self.family!r}, {tower}={self.n_layers(tower)} layers; "
                f"{self.layout.describe()})"
            )
        v, t = self.n_layers("vision"), self.n_layers("text")
        return f"HookedCLIP({self.name!r}, family={self.family!r}, vision={v} layers, text={t} layers)"

    # ----------------------------------------------------------------- inputs
    def pixel_values(self, images, resolution=None) -> torch.Tensor:
        """The processor's ``pixel_values`` ``[N, 3, S, S]`` for images, paths or arrays.

        ``resolution``: ``None`` for the processor's own resize and centre crop; an int (the short side
        in pixels) or ``(width, height)`` for the whole image, uncropped, at that size (see
        :func:`clipviz.images.whole_image_size`; all images must then share one aspect ratio).
        """
        self.require("vision", "images")
        loaded = _images.load_images(images)
        if resolution is not None:
            return _images.whole_image_pixels(self.processor, loaded, resolution, self.patch_size).to(
                device=self.device, dtype=self.dtype
            )
        pixels = self.processor.image_processor(images=loaded, return_tensors="pt")["pixel_values"]
        return pixels.to(device=self.device, dtype=self.dtype)

    def grid_of(self, pixel_values: torch.Tensor) -> tuple[int, int]:
        """The patch grid ``(rows, columns)`` the vision tower sees for ``pixel_values`` of any size."""
        height, width = pixel_values.shape[-2:]
        return height // self.patch_size, width // self.patch_size

    def tokenize(self, texts) -> dict[str, torch.Tensor]:
        """Tokenised, padded texts on the model's device; texts over the context are cut, with a warning."""
        self.require("text", "texts")
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

    def check_pixel_values(self, pixel_values) -> torch.Tensor:
        """``pixel_values`` as given to ``run_with_cache(pixel_values=)``: a float ``[N, 3, S, S]`` tensor.

        Other sizes whose sides are multiples of the patch size run too (the whole-image mode, see
        :meth:`pixel_values`'s ``resolution``), with interpolated position embeddings."""
        side = self.image_size
        if not isinstance(pixel_values, torch.Tensor):
            raise WrongType("pixel_values", f"got {type(pixel_values).__name__}; pass a torch.Tensor [N, 3, {side}, {side}] "
                                            "as model.pixel_values(images) makes, or images= instead")
        if pixel_values.ndim == 3:
            pixel_values = pixel_values.unsqueeze(0)
        patch = self.patch_size
        tiles = pixel_values.ndim == 4 and all(n >= patch and n % patch == 0 for n in pixel_values.shape[2:])
        if pixel_values.ndim != 4 or pixel_values.shape[1] != 3 or not tiles or pixel_values.shape[0] == 0:
            raise InvalidArgument(
                "pixel_values", f"has shape {tuple(pixel_values.shape)}; this model takes [N, 3, {side}, {side}] "
                f"(N >= 1; or other sides that are multiples of the patch size {patch}): make it with "
                "model.pixel_values(images), or pass images= and let clipviz resize and crop")
        if not pixel_values.is_floating_point():
            raise InvalidArgument("pixel_values", f"has dtype {pixel_values.dtype}; pass the processor's normalised "
                                                  "floats (model.pixel_values(images))")
        return pixel_values.to(device=self.device, dtype=self.dtype)

    # ----------------------------------------------------------------- encoding
    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """**Unit-norm** image embeddings ``[N, D]``; differentiable (use under ``torch.no_grad`` if you like).

        Not the same numbers as transformers' ``get_image_features``: that returns the raw projection
        (its ``.pooler_output``), this divides it by its norm, as the model does before its logits.
        Multiply by ``logit_scale`` and take dot products to get ``logits_per_image``.
        Pixels of any size work: when they differ from the training crop the vision tower runs with
        ``interpolate_pos_encoding=True`` (position embeddings resized bicubically to the patch grid).
        """
        return self._vision_forward(pixel_values)[0]

    def _vision_forward(self, pixel_values: torch.Tensor):
        """(unit-norm embeddings, pooled state the projection or class head reads)."""
        self.require("vision", "images")
        side, patch = self._tower_config("vision").image_size, self.patch_size
        height, width = pixel_values.shape[-2:]
        if height < patch or width < patch or height % patch or width % patch:
            raise InvalidArgument(
                "pixel_values", f"of {height}x{width} pixels do not tile into {patch}-pixel patches: give sides that "
                f"are multiples of {patch} (the training crop is {side}x{side}), or pass images with resolution="
            )
        interpolate = (height, width) != (side, side)
        projected, pooled = vision_vector(self.layout, pixel_values, interpolate_pos_encoding=interpolate)
        return self._points["vision.hook_embeds"](_normalise(projected)), pooled

    def class_logits(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """An image classifier's logits ``[N, n_classes]`` from its head, with every vision hook firing."""
        labels = self.labels  # a clear error for a model without a head
        del labels
        _, pooled = self._vision_forward(pixel_values)
        return self.layout.head(pooled)

    def text_features(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        """**Unit-norm** text embeddings ``[M, D]`` from ``tokenize`` output; differentiable.

        Unlike transformers' ``get_text_features`` (the raw projection), divided by its norm.
        """
        self.require("text", "texts")
        if self.layout.kind == "dual":
            projected = _pooler(self.model.get_text_features(**tokens))
        else:
            projected = text_vector(self.layout, tokens)
        return self._points["text.hook_embeds"](_normalise(projected))

    @torch.no_grad()
    def image_embeds(self, images, batch_size: int = 32) -> torch.Tensor:
        """Unit-norm image embeddings ``[N, D]`` (on the CPU), encoded ``batch_size`` at a time."""
        self.require("vision", "image_embeds")
        _check_batch_size(batch_size)
        sources = _images.as_list(images)
        if not sources:
            raise InvalidArgument("images", "no images were given: pass an image, a path, an array or a list of them")
        chunks = [
            self.image_features(self.pixel_values(sources[i : i + batch_size])).cpu()
            for i in range(0, len(sources), batch_size)
        ]
        return torch.cat(chunks)

    @torch.no_grad()
    def text_embeds(self, texts, batch_size: int = 256) -> torch.Tensor:
        """Unit-norm text embeddings ``[M, D]`` (on the CPU)."""
        self.require("text", "text_embeds")
        _check_batch_size(batch_size)
        texts = as_text_list(texts)
        chunks = [
            self.text_features(self.tokenize(texts[i : i + batch_size])).cpu()
            for i in range(0, len(texts), batch_size)
        ]
        return torch.cat(chunks)

    @torch.no_grad()
    def logits(self, images, texts) -> torch.Tensor:
        """``[n_images, n_texts]`` scaled cosine similarities, as the model's ``logits_per_image``."""
        for tower in ("vision", "text"):
            self.require(tower, "image-text logits")
        return self.logit_scale * self.image_embeds(images) @ self.text_embeds(texts).t()

    def classify(self, images, labels=None, templates=None, lang=None, **options):
        """Zero-shot classification; see :func:`clipviz.zeroshot.classify`.

        An image classifier (``CLIPForImageClassification``) uses its own head instead: ``labels`` may
        then be left out (all of ``model.labels``) or name a subset of them; see
        :func:`clipviz.towers.classify_with_head`.
        """
        from .zeroshot import classify

        return classify(self, images, labels, templates=templates, lang=lang, **options)

    def pooled_positions(self, tower: str, tokens: dict[str, torch.Tensor] | None = None, batch: int = 1) -> torch.Tensor:
        """``[batch]`` index of the token the tower pools from (CLS for vision; EOS or [CLS]/<s> for text)."""
        if self.modules(tower).pooling == "first":
            n = batch if tokens is None else tokens["input_ids"].shape[0]
            return torch.zeros(n, dtype=torch.long)
        if tokens is None:
            raise ValueError("the CLIP text tower pools at each text's EOS token: pass the tokens (model.tokenize(texts))")
        eos = getattr(self._tower_config("text"), "eos_token_id", None)
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
        if not isinstance(name_or_filter, str):
            raise WrongType("names_filter", f"got {type(name_or_filter).__name__} {name_or_filter!r}; pass a hook "
                                            "name such as 'vision.blocks.0.attn.hook_pattern', a list of them, or a "
                                            "predicate over names")
        if name_or_filter not in self._points:
            raise UnknownHookError(str(name_or_filter), self._points)
        return [name_or_filter]

    def _hook_pairs(self, hooks) -> list[tuple[HookPoint, Callable]]:
        """``[(name or predicate, fn), ...]`` as (point, fn) pairs, every part checked before any is attached."""
        example = "model.hooks([('vision.blocks.0.hook_resid_post', fn)])"
        if isinstance(hooks, tuple) and len(hooks) == 2 and (isinstance(hooks[0], str) or callable(hooks[0])) \
                and callable(hooks[1]) and not isinstance(hooks[1], tuple):
            raise WrongType("hooks", f"got one bare (name, fn) pair; pass a list of pairs: {example}")
        if isinstance(hooks, (str, bytes)) or not isinstance(hooks, Iterable):
            raise WrongType("hooks", f"got {type(hooks).__name__}; pass a list of (name, fn) pairs: {example}")
        pairs = []
        for position, item in enumerate(hooks):
            if not isinstance(item, (tuple, list)) or len(item) != 2:
                raise WrongType("hooks", f"item {position} is {item!r:.80}, not a (name, fn) pair: {example}")
            name, fn = item
            if not callable(fn):
                raise WrongType("hooks", f"the hook for {name!r} is {type(fn).__name__}, not a function: pass "
                                         "fn(tensor, *, hook) -> tensor | None")
            _check_hook_signature(fn, name)
            pairs += [(self._points[n], fn) for n in self._resolve_names(name)]
        return pairs

    @contextlib.contextmanager
    def hooks(self, hooks: Iterable[tuple[str | Callable[[str], bool], Callable]]):
        """Attach ``fn(tensor, *, hook) -> tensor | None`` to named points inside a ``with`` block.

        A name may also be a predicate over names (``lambda n: n.endswith("hook_pattern")``).
        Every hook is removed when the block ends, however it ends.
        """
        pairs = self._hook_pairs(hooks)
        with attached(pairs):
            yield self

    def _select_names(self, names_filter, towers: Sequence[str], layers) -> list[str]:
        if names_filter is None:
            names = [n for n in self._points if n.split(".")[0] in towers]
        elif callable(names_filter):  # a predicate picks among the towers that run
            names = [n for n in self._resolve_names(names_filter) if n.split(".")[0] in towers]
        elif isinstance(names_filter, str):
            names = self._resolve_names(names_filter)
        elif isinstance(names_filter, Iterable) and not isinstance(names_filter, bytes):
            names = [n for item in names_filter for n in self._resolve_names(item)]
        else:
            raise WrongType("names_filter", f"got {type(names_filter).__name__}; pass a hook name, a list of names "
                                            "or a predicate over names")
        if layers is not None:
            asked = _index_list(layers, "layers")
            wanted = {}
            for tower in dict.fromkeys(self._points[n].tower for n in names if self._points[n].layer is not None):
                wanted[tower] = set(_resolve_indices(asked, self.n_layers(tower), "layers",
                                                     f"the {tower} tower has {self.n_layers(tower)} blocks"))
            names = [n for n in names if self._points[n].layer is None
                     or self._points[n].layer in wanted[self._points[n].tower]]
        missing = sorted({n.split(".")[0] for n in names} - set(towers))
        if missing:
            needs = "images= (or pixel_values=)" if "vision" in missing else "texts="
            raise InvalidArgument("names_filter", f"hooks in the {missing[0]} tower were asked for, but no input "
                                                  f"for it: pass {needs}")
        return names

    def _estimate_bytes(self, names, shapes, heads, attention_rows, itemsize) -> int:
        total = 0
        for name in names:
            point = self._points[name]
            batch, seq = shapes[point.tower]
            config = self._tower_config(point.tower)
            n_heads = config.num_attention_heads if heads is None else len(heads[point.tower])
            if point.kind == "pattern":
                total += batch * n_heads * seq * (1 if attention_rows == "cls" else seq)
            elif name.endswith("hook_pooled"):
                total += batch * vector_sizes(self.layout, point.tower)[0]
            elif name.endswith("hook_embeds"):
                total += batch * vector_sizes(self.layout, point.tower)[1]
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
        resolution=None,
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
        ``resolution``: run the vision tower on the whole image at that size (see :meth:`pixel_values`).
        """
        if attention_rows not in ("all", "cls"):
            raise InvalidArgument("attention_rows", f"must be 'all' or 'cls', not {attention_rows!r}")
        if images is not None and pixel_values is not None:
            raise InvalidArgument("images", "pass images= or pixel_values=, not both")
        # every selection is checked before anything runs (a typo costs nothing)
        cache_dtype = _cache_dtype(cache_dtype)
        max_bytes = _max_bytes(max_bytes)
        if images is None and pixel_values is None and texts is None:
            raise InvalidArgument("images", "nothing to run: pass images= (or pixel_values=) and/or texts=")
        given = [t for t, x in (("vision", images if pixel_values is None else pixel_values), ("text", texts))
                 if x is not None]
        if towers is None:
            towers = given
        elif isinstance(towers, str):
            towers = [towers]
        elif isinstance(towers, Iterable):
            towers = list(towers)
        else:
            raise WrongType("towers", f"got {type(towers).__name__}; pass 'vision', 'text' or a list of them")
        for tower in towers:
            if tower not in TOWERS:
                raise InvalidArgument("towers", f"{tower!r} is not a tower: pass 'vision', 'text' or both")
            self._tower_config(tower)  # MissingTowerError for the tower a single-tower model lacks
        names = self._select_names(names_filter, towers, layers)
        if heads is not None:
            asked = _index_list(heads, "heads")
            heads = {tower: _resolve_indices(asked, self.n_heads(tower), "heads", f"each {tower} attention layer has {self.n_heads(tower)} heads")
                     for tower in towers}
        pixels = self.pixel_values(images, resolution=resolution) if images is not None else (
            None if pixel_values is None else self.check_pixel_values(pixel_values))
        tokens = self.tokenize(texts) if texts is not None else None

        shapes = {}
        if pixels is not None:
            rows, columns = self.grid_of(pixels)
            shapes["vision"] = (pixels.shape[0], rows * columns + 1)
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
            eos = getattr(self._tower_config("text"), "eos_token_id", None)
            pooled_rows = text_pooling_positions(self.family, tokens["input_ids"], eos)
        store: dict[str, torch.Tensor] = {}

        def capture(tensor, *, hook):
            if hook.kind == "pattern":
                if heads is not None:
                    tensor = tensor[:, heads[hook.tower]]
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


def load(name_or_path=None, *, device=None, dtype=None, processor=None, tower: str | None = None,
         vision=None, text=None, logit_scale: float | None = None) -> HookedCLIP:
    """Load a CLIP-family model as a :class:`HookedCLIP`.

    ``name_or_path``: a bundled model (``"shapes-clip"``, the default; ``"shapes-chinese-clip"``,
    ``"shapes-altclip"``; ``"shapes-clip-bow"``, shapes-clip's bag-of-words twin for lesson 07), a Hub id (``"openai/clip-vit-base-patch32"``,
    ``"OFA-Sys/chinese-clip-vit-base-patch16"``, ``"BAAI/AltCLIP"``, ...) or a local directory written
    by ``save_pretrained`` (model and processor) — of any class in :data:`clipviz.towers.SUPPORTED_CLASSES`:
    dual encoders, single towers (``CLIPVisionModelWithProjection``, ``CLIPTextModel``, ...) and
    ``CLIPForImageClassification``. It may also be a transformers model already in memory (then pass
    its ``processor=``, an image processor or tokenizer for a single tower). ``device`` defaults to
    CUDA when available.

    ``tower="vision"`` or ``"text"`` keeps one tower of a dual checkpoint (:func:`clipviz.towers.cut`).
    ``vision=`` and ``text=`` (directories or models, instead of ``name_or_path``) pair two projected
    CLIP towers of one checkpoint back into the dual model (:func:`clipviz.towers.pair`; single towers
    do not store the temperature: pass ``logit_scale=``, e.g. 100.0 for OpenAI's checkpoints).
    """
    from . import towers as _towers
    from .loading import read_checkpoint, resolve

    device = check_device(device) if device is not None else None  # before reading gigabytes
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if vision is not None or text is not None:
        if name_or_path is not None or vision is None or text is None:
            raise WrongType("vision", "pairing takes both towers and nothing else: clipviz.load(vision=..., text=...)")
        v, t = (load(part, dtype=dtype, device="cpu") for part in (vision, text))
        dual = _towers.pair(v.model, t.model, logit_scale=logit_scale)
        both = _towers.TowerProcessor(v.processor.image_processor, t.processor.tokenizer)
        return HookedCLIP(dual.to(device), both, name=f"{v.name} + {t.name}")
    if isinstance(name_or_path, torch.nn.Module):
        if processor is None:
            raise WrongType(
                "processor", "an in-memory model needs its processor: clipviz.load(model, processor=AutoProcessor.from_pretrained(...)) "
                "(an image processor for a vision tower, a tokenizer for a text tower)"
            )
        model, name = name_or_path, getattr(name_or_path.config, "_name_or_path", "") or type(name_or_path).__name__
        if dtype is not None:
            from .loading import parse_dtype

            model = model.to(parse_dtype(dtype))
    else:
        path = resolve(name_or_path)
        model, processor, _ = read_checkpoint(path, dtype=dtype)
        name = str(name_or_path) if name_or_path is not None else path.name
    if tower is not None:
        model = _towers.cut(model, tower)
        processor = _towers.TowerProcessor(
            getattr(processor, "image_processor", None) if tower == "vision" else None,
            getattr(processor, "tokenizer", None) if tower == "text" else None,
        )
        name = f"{name} ({tower} tower)"
    elif not hasattr(processor, "image_processor") and not hasattr(processor, "tokenizer"):
        # a bare image processor or tokenizer, for a single tower held in memory
        is_tokenizer = hasattr(processor, "convert_tokens_to_ids")
        processor = _towers.TowerProcessor(None if is_tokenizer else processor, processor if is_tokenizer else None)
    return HookedCLIP(model.to(device), processor, name=name)
