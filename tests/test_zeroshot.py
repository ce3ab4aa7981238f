"""Zero-shot classification: parity with transformers' pipeline, ensembles, caching, bad input, the app."""

import datetime
import io

import numpy as np
import pytest
import torch
from PIL import Image

import clipviz
from clipviz import zeroshot
from clipviz.zeroshot import classify, compare, label_embeds

# different token lengths (padding matters), all within the tiny models' 32-token context
LABELS = ["red circle", "blue square", "蓝色正方形", "yellow star"]


# ---------------------------------------------------------------- parity with transformers
@pytest.fixture
def zero_shot_pipeline(tiny_models, family):
    """transformers' own zero-shot pipeline over a fresh copy of the tiny model (its default attention)."""
    from transformers import AutoImageProcessor, AutoModel, AutoTokenizer, pipeline

    path = tiny_models[family]
    return pipeline(
        "zero-shot-image-classification",
        model=AutoModel.from_pretrained(path).eval(),
        tokenizer=AutoTokenizer.from_pretrained(path),
        image_processor=AutoImageProcessor.from_pretrained(path, backend="pil"),  # the processor clipviz loads
    )


@pytest.mark.parametrize("template", ["This is a photo of {}.", "{}的照片。"])
def test_probabilities_equal_the_pipeline(tiny_hooked, family, zero_shot_pipeline, photos, template):
    # The pipeline formats hypothesis_template with each label and pads the batch (padding=True); it
    # uses padding="max_length" only for SigLIP, so nothing special is needed for these families.
    model = tiny_hooked[family]
    result = classify(model, photos, LABELS, templates=template)
    for row, photo in enumerate(photos):
        outputs = zero_shot_pipeline(photo, candidate_labels=LABELS, hypothesis_template=template)
        expected = {item["label"]: item["score"] for item in outputs}
        got = dict(zip(result.labels, result.probs[row]))
        assert set(got) == set(expected)
        for label in LABELS:
            assert got[label] == pytest.approx(expected[label], abs=1e-4), (family, label)


# ---------------------------------------------------------------- ensembles and caching
def test_ensemble_is_the_renormalised_mean_of_unit_text_embeddings(tiny_hooked, family):
    model = tiny_hooked[family]
    templates = ["a photo of a {}.", "a drawing of a {}.", "{}"]
    got = label_embeds(model, LABELS[:2], templates)
    for i, label in enumerate(LABELS[:2]):
        unit = model.text_embeds([t.replace("{}", label) for t in templates])
        mean = unit.mean(dim=0)
        torch.testing.assert_close(got[i], mean / mean.norm(), atol=1e-6, rtol=0)
    torch.testing.assert_close(got.norm(dim=-1), torch.ones(2), atol=1e-6, rtol=0)


def test_single_template_ensemble_equals_plain_logits(tiny_hooked, family, photos):
    model = tiny_hooked[family]
    result = classify(model, photos, LABELS, templates="a photo of a {}.")
    logits = model.logits(photos, [f"a photo of a {label}." for label in LABELS])
    np.testing.assert_allclose(result.logits, logits.numpy(), atol=1e-4)
    np.testing.assert_allclose(result.probs.sum(axis=1), 1.0, atol=1e-12)


def test_label_embeddings_are_computed_once_and_refreshed_when_weights_change(tiny_models, monkeypatch):
    model = clipviz.load(tiny_models["clip"])  # a private copy: this test changes its weights
    calls = []
    original = model.text_embeds
    monkeypatch.setattr(model, "text_embeds",
                        lambda texts, batch_size=256: calls.append(len(texts)) or original(texts, batch_size))
    first = label_embeds(model, LABELS, "ensemble")
    again = label_embeds(model, list(LABELS), "ensemble")
    assert calls == [len(LABELS) * 10] and again is first
    label_embeds(model, LABELS, "single")  # other templates: other prompts
    assert calls == [len(LABELS) * 10, len(LABELS)]
    with torch.no_grad():
        weight = model.model.text_projection.weight
        # in place, as an optimiser does
        weight.add_(0.5 * torch.randn(weight.shape, generator=torch.Generator().manual_seed(0)))
    changed = label_embeds(model, LABELS, "ensemble")
    assert len(calls) == 3 and not torch.allclose(changed, first)


