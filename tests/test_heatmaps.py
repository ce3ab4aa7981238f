"""Heatmaps: parity with reference computations, normalisation, geometry, bad input, quality."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import clipviz
from clipviz import heatmap_eval
from clipviz.heatmaps import (
    METHODS,
    Heatmap,
    capture_attention,
    heatmap,
    heatmap_from_capture,
    layer_head_grids,
)
from clipviz.images import CropGeometry, ImageLoadError

TEXT = "a photo of a red circle"
TOL = dict(rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def photo():
    """A non-square random photo (wider than tall), deterministic."""
    rng = np.random.default_rng(1)
    return Image.fromarray(rng.integers(0, 256, (36, 50, 3), dtype=np.uint8))


_REFERENCES: dict = {}


def _eager_reference(path, hooked, photo, text):
    """The model's own eager attentions (vision and text) and ∂logit/∂A, straight from transformers.

    Computed once per (model, text) for the module: the photo fixture is module-scoped.
    """
    key = (str(path), text)
    if key not in _REFERENCES:
        _REFERENCES[key] = _compute_eager_reference(path, hooked, photo, text)
    return _REFERENCES[key]


def _compute_eager_reference(path, hooked, photo, text):
    from transformers import AutoModel

    model = AutoModel.from_pretrained(path, attn_implementation="eager").eval()
    pixels = hooked.pixel_values([photo])
    tokens = hooked.tokenize([text])
    out = model(pixel_values=pixels, **tokens, output_attentions=True)
    vision = out.vision_model_output.attentions
    text_attn = out.text_model_output.attentions
    assert len(vision) == hooked.n_layers("vision") and len(text_attn) == hooked.n_layers("text")
    logit = out.logits_per_image[0, 0]
    grads = torch.autograd.grad(logit, list(vision) + list(text_attn))
    as64 = lambda ts: [t[0].detach().double() for t in ts]  # noqa: E731
    return (as64(vision), as64(grads[: len(vision)]), as64(text_attn), as64(grads[len(vision):]),
            float(logit.detach()), tokens)


def _reference_rollout(attentions, start, fusion):
    size = attentions[0].shape[-1]
    eye = torch.eye(size, dtype=torch.float64)
    joint = eye
    for a in attentions[start:]:
        fused = {"mean": a.mean(0), "max": a.max(0).values, "min": a.min(0).values}[fusion]
        a_hat = 0.5 * fused + 0.5 * eye
        a_hat = a_hat / a_hat.sum(dim=-1, keepdim=True)
        joint = a_hat @ joint
    return joint


def _reference_relevance(attentions, grads, start):
    size = attentions[0].shape[-1]
    relevance = torch.eye(size, dtype=torch.float64)
    for a, g in zip(attentions[start:], grads[start:]):
        cam = (g * a).clamp(min=0).mean(dim=0)
        relevance = relevance + cam @ relevance
    return relevance


# ------------------------------------------------------------------------------ parity
@pytest.mark.parametrize("fusion", ["mean", "max", "min"])
@pytest.mark.parametrize("start_layer", [0, 1])
def test_rollout_equals_reference_from_eager_attentions(tiny_models, tiny_hooked, family, photo, fusion, start_layer):
    hooked = tiny_hooked[family]
    attentions, *_ = _eager_reference(tiny_models[family], hooked, photo, TEXT)
    expected = _reference_rollout(attentions, start_layer, fusion)[0, 1:].numpy()
    hm = heatmap(hooked, photo, method="rollout", start_layer=start_layer, head_fusion=fusion)
    np.testing.assert_allclose(hm.raw.ravel(), expected, **TOL)


@pytest.mark.parametrize("start_layer", [0, -1])
def test_relevance_equals_reference_from_eager_gradients(tiny_models, tiny_hooked, family, photo, start_layer):
    hooked = tiny_hooked[family]
    attentions, grads, text_attn, text_grads, logit, tokens = _eager_reference(tiny_models[family], hooked, photo, TEXT)
    start = start_layer % len(attentions)
    expected = _reference_relevance(attentions, grads, start)[0, 1:].numpy()
    hm = heatmap(hooked, photo, TEXT, method="relevance", start_layer=start_layer)
    np.testing.assert_allclose(hm.raw.ravel(), expected, **TOL)
    assert hm.logit == pytest.approx(logit, rel=1e-5)

    # text side: the pooled token's row (EOS for CLIP, [CLS] otherwise) over the content tokens
    ids = tokens["input_ids"][0]
    eos = hooked.processor.tokenizer.eos_token_id
    pooled = int((ids == eos).nonzero()[0, 0]) if family == "clip" else 0  # CLIP pools at the first EOS
    special = set(hooked.processor.tokenizer.all_special_ids)
    content = [i for i in range(len(ids)) if int(ids[i]) not in special]
    row = _reference_relevance(text_attn, text_grads, 0)[pooled, content].numpy()
    np.testing.assert_allclose(hm.token_scores, row / row.max(), **TOL)
    assert len(hm.tokens) == len(content)
    assert "".join(hm.tokens).replace(" ", "") == TEXT.replace(" ", "")


def test_attention_is_the_cls_row_of_one_layer(tiny_models, tiny_hooked, photo):
    hooked = tiny_hooked["clip"]
    attentions, *_ = _eager_reference(tiny_models["clip"], hooked, photo, TEXT)
    for layer, head in [(0, 2), (-1, "mean")]:
        a = attentions[layer][:, 0, 1:]
        expected = a.mean(0) if head == "mean" else a[head]
        hm = heatmap(hooked, photo, method="attention", layer=layer, head=head)
        np.testing.assert_allclose(hm.raw.ravel(), expected.numpy(), **TOL)


def test_grad_eclip_matches_its_formula(tiny_hooked, photo):
    """Grad-ECLIP (Zhao et al. 2024) recomputed here from the last block's own modules."""
    hooked = tiny_hooked["clip"]
    layer = hooked.model.vision_model.encoder.layers[-1]
    kept = {}
    pixels = hooked.pixel_values([photo])
    with torch.enable_grad(), hooked.hooks([
        ("vision.blocks.1.hook_resid_pre", lambda t, hook: kept.__setitem__("pre", t)),
        ("vision.blocks.1.attn.hook_out", lambda t, hook: kept.__setitem__("out", t)),
    ]):
        text_embed = hooked.text_features(hooked.tokenize([TEXT]))
        logit = hooked.logit_scale * (hooked.image_features(pixels) * text_embed).sum()
        (grad_out,) = torch.autograd.grad(logit, [kept["out"]])
    with torch.no_grad():
        x = layer.layer_norm1(kept["pre"])[0]
        q, k, v = layer.self_attn.q_proj(x), layer.self_attn.k_proj(x), layer.self_attn.v_proj(x)
        w = grad_out[0, 0] @ layer.self_attn.out_proj.weight
        cos = torch.nn.functional.cosine_similarity(q[:1], k[1:], dim=-1)
        lam = (cos - cos.min()) / (cos.max() - cos.min())
        expected = torch.relu((w * v[1:]).sum(-1) * lam).numpy()
    hm = heatmap(hooked, photo, TEXT, method="grad_eclip")
    np.testing.assert_allclose(hm.raw.ravel(), expected, rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------------------ normalisation
@pytest.mark.parametrize("method", METHODS)
def test_maps_are_scaled_to_unit_interval(tiny_hooked, family, photo, method):
    text = TEXT if method in ("relevance", "grad_eclip") else None
    hm = heatmap(tiny_hooked[family], photo, text, method=method)
    assert hm.grid.shape == tiny_hooked[family].grid_size
    assert hm.grid.min() == 0.0 and hm.grid.max() == pytest.approx(1.0)
    expected = (hm.raw - hm.raw.min()) / (hm.raw.max() - hm.raw.min())
    np.testing.assert_allclose(hm.grid, expected, atol=1e-12)
    inside = hm.image_map[~np.isnan(hm.image_map)]
    assert inside.min() >= 0.0 and inside.max() <= 1.0 + 1e-12
    if method == "relevance":
        assert hm.token_scores.max() == pytest.approx(1.0) and hm.token_scores.min() >= 0.0


def test_constant_map_normalises_to_zeros():
    from clipviz.heatmaps import normalise

    assert np.array_equal(normalise(np.full((3, 3), 0.7)), np.zeros((3, 3)))


# ------------------------------------------------------------------------------ geometry
@pytest.fixture(scope="module")
def squashing_model(tiny_models):
    """Chinese-CLIP as on the Hub: resize to a square (aspect not kept), no centre crop."""
    hooked = clipviz.load(tiny_models["chinese_clip"])
    processor = hooked.processor.image_processor
    processor.size = {"height": 32, "width": 32}
    processor.do_center_crop = False
    return hooked


@pytest.mark.parametrize("processing", ["resize+centre-crop", "squash"])
@pytest.mark.parametrize("size", [(90, 60), (48, 100)])
def test_image_map_lands_on_the_object_in_a_non_square_image(tiny_hooked, squashing_model, size, processing):
    """A grid built from what the processor actually shows the model, mapped back, peaks on the object."""
    hooked = tiny_hooked["clip"] if processing != "squash" else squashing_model
    width, height = size
    pixels = np.full((height, width, 3), 200, dtype=np.uint8)
    # the object: a dark square right of the centre, inside the centre crop
    cx, cy = width // 2 + min(width, height) // 5, height // 2 - min(width, height) // 6
    r = max(2, min(width, height) // 10)
    pixels[cy - r : cy + r, cx - r : cx + r] = 0
    image = Image.fromarray(pixels)
    crop = hooked.pixel_values([image])[0].mean(0).numpy()  # [S, S], what the model sees
    darkness = crop.max() - crop
    gh, gw = hooked.grid_size
    p = crop.shape[0] // gh
    grid = darkness.reshape(gh, p, gw, p).mean(axis=(1, 3))
    geometry = CropGeometry.from_processor(hooked.processor, image.size)
    hm = Heatmap.from_grid(grid / grid.max(), image, geometry)
    peak_x, peak_y = hm.peak
    assert abs(peak_x - cx) <= geometry.crop_box[2] / gw and abs(peak_y - cy) <= height / gh
    assert cx - r - 1 <= peak_x <= cx + r and cy - r - 1 <= peak_y <= cy + r
    # NaN exactly outside the crop, finite inside
    x0, y0, x1, y1 = geometry.crop_box
    xs, ys = np.arange(width) + 0.5, np.arange(height) + 0.5
    inside = ((ys >= y0) & (ys <= y1))[:, None] & ((xs >= x0) & (xs <= x1))[None, :]
    assert np.array_equal(~np.isnan(hm.image_map), inside)
    if processing == "squash":
        assert inside.all()
    # the overlay is the original's size and is coloured where the map is hot, untouched outside the crop
    overlay = np.asarray(hm.overlay(alpha=0.6)).astype(int)
    assert overlay.shape == (height, width, 3)
    assert np.array_equal(overlay[~inside], pixels[~inside])
    assert (np.abs(overlay[peak_y, peak_x] - pixels[peak_y, peak_x]).sum()) > 0


def test_heatmap_grid_shape_follows_the_model(tiny_hooked, photo):
    hm = heatmap(tiny_hooked["altclip"], photo, method="rollout")
    assert hm.grid.shape == (4, 4) and hm.image_map.shape == (photo.size[1], photo.size[0])


@pytest.mark.parametrize("image_size, patch, grid", [(28, 4, 7), (56, 4, 14), (64, 4, 16), (96, 4, 24)])
def test_every_published_patch_grid(tmp_path, image_size, patch, grid):
    """The grids of B/32 (7×7), B/16 (14×14), L/14 (16×16) and L/14@336 (24×24), on small random towers."""
    from clipviz.testing import CORPUS, random_checkpoint

    vision = dict(hidden_size=16, intermediate_size=16, num_hidden_layers=2, num_attention_heads=2,
                  image_size=image_size, patch_size=patch)
    random_checkpoint(tmp_path, "clip", vision=vision, projection_dim=8, corpus=CORPUS, logit_scale=None)
    model = clipviz.load(tmp_path)
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 256, (75, 130, 3), dtype=np.uint8))
    for method in METHODS:
        hm = heatmap(model, photo, TEXT if method in ("relevance", "grad_eclip") else None, method=method)
        assert hm.grid.shape == (grid, grid) and hm.image_map.shape == (75, 130)
        assert np.isnan(hm.image_map[:, 0]).all() and not np.isnan(hm.image_map[:, 65]).any()


