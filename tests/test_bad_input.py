"""Bad input, misuse and interruption: each case gets the right answer or a clipviz error in its own words.

Every failure case also checks that nothing was left behind: no clipviz hook stays attached and the
model's outputs on a fixed input are what they were (``intact``). Cases follow issue 17.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import threading
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import clipviz
import clipviz.heatmaps
from clipviz import zeroshot
from clipviz.errors import (
    BadCheckpoint,
    ClipvizError,
    DeviceUnavailable,
    InvalidArgument,
    MissingFile,
    WrongType,
)
from clipviz.hooks import clipviz_hooks_on
from clipviz.images import ImageLoadError, load_image

LABELS = ["red circle", "blue square", "green star"]


def zero(tensor, *, hook):
    return torch.zeros_like(tensor)


@pytest.fixture
def model(tiny_hooked):
    return tiny_hooked["clip"]


@pytest.fixture
def own_model(tiny_models):
    """A private copy: the test changes its weights."""
    return clipviz.load(tiny_models["clip"])


@contextlib.contextmanager
def intact(model, photos):
    """The block may fail; afterwards no clipviz hook is left and the outputs are unchanged."""
    before = model.logits(photos[:2], LABELS)
    yield
    assert clipviz_hooks_on(model.model) == 0
    torch.testing.assert_close(model.logits(photos[:2], LABELS), before, atol=0, rtol=0)


def refused(model, photos, error, match, call):
    """``call()`` raises ``error`` (a clipviz error) matching ``match``, and leaves the model intact."""
    with intact(model, photos), pytest.raises(error, match=match) as raised:
        call()
    assert isinstance(raised.value, ClipvizError), type(raised.value)
    return raised.value


# ---------------------------------------------------------------- zero-shot cache: hooks and weights
def test_zero_shot_under_hooks_is_computed_under_those_hooks(model, photos):
    zeroshot.clear_label_cache(model)
    p0 = model.classify(photos, LABELS).probs
    with model.hooks([("text.blocks.0.attn.hook_out", zero)]):
        p1 = model.classify(photos, LABELS).probs
    assert not np.allclose(p1, p0)
    np.testing.assert_allclose(model.classify(photos, LABELS).probs, p0, atol=0, rtol=0)


def test_a_hooked_first_call_does_not_poison_later_calls(model, photos):
    new_labels = ["yellow triangle", "purple star"]
    zeroshot.clear_label_cache(model)
    with model.hooks([("text.blocks.0.attn.hook_out", zero)]):
        hooked = model.classify(photos, new_labels).probs
    plain = model.classify(photos, new_labels).probs
    zeroshot.clear_label_cache(model)
    fresh = model.classify(photos, new_labels).probs
    np.testing.assert_allclose(plain, fresh, atol=0, rtol=0)
    assert not np.allclose(plain, hooked)


def test_vision_hooks_do_not_bypass_the_label_cache(model, photos):
    first = zeroshot.label_embeds(model, LABELS)
    with model.hooks([("vision.blocks.0.attn.hook_out", zero)]):
        assert zeroshot.label_embeds(model, LABELS) is first


def test_the_label_cache_is_not_kept_on_the_model(own_model):
    before = set(vars(own_model))
    zeroshot.label_embeds(own_model, LABELS)
    own_model.weights_version()
    assert set(vars(own_model)) == before


@pytest.mark.parametrize("edit", ["data_index", "data_copy", "data_swap", "no_grad"])
def test_weight_edits_through_data_reach_the_label_cache(own_model, edit):
    first = zeroshot.label_embeds(own_model, LABELS).clone()
    weight = own_model.model.text_projection.weight
    noise = 0.5 * torch.randn(weight.shape, generator=torch.Generator().manual_seed(0))
    if edit == "data_index":
        weight.data[0, :5] += 1.0  # part of a row, through .data: PyTorch's version counter does not move
    elif edit == "data_copy":
        weight.data.copy_(weight.data + noise)
    elif edit == "data_swap":
        weight.data = weight.data + noise
    else:
        with torch.no_grad():
            weight.add_(noise)
    changed = zeroshot.label_embeds(own_model, LABELS)
    zeroshot.clear_label_cache(own_model)
    torch.testing.assert_close(changed, zeroshot.label_embeds(own_model, LABELS), atol=0, rtol=0)
    assert not torch.allclose(changed, first)


def test_weights_version_sees_every_value_and_only_the_tower_asked(own_model):
    both, text, vision = (own_model.weights_version(t) for t in (None, "text", "vision"))
    assert own_model.weights_version() == both  # stable while nothing changes
    own_model.model.vision_model.embeddings.patch_embedding.weight.data[0, 0, 0, 0] += 0.25
    assert own_model.weights_version("text") == text
    assert own_model.weights_version("vision") != vision and own_model.weights_version() != both
    with pytest.raises(ValueError, match="tower"):
        own_model.weights_version("audio")


def test_embed_cache_notices_weight_edits_through_data(own_model, tmp_path):
    from clipviz.embeddings import embed

    texts = ["a red circle", "a blue square"]
    before = np.array(embed(own_model, texts=texts, cache=tmp_path).vectors)
    own_model.model.text_projection.weight.data.mul_(-1.0)
    after = np.array(embed(own_model, texts=texts, cache=tmp_path).vectors)
    np.testing.assert_allclose(after, np.array(embed(own_model, texts=texts).vectors), atol=1e-6)
    assert not np.allclose(after, before)
    assert not hasattr(own_model, "_clipviz_fingerprint")


# ---------------------------------------------------------------- run_with_cache selections, before the forward
def test_negative_layers_count_from_the_end(model, photos):
    last = model.n_layers("vision") - 1
    _, by_negative = model.run_with_cache(images=photos[:1], layers=-1)
    _, by_positive = model.run_with_cache(images=photos[:1], layers=last)
    assert list(by_negative) == list(by_positive)
    assert f"vision.blocks.{last}.attn.hook_pattern" in by_negative
    _, heads = model.run_with_cache(images=photos[:1], names_filter="vision.blocks.0.attn.hook_pattern", heads=[-1])
    full = model.run_with_cache(images=photos[:1], names_filter="vision.blocks.0.attn.hook_pattern")[1]
    key = "vision.blocks.0.attn.hook_pattern"
    torch.testing.assert_close(heads[key][:, 0], full[key][:, -1])


@pytest.mark.parametrize("options, error, match", [
    (dict(layers=99), InvalidArgument, r"layers: 99 is out of range: the vision tower has 2 blocks, so pass 0\.\.1"),
    (dict(layers=-3), InvalidArgument, "out of range"),
    (dict(layers="2"), WrongType, "layers: got str '2'"),
    (dict(layers=2.0), WrongType, "layers: got float"),
    (dict(layers=[0, 1.5]), WrongType, "layers: holds float"),
    (dict(layers=True), WrongType, "layers: got bool"),
    (dict(heads=[]), InvalidArgument, r"heads: \[\] selects nothing"),
    (dict(heads=99), InvalidArgument, "heads: 99 is out of range: each vision attention layer has 4 heads"),
    (dict(heads="0"), WrongType, "heads: got str"),
    (dict(cache_dtype=torch.int32), InvalidArgument, "cache_dtype: torch.int32 would turn attention probabilities"),
    (dict(cache_dtype=torch.bool), InvalidArgument, "cache_dtype"),
    (dict(cache_dtype="int8"), InvalidArgument, "not a float dtype"),
    (dict(cache_dtype=16), WrongType, "cache_dtype"),
    (dict(max_bytes="1GB"), WrongType, r"max_bytes: got str '1GB'; pass a number of bytes, e.g. max_bytes=2\*\*30"),
    (dict(max_bytes=-1), InvalidArgument, "max_bytes"),
    (dict(towers="audio"), InvalidArgument, "towers: 'audio' is not a tower"),
    (dict(towers=5), WrongType, "towers"),
    (dict(names_filter=5), WrongType, "names_filter: got int"),
    (dict(attention_rows="first"), InvalidArgument, "attention_rows"),
])
def test_bad_selections_are_refused_before_the_forward(model, photos, monkeypatch, options, error, match):
    ran = []
    original = model.image_features
    with intact(model, photos):
        monkeypatch.setattr(model, "image_features", lambda pixels: ran.append(1) or original(pixels))
        with pytest.raises(error, match=match):
            model.run_with_cache(images=photos[:1], **options)
        monkeypatch.undo()
    assert not ran


def test_float_cache_dtype_by_name(model, photos):
    _, cache = model.run_with_cache(images=photos[:1], cache_dtype="float16",
                                    names_filter="vision.blocks.0.attn.hook_pattern")
    pattern = cache["vision.blocks.0.attn.hook_pattern"]
    assert pattern.dtype == torch.float16
    torch.testing.assert_close(pattern.float().sum(-1), torch.ones(pattern.shape[:-1]), atol=1e-2, rtol=0)


@pytest.mark.parametrize("pixels, error, match", [
    (torch.zeros(1, 3, 10, 10), InvalidArgument, r"pixel_values: has shape \(1, 3, 10, 10\); this model takes \[N, 3, 32, 32\]"),
    (torch.zeros(2, 32, 32), InvalidArgument, "pixel_values"),
    (torch.zeros(1, 3, 32, 32, dtype=torch.int64), InvalidArgument, "dtype"),
    (np.zeros((1, 3, 32, 32), dtype=np.float32), WrongType, "pixel_values: got ndarray"),
])
def test_wrong_pixel_values(model, photos, pixels, error, match):
    refused(model, photos, error, match, lambda: model.run_with_cache(pixel_values=pixels))


def test_right_pixel_values_of_one_image_without_the_batch_axis(model, photos):
    pixels = model.pixel_values(photos[:1])
    out, _ = model.run_with_cache(pixel_values=pixels[0], names_filter="vision.hook_embeds")
    torch.testing.assert_close(out.image_embeds, model.image_embeds(photos[:1]), atol=1e-6, rtol=0)


# ---------------------------------------------------------------- hooks
def test_hooks_contexts_exited_out_of_order_remove_exactly_their_own(model, photos):
    point = "vision.blocks.0.hook_resid_post"
    seen = []
    a = model.hooks([(point, lambda t, *, hook: seen.append("a"))])
    b = model.hooks([(point, lambda t, *, hook: seen.append("b"))])
    with intact(model, photos):
        a.__enter__()
        b.__enter__()
        a.__exit__(None, None, None)
        model.image_embeds(photos[:1])
        assert seen == ["b"]
        assert model.hooks_in_use() == [point]
        b.__exit__(None, None, None)
        seen.clear()
        model.image_embeds(photos[:1])
        assert seen == [] and model.hooks_in_use() == []


def test_a_bare_pair_and_a_one_argument_hook_are_refused(model, photos):
    refused(model, photos, WrongType, r"hooks: got one bare \(name, fn\) pair; pass a list of pairs",
            lambda: model.hooks(("vision.hook_embed", zero)).__enter__())
    refused(model, photos, WrongType, r"hooks are called as fn\(tensor, \*, hook\)",
            lambda: model.hooks([("vision.hook_embed", lambda t: t)]).__enter__())
    refused(model, photos, WrongType, "not a function",
            lambda: model.hooks([("vision.hook_embed", "zero")]).__enter__())
    refused(model, photos, WrongType, r"not a \(name, fn\) pair",
            lambda: model.hooks(["vision.hook_embed"]).__enter__())
    with model.hooks([("vision.hook_embed", lambda t, **_: None)]):  # **kwargs takes hook=
        model.image_embeds(photos[:1])


def test_a_failing_hook_leaves_nothing_behind(model, photos):
    def broken(tensor, *, hook):
        raise RuntimeError("boom")

    with intact(model, photos), pytest.raises(RuntimeError, match="boom"):
        with model.hooks([("text.blocks.0.attn.hook_pattern", broken)]):
            model.classify(photos, LABELS)


# ---------------------------------------------------------------- images
def test_integer_arrays_are_read_by_value_range_whatever_their_dtype():
    rng = np.random.default_rng(0)
    twelve_bit = rng.integers(0, 4096, (8, 8, 3))
    reference = np.asarray(load_image(twelve_bit.astype(np.uint16)))
    for dtype in (np.int32, np.int64, np.uint32):
        np.testing.assert_array_equal(np.asarray(load_image(twelve_bit.astype(dtype))), reference)
    assert reference.max() < 255  # 12-bit data in 16 bits is dark, never all white
    eight_bit = rng.integers(0, 256, (8, 8, 3))
    np.testing.assert_array_equal(np.asarray(load_image(eight_bit.astype(np.int32))), eight_bit.astype(np.uint8))
    with pytest.raises(ImageLoadError, match="negative values"):
        load_image(-eight_bit)
    with pytest.raises(ImageLoadError, match="beyond 16 bits"):
        load_image(eight_bit.astype(np.int64) * 1000)


def test_float_images_far_outside_0_1_are_refused():
    rng = np.random.default_rng(0)
    with pytest.raises(ImageLoadError, match=r"spans \[.*\].*divide by 255"):
        load_image(rng.uniform(0, 255, (8, 8, 3)))
    with pytest.raises(ImageLoadError, match="normalised"):
        load_image(rng.normal(0, 1, (8, 8, 3)))
    overshoot = np.clip(rng.uniform(0, 1, (8, 8, 3)), 0, 1) * 1.05 - 0.02  # resampling overshoot: clipped
    assert load_image(overshoot).size == (8, 8)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_a_fifo_path_is_refused_at_once(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    outcome = []

    def load():
        try:
            load_image(fifo)
        except Exception as error:  # noqa: BLE001 - recorded for the assertion below
            outcome.append(error)

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    worker.join(timeout=10)
    if worker.is_alive():  # unblock the reader so the test process can end, then fail
        with open(fifo, "wb"):
            pass
        pytest.fail("loading a FIFO blocked")
    assert isinstance(outcome[0], ImageLoadError) and "FIFO" in str(outcome[0]) and "regular file" in str(outcome[0])


def test_a_directory_and_a_missing_file_are_clear(tmp_path):
    with pytest.raises(ImageLoadError, match="is a directory"):
        load_image(tmp_path)
    with pytest.raises(FileNotFoundError, match="image file not found"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ValueError, match="empty path"):
        load_image("")


def test_png_bytes_and_open_files_are_images(model, photos, tmp_path):
    buffer = io.BytesIO()
    photos[0].save(buffer, format="PNG")
    png = buffer.getvalue()
    expected = model.image_embeds(photos[0])
    torch.testing.assert_close(model.image_embeds(png), expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(model.image_embeds([png, bytearray(png)]), expected.repeat(2, 1), atol=1e-6, rtol=0)
    torch.testing.assert_close(model.image_embeds(io.BytesIO(png)), expected, atol=1e-6, rtol=0)
    (tmp_path / "a.png").write_bytes(png)
    with open(tmp_path / "a.png", "rb") as handle:
        torch.testing.assert_close(model.image_embeds(handle), expected, atol=1e-6, rtol=0)
    refused(model, photos, ImageLoadError, "not an image file", lambda: model.image_embeds(b"not a png"))
    refused(model, photos, WrongType, "cannot use an object of type int as an image", lambda: model.image_embeds([5]))


# ---------------------------------------------------------------- texts and labels
@pytest.mark.parametrize("texts, error, match", [
    (None, WrongType, "texts: got NoneType; pass a string or a list of strings"),
    (5, WrongType, "texts: got int"),
    (b"red circle", WrongType, r"texts: got bytes; pass text \(str\): decode it first"),
    (["red", b"blue"], WrongType, "item 1 is bytes"),
    (["ok", "half an emoji \ud83d"], InvalidArgument, r"texts\[1\]: .*lone UTF-16 surrogate"),
])
def test_bad_texts(model, photos, texts, error, match):
    refused(model, photos, error, match, lambda: model.text_embeds(texts))


def test_bad_labels(model, photos):
    refused(model, photos, InvalidArgument, r"labels\[1\]: .*lone UTF-16 surrogate",
            lambda: model.classify(photos, ["red", "blue \udc00"]))
    refused(model, photos, WrongType, "labels: got int", lambda: model.classify(photos, 5))
    refused(model, photos, InvalidArgument, "lang: no templates for language 'xx'",
            lambda: model.classify(photos, LABELS, lang="xx"))
    refused(model, photos, InvalidArgument, "templates: 'bogus' is neither a template",
            lambda: model.classify(photos, LABELS, templates="bogus"))


def test_top_with_a_bad_image_index(model, photos):
    result = model.classify(photos, LABELS)
    with pytest.raises(InvalidArgument, match=r"image: 5 is out of range: this result has 3 image\(s\)"):
        result.top(image=5)
    with pytest.raises(WrongType, match="image: got str"):
        result.top(image="0")
    with pytest.raises(WrongType, match="k: got float"):
        result.top(2.0)
    assert result.top(1, image=-1) == result.top(1, image=2)


# ---------------------------------------------------------------- loading
def test_load_refuses_empty_and_ill_typed_names():
    with pytest.raises(InvalidArgument, match="name_or_path: '' is empty"):
        clipviz.load("")
    with pytest.raises(InvalidArgument, match="empty"):
        clipviz.load("  ")
    with pytest.raises(WrongType, match="name_or_path: got int"):
        clipviz.load(5)


def test_invalid_config_and_missing_weights(tiny_models, tmp_path):
    broken = shutil.copytree(tiny_models["clip"], tmp_path / "broken")
    (broken / "config.json").write_text("{ not json", encoding="utf-8")
    with pytest.raises(BadCheckpoint, match="config.json is not valid JSON"):
        clipviz.load(broken)
    listed = shutil.copytree(tiny_models["clip"], tmp_path / "listed")
    (listed / "config.json").write_text(json.dumps([1, 2]), encoding="utf-8")
    with pytest.raises(BadCheckpoint, match="holds a JSON list"):
        clipviz.load(listed)
    weightless = shutil.copytree(tiny_models["clip"], tmp_path / "weightless")
    for name in ("model.safetensors", "pytorch_model.bin"):
        (weightless / name).unlink(missing_ok=True)
    with pytest.raises(BadCheckpoint, match="has a config.json but no weights"):
        clipviz.load(weightless)
    with pytest.raises(MissingFile, match="directory not found|neither a directory"):
        clipviz.load(tmp_path / "absent")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda(tiny_models):
    with pytest.raises(DeviceUnavailable, match="device: 'cuda' asks for CUDA, but this PyTorch sees no CUDA GPU"):
        clipviz.load(tiny_models["clip"], device="cuda")
    with pytest.raises(InvalidArgument, match="not a device name"):
        clipviz.load(tiny_models["clip"], device="gpu")
    with pytest.raises(WrongType, match="device"):
        clipviz.load(tiny_models["clip"], device=["cpu"])


# ---------------------------------------------------------------- heatmaps
@pytest.mark.parametrize("ratio, error", [(0, InvalidArgument), (1, InvalidArgument), (-2.5, InvalidArgument),
                                          (float("nan"), InvalidArgument), ("2.5", WrongType)])
def test_nonsensical_sink_ratios_are_refused_before_running(model, photos, ratio, error):
    refused(model, photos, error, "sink_ratio",
            lambda: clipviz.heatmaps.heatmap(model, photos[0], method="attention", sink_ratio=ratio))


def test_a_heatmap_reports_only_an_exclusion_that_happened(model, photos):
    from clipviz import heatmaps

    capture = heatmaps.capture_attention(model, photos[0], None)
    capture.patch_norms = np.ones_like(capture.patch_norms)  # no patch stands out: no sinks
    shown = heatmaps.heatmap_from_capture(capture, "attention", exclude_sinks=True)
    assert not shown.sinks.any() and not shown.exclude_sinks and "excluded" not in repr(shown)
    capture.patch_norms[0] = 100.0
    shown = heatmaps.heatmap_from_capture(capture, "attention", exclude_sinks=True)
    assert shown.exclude_sinks and "1 sink patch(es) excluded" in repr(shown)


# ---------------------------------------------------------------- apps
def test_zero_shot_app_reports_refused_values_and_stays_in_step(model, photos):
    from clipviz.widgets import ZeroShotApp

    app = ZeroShotApp(model, images=photos, labels=LABELS, lang="en", templates="single")
    updates = app.n_updates
    for name, value, match in [("image_index", 99, "image_index: there is no image 99: choose 0..2"),
                               ("lang", "xx", "lang: 'xx' is not one of"),
                               ("template_set", "bogus", "template_set: 'bogus' is not one of"),
                               ("k", 0, "k: 0")]:
        before = getattr(app.state, name)
        setattr(app.state, name, value)
        assert match.split(":")[0] in app.last_error and match.split(": ", 1)[1] in app.last_error
        assert getattr(app.state, name) == before
        assert f"⚠ {app.last_error}" in app._errors.outputs[0]["text"]
    assert (app._picker.value, app._lang.value, app._templates.value) == (0, "en", "single")
    assert app.n_updates == updates  # nothing ran for a refused value
    app.state.image_index = 2  # the next valid edit works
    assert app.last_error is None and app._picker.value == 2 and app.n_updates == updates + 1
    app.set_labels("red \ud800, blue")
    assert "lone UTF-16 surrogate" in app.last_error and app.result is None


def test_attention_app_reports_refused_values_and_stays_in_step(model, photos):
    from clipviz.widgets import AttentionApp

    app = AttentionApp(model, images=photos, prompt="a photo of a red circle", method="attention")
    for name, value in [("head", 99), ("method", "bogus"), ("layer", 99), ("image_index", 99), ("opacity", 3.0)]:
        before = getattr(app.state, name)
        setattr(app.state, name, value)
        assert app.last_error.startswith(f"{name}: ") and getattr(app.state, name) == before
    app.state.head = 1
    assert app.last_error is None and app._head.value == 1 and app.heatmap.options["head"] == 1
    with pytest.raises(InvalidArgument, match="method: 'bogus'"):
        AttentionApp(model, images=photos, method="bogus")


def test_apps_share_one_error_format(model, photos):
    from clipviz.widgets import AttentionApp, ZeroShotApp

    zero_shot = ZeroShotApp(model, images=photos, labels=LABELS)
    attention = AttentionApp(model, images=photos, prompt="")
    zero_shot.state.image_index = 7
    attention.state.image_index = 7
    assert zero_shot.last_error == attention.last_error == "image_index: there is no image 7: choose 0..2"
    attention.state.method = "grad_eclip"  # needs a prompt: a plain ValueError from the app, type first
    assert attention.last_error.startswith("ValueError: ")


def test_warnings_are_not_errors(model, photos):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.classify(photos, LABELS, templates="{}")
    assert isinstance(load_image(np.zeros((4, 4), dtype=np.int16)), Image.Image)


def test_bad_batch_sizes_and_tower_names(model, photos):
    refused(model, photos, InvalidArgument, "batch_size: 0 must be at least 1", lambda: model.image_embeds(photos, batch_size=0))
    refused(model, photos, WrongType, "batch_size: got float", lambda: model.text_embeds(LABELS, batch_size=2.5))
    with pytest.raises(InvalidArgument, match="tower: must be 'vision' or 'text', not 'audio'"):
        model.n_layers("audio")


def test_the_towers_weights_cover_the_model(tiny_hooked, family):
    model = tiny_hooked[family]
    text = {id(p) for p in model._tower_parameters("text")}
    vision = {id(p) for p in model._tower_parameters("vision")}
    rest = {id(p) for p in model.model.parameters()} - text - vision
    assert not text & vision
    assert rest == {id(model.model.logit_scale)}  # the temperature is in neither tower


def test_apps_do_not_serve_embeddings_or_captures_from_other_weights(own_model, photos):
    from clipviz.widgets import AttentionApp, ZeroShotApp

    zero_shot = ZeroShotApp(own_model, images=photos, labels=LABELS, lang="en", templates="single")
    attention = AttentionApp(own_model, images=photos, prompt="a red circle", method="attention")
    probs, grid = zero_shot.result.probs.copy(), attention.heatmap.grid.copy()
    with torch.no_grad():
        own_model.model.vision_model.embeddings.patch_embedding.weight.data.mul_(-1.0)
    zero_shot.state.image_index = 1
    zero_shot.state.image_index = 0  # back to the first image: re-encoded under the new weights
    attention.state.prompt = "a blue square"
    attention.state.prompt = "a red circle"
    assert not np.allclose(zero_shot.result.probs, probs)
    assert not np.allclose(attention.heatmap.grid, grid)