def test_default_language_follows_the_family(tiny_hooked, photos):
    assert zeroshot.default_language(tiny_hooked["clip"]) == "en"
    assert zeroshot.default_language(tiny_hooked["altclip"]) == "en"
    assert zeroshot.default_language(tiny_hooked["chinese_clip"]) == "zh"
    chinese = classify(tiny_hooked["chinese_clip"], photos[0], ["红色圆形", "蓝色正方形"])
    assert chinese.lang == "zh" and chinese.templates == zeroshot.TEMPLATES["zh"]["ensemble"]
    assert chinese.templates[0] == "{}的照片。"  # Chinese-CLIP's prompt style: label first
    overridden = classify(tiny_hooked["chinese_clip"], photos[0], ["red circle", "blue square"], lang="en")
    assert overridden.templates == zeroshot.TEMPLATES["en"]["ensemble"]


def test_templates_every_way_a_user_passes_them(tiny_hooked, photos):
    model = tiny_hooked["clip"]
    assert classify(model, photos[0], LABELS, templates="single").templates == ("a photo of a {}.",)
    assert classify(model, photos[0], LABELS, templates="itap of a {}").templates == ("itap of a {}",)
    own = ["a {} in {braces}", "{}!"]  # other braces are left alone
    assert classify(model, photos[0], LABELS, templates=own).templates == tuple(own)
    assert zeroshot.prompts_for(["cat"], own) == ["a cat in {braces}", "cat!"]
    for lang in zeroshot.LANGUAGES:
        for name, templates in zeroshot.template_sets(lang).items():
            assert templates and all("{}" in t for t in templates), (lang, name)
        assert len(zeroshot.TEMPLATES[lang]["ensemble"]) == 10
    with pytest.raises(ValueError, match="no '\\{\\}'"):
        classify(model, photos[0], LABELS, templates=["a photo of a thing"])
    with pytest.raises(ValueError, match="neither a template"):
        classify(model, photos[0], LABELS, templates="ensembel")
    with pytest.raises(ValueError, match="no templates for language 'xx'"):
        classify(model, photos[0], LABELS, lang="xx")
    # an unknown language is fine with the user's own templates
    assert classify(model, photos[0], LABELS, templates="{} (xx)", lang="xx").lang == "xx"


# ---------------------------------------------------------------- the result
def test_result_top_html_and_plot(tiny_hooked, photos):
    model = tiny_hooked["clip"]
    many = classify(model, photos, LABELS, templates="single")
    assert many.probs.shape == (3, 4) and many.logits.shape == (3, 4) and len(many) == 3
    tops = many.top(2)
    assert len(tops) == 3 and all(len(t) == 2 and t[0][1] >= t[1][1] for t in tops)
    assert many.top(1, image=1)[0][0] == many.predictions[1]
    one = classify(model, photos[0], LABELS)
    assert isinstance(one.top(3)[0], tuple) and len(one.top(99)) == len(LABELS)
    page = many._repr_html_()
    assert page == many._repr_html_()  # deterministic: no random ids
    assert "<script" not in page and "http" not in page and "<table" in page and "data:image/png" in page
    assert all(f"{100 * p:.1f}%" in page for p in many.probs[:, :].max(axis=1))
    tricky = classify(model, photos[0], ["<b>bold</b> & co", "plain"])._repr_html_()
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; co" in tricky and "<b>bold</b>" not in tricky
    figure = one.plot(k=3)
    image_ax, bars_ax = figure.axes
    assert len(bars_ax.patches) == 3 and [t.get_text() for t in bars_ax.get_yticklabels()][-1] == one.predictions[0]
    import matplotlib.pyplot as plt

    plt.close(figure)


def test_compare_models_and_languages(tiny_hooked, photos):
    import matplotlib.pyplot as plt

    models = [tiny_hooked["clip"], tiny_hooked["altclip"]]
    by_model = compare(models, photos[:2], ["red circle", "blue square"])
    assert len(by_model.results) == 2
    assert all(r.probs.shape == (2, 2) for r in by_model.results.values())
    languages = {"en": ["red circle", "blue square"], "zh": ["红色圆形", "蓝色正方形"],
                 "fr": ["cercle rouge", "carré bleu"]}
    by_language = compare({"alt": tiny_hooked["altclip"]}, photos[:2], languages)
    assert by_language.names == ["alt · en", "alt · zh", "alt · fr"]
    assert by_language.results["alt · zh"].templates == zeroshot.TEMPLATES["zh"]["ensemble"]
    assert set(by_language.accuracy([0, 1])) == set(by_language.names)
    figure = by_language.plot(k=2)
    assert len(figure.axes) == 4  # 2 images x (image, bars)
    assert len(figure.axes[1].patches) == 2 * 3  # 2 classes x 3 languages
    plt.close(figure)
    with pytest.raises(ValueError, match="same classes"):
        compare(models, photos[:1], {"en": ["a", "b"], "zh": ["甲"]})


