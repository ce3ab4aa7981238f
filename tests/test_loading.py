"""clipviz.load: bundled names, local directories and Hub ids; clear errors for everything else."""

import os
import pickle
import shutil
import time

import pytest
import torch

import clipviz
from clipviz.families import UnsupportedModelError
from clipviz.loading import CheckpointNotFoundError


def test_local_directory_and_family(tiny_models, family):
    model = clipviz.load(tiny_models[family], device="cpu")
    assert model.family == family
    assert model.model.config._attn_implementation == "clipviz"


def test_dtype_option(tiny_models, photos):
    model = clipviz.load(tiny_models["clip"], dtype="bfloat16")
    assert model.dtype == torch.bfloat16
    assert model.image_embeds(photos).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="dtype"):
        clipviz.load(tiny_models["clip"], dtype="float8")


def test_unknown_family_is_a_clear_error(tmp_path):
    from transformers import BertConfig, BertModel

    config = BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8)
    BertModel(config).save_pretrained(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text("{}")
    (tmp_path / "vocab.txt").write_text("[PAD]\n")
    with pytest.raises(UnsupportedModelError, match="clip, chinese_clip, altclip"):
        clipviz.load(tmp_path)


def test_directory_without_processor_files(tiny_models, tmp_path):
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_models["clip"] / name, tmp_path / name)
    with pytest.raises(CheckpointNotFoundError, match="processor.save_pretrained"):
        clipviz.load(tmp_path)
    with pytest.raises(CheckpointNotFoundError, match="config.json"):
        clipviz.load(tmp_path / "..")


def test_names_that_are_nothing(tmp_path):
    with pytest.raises(CheckpointNotFoundError, match="bundled model"):
        clipviz.load("no such model")


def test_hub_id_offline_fails_fast_with_instructions(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(CheckpointNotFoundError, match="huggingface-cli download openai/clip-vit-base-patch32"):
        clipviz.load("openai/clip-vit-base-patch32")
    assert time.perf_counter() - start < 10


def test_hub_id_unreachable_fails_fast(monkeypatch):
    """Not offline by setting, but no route to the Hub: still a few seconds and a plain message."""
    import clipviz.loading as loading

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "https://127.0.0.1:9")  # a closed local port
    monkeypatch.setattr(loading, "_hub_offline", lambda: False)
    with pytest.raises(CheckpointNotFoundError, match="cannot be reached"):
        clipviz.load("BAAI/AltCLIP")


def test_pickle_only_checkpoint_loads_with_weights_only(tiny_models, tmp_path, photos):
    reference = clipviz.load(tiny_models["clip"])
    shutil.copytree(tiny_models["clip"], tmp_path / "ckpt")
    ckpt = tmp_path / "ckpt"
    os.remove(ckpt / "model.safetensors")
    torch.save(reference.model.state_dict(), ckpt / "pytorch_model.bin")
    model = clipviz.load(ckpt)
    torch.testing.assert_close(model.image_embeds(photos), reference.image_embeds(photos))


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch /tmp/clipviz_pwned",))


def test_malicious_pickle_is_refused(tiny_models, tmp_path):
    shutil.copytree(tiny_models["clip"], tmp_path / "ckpt")
    ckpt = tmp_path / "ckpt"
    os.remove(ckpt / "model.safetensors")
    if os.path.exists("/tmp/clipviz_pwned"):
        os.remove("/tmp/clipviz_pwned")
    with open(ckpt / "pytorch_model.bin", "wb") as f:
        pickle.dump({"weight": _Payload()}, f)
    with pytest.raises(Exception, match=r"(?i)weights.only|unsupported global|os\.system"):
        clipviz.load(ckpt)
    assert not os.path.exists("/tmp/clipviz_pwned")


def test_never_trusts_remote_code(tiny_models, family, monkeypatch):
    """Every from_pretrained that clipviz.load makes says trust_remote_code=False (recorded, not grepped)."""
    import transformers

    calls = []

    def recording(owner):
        original = owner.from_pretrained  # bound to ``owner``

        def from_pretrained(*args, **kwargs):
            calls.append((owner.__name__, kwargs))
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, "from_pretrained", from_pretrained)

    from clipviz.towers import SUPPORTED_CLASSES

    # the model class is read from config.json by clipviz itself (no AutoConfig): every class it may load is recorded
    for owner in (transformers.AutoConfig, transformers.AutoProcessor, transformers.AutoImageProcessor,
                  transformers.AutoTokenizer, *(getattr(transformers, name) for name in SUPPORTED_CLASSES)):
        recording(owner)
    clipviz.load(tiny_models[family])
    assert "AutoProcessor" in {name for name, _ in calls} and len(calls) >= 2, calls
    assert all(kwargs.get("trust_remote_code") is False for _, kwargs in calls), calls


@pytest.mark.parametrize("name, family", [("shapes-clip", "clip"), ("shapes-chinese-clip", "chinese_clip"),
                                          ("shapes-altclip", "altclip")])
def test_bundled_models_load_offline(name, family):
    model = clipviz.load(name)
    assert model.family == family and model.grid_size == (8, 8)


def test_default_is_the_bundled_shapes_clip():
    model = clipviz.load()
    assert model.name == "shapes-clip" and model.family == "clip"