# ------------------------------------------------------------------------------ sinks
def test_sinks_are_found_from_residual_norms(tiny_hooked, photo):
    """A patch given a huge residual norm (as registers grow, Darcet et al. 2024) is flagged and can be left out."""
    hooked = tiny_hooked["clip"]
    sink = 1 + 6  # token of patch (1, 2)

    def grow_a_register(resid, *, hook):
        resid = resid.clone()
        resid[:, sink] *= 50.0
        return resid

    with hooked.hooks([("vision.blocks.1.hook_resid_post", grow_a_register)]):
        plain = heatmap(hooked, photo, method="rollout")
        cleaned = heatmap(hooked, photo, method="rollout", exclude_sinks=True)
    assert plain.sinks[1, 2] and plain.sinks.sum() == 1
    assert cleaned.grid[1, 2] == 0.0 and cleaned.grid.max() == 1.0
    np.testing.assert_allclose(plain.raw, cleaned.raw)  # the method's values are kept; only the display changes
    assert not heatmap(hooked, photo, method="rollout").sinks.any()


def test_sinks_are_detected_and_can_be_excluded(tiny_hooked, photo):
    hooked = tiny_hooked["clip"]
    capture = capture_attention(hooked, photo)
    capture.patch_norms = np.ones(16)
    capture.patch_norms[5] = 10.0  # a high-norm "register" patch
    pattern = capture.patterns[1].copy()
    pattern[:, 0, :] = 0.01
    pattern[:, 0, 1 + 5] = 0.8  # it soaks up the CLS attention
    capture.patterns[1] = pattern
    plain = heatmap_from_capture(capture, "attention")
    assert plain.sinks[1, 1] and plain.sinks.sum() == 1
    assert plain.grid[1, 1] == 1.0
    cleaned = heatmap_from_capture(capture, "attention", exclude_sinks=True)
    assert cleaned.grid[1, 1] == 0.0
    assert "sink" in repr(cleaned)