# ---------------------------------------------------------------- bad input (the list)
def test_bad_labels_get_clear_messages(tiny_hooked, photos):
    model = tiny_hooked["clip"]
    with pytest.raises(ValueError, match="no labels were given"):
        classify(model, photos, [])
    with pytest.raises(ValueError, match="position 1 .*whitespace"):
        classify(model, photos, ["cat", "   ", "dog"])
    with pytest.raises(ValueError, match="'cat' appears twice \\(positions 0 and 2\\).*remove the repeat"):
        classify(model, photos, ["cat", "dog", "cat "])
    with pytest.raises(TypeError, match="parse_labels"):
        classify(model, photos, "cat, dog")
    with pytest.raises(TypeError, match="label 1 is a int"):
        classify(model, photos, ["cat", 3])
    assert zeroshot.parse_labels(" cat, dog ，红色圆形、 ,\n蓝色 ") == ["cat", "dog", "红色圆形", "蓝色"]
    assert classify(model, photos[0], ["  cat ", "dog"]).labels == ["cat", "dog"]  # stripped


def test_a_thousand_labels_in_batches(tiny_hooked, photos):
    model = tiny_hooked["clip"]
    labels = [f"class {i}" for i in range(1000)]
    calls = []
    original = model.text_features
    model.text_features = lambda tokens: calls.append(tokens["input_ids"].shape[0]) or original(tokens)
    try:
        result = classify(model, photos, labels, templates="{}", text_batch_size=256)
    finally:
        del model.text_features
    assert calls == [256, 256, 256, 232]
    assert result.probs.shape == (3, 1000)
    np.testing.assert_allclose(result.probs.sum(axis=1), 1.0, atol=1e-12)
    assert len(result.top(5)[0]) == 5


# ---------------------------------------------------------------- the app, headless
def _upload(name: str, content: bytes) -> tuple:
    return ({"name": name, "type": "", "size": len(content), "content": memoryview(content),
             "last_modified": datetime.datetime(2026, 1, 1)},)


def test_app_driven_by_its_widgets_shows_the_right_result(tiny_hooked, photos):
    from clipviz.widgets import ZeroShotApp

    model = tiny_hooked["clip"]
    app = ZeroShotApp(model, images=photos, labels="red circle, blue square")
    assert app.n_updates == 1 and app.last_error is None and app.result.labels == ["red circle", "blue square"]

    app._labels.value = "red circle, 蓝色正方形, a yellow star"  # what Enter in the text box does
    assert app.n_updates == 2
    expected = classify(model, photos[0], ["red circle", "蓝色正方形", "a yellow star"], templates="ensemble")
    np.testing.assert_allclose(app.result.probs, expected.probs, atol=1e-6)
    best = expected.predictions[0]
    assert best in app._status.value and best in app._table.value
    assert bytes(app._chart.value).startswith(b"\x89PNG")

    app._picker.value = 2  # another gallery image
    assert app.n_updates == 3
    np.testing.assert_allclose(app.result.probs, classify(model, photos[2], app.result.labels).probs, atol=1e-6)
    app._gallery.children[1].children[1].click()  # the button under thumbnail 1
    assert app.state.image_index == 1 and app.n_updates == 4

    app._templates.value = "single"
    assert app.n_updates == 5 and app.result.templates == ("a photo of a {}.",)
    app._lang.value = "zh"  # new template options and a new classification: still one update
    assert app.n_updates == 6 and app.result.lang == "zh" and app.result.templates == ("{}的照片。",)

    png = io.BytesIO()
    Image.fromarray(np.full((30, 20, 3), 200, np.uint8)).save(png, format="PNG")
    app._upload.value = _upload("mine.png", png.getvalue())
    assert app.n_updates == 7 and app.state.image_index == len(photos) and app.names[-1].endswith("mine.png")
    assert app.last_error is None


