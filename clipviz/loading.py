"""Finding and reading checkpoints: bundled names, local ``save_pretrained`` dirs and Hub ids.

Safety: clipviz never runs code from a checkpoint (``trust_remote_code`` stays off); transformers
prefers ``model.safetensors`` and reads a pickle-only checkpoint (``pytorch_model.bin``) through
``torch.load(weights_only=True)``, which refuses arbitrary objects. Failing fast: a Hub id that is
neither on disk nor reachable ends in a few seconds with a message saying how to get it, not a
stack trace from the Hub client.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
from pathlib import Path
from urllib.parse import urlparse

import torch

from .errors import BadCheckpoint, InvalidArgument, MissingFile, WrongType

DEFAULT_MODEL = "shapes-clip"
_PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")
_TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "vocab.txt", "sentencepiece.bpe.model", "tokenizer_config.json")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


class CheckpointNotFoundError(MissingFile):
    """The checkpoint is not on disk and cannot be fetched; the message says what to do (an ``OSError``)."""


def _bundled_path(name: str) -> Path | None:
    from . import zoo

    return zoo.path(name) if name in zoo.available() else None


def _check_local_dir(path: Path) -> Path:
    if not (path / "config.json").is_file():
        raise CheckpointNotFoundError(
            f"{path} has no config.json: it is not a directory written by save_pretrained. "
            "Save both parts there: model.save_pretrained(dir) and processor.save_pretrained(dir)."
        )
    from .towers import checkpoint_class, kind_of_class

    _check_readable(path)  # config.json must parse before its class is read
    kind = kind_of_class(checkpoint_class(path))  # a single tower needs only its own half of the processor
    has_images = any((path / f).is_file() for f in _PROCESSOR_FILES) or kind == "text"
    has_text = any((path / f).is_file() for f in _TOKENIZER_FILES) or kind in ("vision", "classifier")
    if not (has_images and has_text):
        missing = "image processor" if not has_images else "tokenizer"
        raise CheckpointNotFoundError(
            f"{path} holds a model but no {missing} files. clipviz needs the processor beside the weights: "
            "run processor.save_pretrained(dir) (e.g. AutoProcessor.from_pretrained(<hub id>)) into the same directory."
        )
    return path


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _hub_reachable(timeout: float = 3.0) -> bool:
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        with socket.create_connection((endpoint.hostname, endpoint.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def _how_to_get(repo_id: str, why: str) -> str:
    return (
        f"{repo_id!r} is not in the local Hugging Face cache and {why}. On a machine with network run "
        f"`huggingface-cli download {repo_id}` (or clipviz.load({repo_id!r}) once), then copy the cache "
        "(~/.cache/huggingface) here, or save it with model.save_pretrained(dir) + processor.save_pretrained(dir) "
        "and call clipviz.load(dir). Without network, the bundled models work: clipviz.load('shapes-clip')."
    )


def resolve(name_or_path: str | os.PathLike | None) -> Path:
    """A local directory holding the checkpoint ``name_or_path`` names (downloading a Hub id if it can)."""
    name = DEFAULT_MODEL if name_or_path is None else name_or_path
    if not isinstance(name, (str, os.PathLike)):
        raise WrongType("name_or_path", f"got {type(name).__name__} {name!r}; pass a bundled model name such as "
                                        "'shapes-clip', a Hub id or a directory path")
    if not str(name).strip():  # Path("") is the current directory: never guess that
        raise InvalidArgument("name_or_path", f"{name!r} is empty: pass a bundled model name such as 'shapes-clip', a Hub id "
                                              "like 'openai/clip-vit-base-patch32', a directory, or nothing for the default")
    if isinstance(name, os.PathLike) or Path(str(name)).expanduser().is_dir():
        path = Path(name).expanduser()
        if not path.is_dir():
            raise CheckpointNotFoundError(f"directory not found: {path}")
        return _check_local_dir(path)
    name = str(name)
    bundled = _bundled_path(name)
    if bundled is not None:
        return bundled
    if not _HUB_ID.match(name):
        from . import zoo

        raise CheckpointNotFoundError(
            f"{name!r} is neither a directory, a bundled model ({', '.join(zoo.available()) or 'none installed'}) "
            "nor a Hub id like 'openai/clip-vit-base-patch32'."
        )
    return _hub_snapshot(name)


def _hub_snapshot(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.txt", "*.model", "*.safetensors", "*.bin", "*.md"]
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns, local_files_only=True))
    except Exception:  # not cached: decide below whether to try the network
        pass
    if _hub_offline():
        raise CheckpointNotFoundError(_how_to_get(repo_id, "HF_HUB_OFFLINE is set"))
    if not _hub_reachable():
        raise CheckpointNotFoundError(_how_to_get(repo_id, "the Hugging Face Hub cannot be reached"))
    try:
        # Prefer safetensors; the pickle weights are fetched only when a repo has nothing else.
        files = snapshot_download(repo_id, allow_patterns=[p for p in patterns if p != "*.bin"])
        if not any(Path(files).glob("*.safetensors")):
            files = snapshot_download(repo_id, allow_patterns=patterns)
        return Path(files)
    except Exception as error:
        raise CheckpointNotFoundError(f"could not download {repo_id!r} from the Hub: {error}") from error


def parse_dtype(dtype) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    names = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if dtype not in names:
        raise InvalidArgument("dtype", f"dtype must be a torch dtype or one of {sorted(names)}, not {dtype!r}")
    return names[dtype]


@contextlib.contextmanager
def _quiet_progress_bars():
    from transformers.utils import logging

    was_enabled = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            logging.enable_progress_bar()


def _check_readable(path: Path) -> None:
    """A valid config.json and a weights file, checked before transformers reads them (its errors name internals)."""
    config_file = path / "config.json"
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadCheckpoint("name_or_path", f"{path} has no config.json: save the model there with "
                                            "model.save_pretrained(dir)") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BadCheckpoint("name_or_path", f"{config_file} is not valid JSON ({error}): restore it, or save the "
                                            "model again with model.save_pretrained(dir)") from None
    if not isinstance(config, dict):
        raise BadCheckpoint("name_or_path", f"{config_file} holds a JSON {type(config).__name__}, not the object "
                                            "save_pretrained writes: save the model again")
    if not any((path / name).is_file() for name in _WEIGHT_FILES):
        raise BadCheckpoint("name_or_path", f"{path} has a config.json but no weights ({' or '.join(_WEIGHT_FILES[::2])}): "
                                            "copy the weights beside it, or save with model.save_pretrained(dir)")


def read_checkpoint(path: Path, *, dtype=None):
    """``(model, processor, family)`` from a checkpoint directory, with clipviz's attention.

    The model's class is the one that wrote the checkpoint (``config.json``'s ``architectures``, or its
    weights' names): a dual encoder, a single tower or ``CLIPForImageClassification``
    (see :mod:`clipviz.towers`).
    """
    from transformers import AutoProcessor

    from .hooks import ATTENTION_IMPLEMENTATION, register_attention_implementation
    from .towers import checkpoint_class, kind_of_class, layout_of, model_class, read_processor

    _check_readable(Path(path))
    name = checkpoint_class(path)  # UnsupportedModelError for other families
    extra = {"add_pooling_layer": False} if name == "ChineseCLIPTextModel" else {}  # the dual never uses it
    register_attention_implementation()
    with _quiet_progress_bars():  # a per-tensor bar for a local load only clutters notebooks
        model = model_class(name).from_pretrained(
            path, attn_implementation=ATTENTION_IMPLEMENTATION, dtype=parse_dtype(dtype), trust_remote_code=False,
            **extra,
        )
    # The PIL backend on purpose: the torchvision one would pull a multi-GB CUDA torch.
    kind = kind_of_class(name)
    if kind == "dual":
        processor = AutoProcessor.from_pretrained(path, backend="pil", trust_remote_code=False)
    else:
        processor = read_processor(path, kind)
    return model, processor, layout_of(model).family