# ------------------------------------------------------------------------------ bad input
def test_text_for_a_text_free_method_warns(tiny_hooked, photo):
    with pytest.warns(UserWarning, match="does not depend on the text"):
        hm = heatmap(tiny_hooked["clip"], photo, TEXT, method="attention")
    assert hm.text is None


def test_text_methods_need_text(tiny_hooked, photo):
    with pytest.raises(ValueError, match="pass text="):
        heatmap(tiny_hooked["clip"], photo, method="relevance")


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(method="attention", layer=2), r"layer=2 is out of range.*0\.\.1"),
        (dict(method="attention", layer=-3), r"layer=-3 is out of range.*-2\.\.-1"),
        (dict(method="attention", head=4), r"head=4 is out of range.*0\.\.3.*'mean'"),
        (dict(method="rollout", start_layer=5), r"start_layer=5 is out of range.*0\.\.1"),
        (dict(method="rollout", head_fusion="median"), "head_fusion must be one of mean, max, min"),
        (dict(method="gradcam"), "unknown heatmap method 'gradcam'"),
    ],
)
def test_out_of_range_options_name_the_valid_range(tiny_hooked, photo, options, message):
    with pytest.raises(ValueError, match=message):
        heatmap(tiny_hooked["clip"], photo, **options)


def test_unknown_option_lists_the_methods_options(tiny_hooked, photo):
    with pytest.raises(TypeError, match="has no option 'heads'.*layer=-1, head='mean'"):
        heatmap(tiny_hooked["clip"], photo, method="attention", heads=1)