def test_app_shows_bad_input_inside_itself(tiny_hooked, photos):
    from clipviz.widgets import ZeroShotApp

    app = ZeroShotApp(tiny_hooked["chinese_clip"], images=photos[:2], labels="")
    assert app.result is None and "at least one label" in app.last_error
    assert "at least one label" in app._errors.outputs[0]["text"]
    app._labels.value = "红色圆形, 蓝色正方形"
    assert app.last_error is None and app.result.lang == "zh" and app._errors.outputs == ()
    app._labels.value = " , ，"
    assert "at least one label" in app.last_error and app.result is None and bytes(app._chart.value) == b""
    app._labels.value = "cat, dog, cat"
    assert "“cat” is typed more than once" in app.last_error
    app._labels.value = "cat, dog"
    updates = app.n_updates
    app._upload.value = _upload("notes.txt", b"these are my notes, not a picture")
    assert "“notes.txt” is not an image" in app.last_error and "notes.txt" in app._errors.outputs[0]["text"]
    assert app.n_updates == updates and app.result is not None  # the previous answer stays
    app._upload.value = _upload("empty.png", b"")
    assert "empty" in app.last_error
    app.image = np.zeros((12, 12, 3), np.uint8)  # linked from another app (e.g. EmbeddingApp.selected_image)
    assert app.last_error is None and app.state.image_index == 2 and app.n_updates == updates + 1


def test_app_default_gallery_is_the_shapes_world(tiny_hooked):
    from clipviz.data import shapes
    from clipviz.widgets import ZeroShotApp

    app = ZeroShotApp(tiny_hooked["chinese_clip"])
    assert len(app.images) == 6 and app.result.labels == shapes.class_labels("zh")


# ---------------------------------------------------------------- the shapes world (trained models)
def _bundled(name):
    from clipviz import zoo

    # a missing bundled model is a failure, not a skip: every default in clipviz depends on them
    assert name in zoo.available(), f"bundled model {name!r} is missing from clipviz/zoo/models"
    return clipviz.load(name)


@pytest.mark.parametrize("name", ["shapes-clip", "shapes-chinese-clip", "shapes-altclip"])
def test_ensemble_at_least_as_accurate_as_single_template(name):
    """The bundled models' default ensemble (the shapes world's own phrasings) against the single
    template, and against the average of its members alone. CLIP's photo-style ensemble is printed too: the bundled
    models never saw words like "photo", which is why they default to the "shapes" set."""
    from clipviz.data import shapes

    model = _bundled(name)
    lang = zeroshot.default_language(model)
    assert zeroshot.default_template_set(model) == "shapes"
    scenes = shapes.sample(300, seed=11, objects=1)  # seeds < 10**6 were never trained on
    truth = np.asarray([shapes.CLASSES.index((s.objects[0].color, s.objects[0].shape)) for s in scenes])
    labels = shapes.class_labels(lang)
    image_embeds = model.image_embeds([s.image for s in scenes], batch_size=100)

    def accuracy(templates) -> float:
        _, probs = zeroshot.scores(model, image_embeds, label_embeds(model, labels, templates, lang=lang))
        return float((probs.argmax(axis=1) == truth).mean())

    sets = zeroshot.template_sets(lang)
    figures = {set_name: accuracy(set_name) for set_name in ("single", "ensemble", "shapes")}
    members = {template: accuracy(template) for template in sets["shapes"]}
    print(f"\n{name} ({lang}), zero-shot top-1 over 30 classes, 300 held-out scenes: "
          + ", ".join(f"{k} {v:.1%}" for k, v in figures.items())
          + "; shapes members alone: " + ", ".join(f"{t!r} {v:.1%}" for t, v in members.items()))
    assert figures["shapes"] >= figures["single"]  # the model's default ensemble vs the single template
    # and averaging does not cost accuracy against its members alone: the phrasings are near-synonyms
    # to the model, so allow the noise of one scene in 300
    assert figures["shapes"] >= np.mean(list(members.values())) - 1 / len(scenes)


def test_default_template_set_follows_the_checkpoint_marker_not_the_name(tiny_models, tmp_path):
    """The config's clipviz_template_set picks the default, however the model is loaded or named."""
    import json
    import shutil

    from clipviz import zoo

    bundled = clipviz.load(zoo.path("shapes-clip"))  # a directory, not the bundled name
    assert zeroshot.default_template_set(bundled) == "shapes"
    assert classify(bundled, Image.new("RGB", (64, 64)), LABELS).templates == zeroshot.TEMPLATES["en"]["shapes"]
    assert zeroshot.default_template_set(clipviz.load(tiny_models["clip"])) == "ensemble"
    marked = shutil.copytree(tiny_models["clip"], tmp_path / "not-a-shapes-name")
    config = json.loads((marked / "config.json").read_text())
    (marked / "config.json").write_text(json.dumps({**config, zeroshot.TEMPLATE_SET_KEY: "single"}))
    assert zeroshot.default_template_set(clipviz.load(marked)) == "single"