def test_unreadable_images_give_clear_errors(tiny_hooked, tmp_path):
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("this is not a PNG")
    with pytest.raises(ImageLoadError, match="notes.png"):
        heatmap(tiny_hooked["clip"], not_an_image, method="attention")
    with pytest.raises(ImageLoadError, match="shape"):
        heatmap(tiny_hooked["clip"], np.zeros((4, 4, 7), dtype=np.uint8), method="attention")
    with pytest.raises(ImageLoadError, match="not found"):
        heatmap(tiny_hooked["clip"], tmp_path / "missing.jpg", method="attention")


def test_processor_failures_are_reported_as_image_errors(tiny_hooked, photo, monkeypatch):
    hooked = tiny_hooked["clip"]

    def broken(images):
        raise RuntimeError("boom")

    monkeypatch.setattr(hooked, "pixel_values", broken)
    with pytest.raises(ImageLoadError, match="image processor could not read this 50x36 image"):
        heatmap(hooked, photo, method="attention")


# ------------------------------------------------------------------------------ rendering
def test_rich_display_and_plot(tiny_hooked, photo):
    import matplotlib

    matplotlib.use("Agg")
    hm = heatmap(tiny_hooked["chinese_clip"], photo, "蓝色正方形", method="relevance")
    first, second = hm._repr_html_(), hm._repr_html_()
    assert first == second and "data:image/png;base64," in first and "<span" in first
    ax = hm.plot(alpha=0.3)
    assert ax.get_title().startswith("relevance")
    grids = layer_head_grids(capture_attention(tiny_hooked["clip"], photo))
    assert grids.shape == (2, 5, 4, 4)
    from clipviz.plotting.heatmaps import plot_layer_head_grid, plot_token_scores

    fig = plot_layer_head_grid(grids)
    assert len(fig.axes) == 10
    plot_token_scores(hm)


# ------------------------------------------------------------------------------ evaluation
def test_pointing_game_and_energy_in_box(tiny_hooked, photo):
    grid = np.zeros((4, 4))
    grid[1, 2] = 1.0
    geometry = CropGeometry.from_processor(tiny_hooked["clip"].processor, photo.size)
    hm = Heatmap.from_grid(grid, photo, geometry)
    x0, y0, x1, y1 = geometry.crop_box
    cell_w, cell_h = (x1 - x0) / 4, (y1 - y0) / 4
    box = (x0 + 2 * cell_w, y0 + 1 * cell_h, x0 + 3 * cell_w, y0 + 2 * cell_h)
    assert heatmap_eval.pointing_game(hm, box)
    assert not heatmap_eval.pointing_game(hm, (0, 0, 5, 5))
    energy = heatmap_eval.energy_in_box(hm, box)
    assert 0.2 < energy <= 1.0
    assert heatmap_eval.energy_in_box(hm, (0, 0, photo.size[0], photo.size[1])) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="empty"):
        heatmap_eval.pointing_game(hm, (5, 5, 5, 9))


def test_deletion_and_insertion_curves(tiny_hooked, photo):
    hooked = tiny_hooked["clip"]
    hm = heatmap(hooked, photo, TEXT, method="relevance")
    deletion = heatmap_eval.deletion_curve(hooked, hm)
    assert deletion.fractions[0] == 0 and deletion.fractions[-1] == 1 and len(deletion.fractions) == 17
    full = float(hooked.logits([photo], [TEXT])[0, 0])
    assert deletion.scores[0] == pytest.approx(full, abs=1e-4)
    assert deletion.scores[-1] == pytest.approx(deletion.random_scores[-1], abs=1e-5)  # all gone either way
    insertion = heatmap_eval.insertion_curve(hooked, hm, steps=4)
    assert len(insertion.fractions) == 5 and insertion.scores[-1] == pytest.approx(full, abs=1e-4)
    assert np.isfinite([deletion.auc, deletion.random_auc, insertion.auc]).all()
    with pytest.raises(ValueError, match="pass text="):
        heatmap_eval.deletion_curve(hooked, heatmap(hooked, photo, method="rollout"))


# ------------------------------------------------------------------------------ quality (bundled models)
def _bundled(name):
    from clipviz import zoo

    if name not in zoo.available():
        pytest.fail(f"bundled model {name} is missing from clipviz/zoo/models (python -m clipviz.zoo.train)")
    return clipviz.load(name)


@pytest.fixture
def one_thread():
    """Small per-scene ops stall with several threads on a shared CPU; one is several times faster."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name", ["shapes-clip", "shapes-chinese-clip", "shapes-altclip"])
def test_relevance_points_at_the_named_object(name, one_thread):
    model = _bundled(name)
    queries = heatmap_eval.shapes_queries(100)
    score = heatmap_eval.evaluate_localisation(model, queries, "relevance")
    # The named object alternates between the two objects of the scenes, so a map that ignores the
    # text points at it about half the time: last-layer attention, measured on the same scenes.
    text_blind = heatmap_eval.evaluate_localisation(model, queries, "attention")
    print(score, text_blind)
    assert score.pointing >= text_blind.pointing + 0.15, (score, text_blind)
    # Issue 14's 85% held for the plain-world models (85-87%); the curriculum-trained ones point
    # less well (72-80% on these 100 scenes, BENCHMARKS.md "Heatmaps"): a floor, not the target.
    assert score.pointing >= 0.65, score
    assert score.energy > 0.3, score


def test_erase_object_paints_only_that_object_in_the_background_colour():
    from clipviz.data import shapes

    scene = shapes.sample(1, seed=heatmap_eval.HELDOUT_SEED, objects=2)[0]
    named, other = scene.objects
    pixels = np.asarray(heatmap_eval.erase_object(scene, named))
    assert (pixels[~named.mask] == scene.pixels[~named.mask]).all()  # the other object and the background kept
    assert (pixels[other.mask] == scene.pixels[other.mask]).all()
    corner = scene.pixels[0, 0].astype(int)
    assert np.abs(pixels[named.mask].astype(int) - corner).max() <= 30  # background colour, within its jitter


def test_where_relevance_points_at_the_other_object_the_model_does_not_use_it(one_thread):
    """BENCHMARKS.md "Why widening cost localisation": the misses are the map's, not the model's.

    Erasing the named object costs the image–text logit in every scene, erasing the other object
    does not, also in the scenes whose relevance map peaks on the other object."""
    model = _bundled("shapes-clip")
    on_other = 0
    for i, (scene, named, other) in enumerate(heatmap_eval.named_objects(60)):
        text = named.describe("en", article=True)
        drop_named, drop_other = heatmap_eval.erasure_drops(model, scene, text, [named, other])
        assert drop_named > max(1.0, drop_other), (i, text)
        on_other += heatmap_eval.pointing_game(heatmap(model, scene.image, text), other.box)
    print(f"relevance peaked on the other object in {on_other} of 60 scenes")
    assert on_other >= 3  # 31 of 200 on the full benchmark


# ------------------------------------------------------------------------------ the method table
def test_every_method_is_one_record_used_everywhere(tiny_hooked, photo):
    """Options, text need and layers to capture come from the record: change the record, change them all."""
    from clipviz.heatmaps import HEATMAP_METHODS
    from clipviz.widgets.attention import AttentionApp

    model = tiny_hooked["clip"]
    app = AttentionApp(model, images=[photo], prompt=TEXT)
    assert [value for _, value in app._method.options] == list(HEATMAP_METHODS)
    for name, record in HEATMAP_METHODS.items():
        hm = heatmap(model, photo, TEXT if record.needs_text else None, method=name)
        assert hm.options == dict(record.options)
        assert (hm.text == TEXT) == record.needs_text
        assert (hm.token_scores is not None) == record.token_scores
        app.state.method = name
        assert app.last_error is None and app.heatmap.method == name
        assert app._layer.disabled == (record.slider is None)
        with pytest.raises(TypeError, match=f"method {name!r} has no option 'colour'"):
            heatmap(model, photo, TEXT if record.needs_text else None, method=name, colour=1)


def test_heatmap_from_grid_maps_a_new_grid_anew(tiny_hooked, photo):
    geometry = CropGeometry.from_processor(tiny_hooked["clip"].processor, photo.size)
    grid = np.zeros((4, 4))
    grid[0, 0] = 1.0
    hm = Heatmap.from_grid(grid, photo, geometry)
    first_peak = hm.peak
    moved = np.zeros((4, 4))
    moved[3, 3] = 1.0
    hm.grid = moved  # a new grid is mapped again, not served from the cache
    assert hm.peak != first_peak and hm.peak[0] > first_peak[0] and hm.peak[1] > first_peak[1]
    assert np.array_equal(hm.raw, grid) and hm.method == "custom"
