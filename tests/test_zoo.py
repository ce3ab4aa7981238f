"""The bundled-model toolkit: family tokenizers/processors round-trip like Hub checkpoints."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
from PIL import Image

from clipviz.zoo.tokenizers import (
    FAMILIES,
    build_processor,
    build_tokenizer,
    write_vocab_files,
)

CORPUS = [
    "a red circle", "a small blue square", "a big green triangle",
    "红色圆形", "蓝色正方形", "绿色三角形",
    "cercle rouge", "carré bleu", "círculo rojo", "roter Kreis",
] * 3

EXPECTED = {
    # family: (tokenizer class, processor class, image processor class, files besides tokenizer.json)
    "clip": ("CLIPTokenizer", "CLIPProcessor", "CLIPImageProcessorPil", {"vocab.json", "merges.txt"}),
    "chinese_clip": ("BertTokenizer", "ChineseCLIPProcessor", "ChineseCLIPImageProcessorPil", {"vocab.txt"}),
    "altclip": ("XLMRobertaTokenizer", "AltCLIPProcessor", "CLIPImageProcessorPil", set()),
}


@pytest.mark.parametrize("family", FAMILIES)
def test_tokenizer_and_processor_round_trip(family, tmp_path):
    from transformers import AutoProcessor, AutoTokenizer

    tokenizer = build_tokenizer(family, CORPUS, vocab_size=600, model_max_length=24)
    build_processor(family, tokenizer, image_size=64).save_pretrained(tmp_path)
    written = write_vocab_files(tokenizer, tmp_path)

    tok_cls, proc_cls, image_proc_cls, extra_files = EXPECTED[family]
    assert {os.path.basename(p) for p in written} == extra_files
    assert {"tokenizer.json", "tokenizer_config.json"} <= set(os.listdir(tmp_path))

    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    processor = AutoProcessor.from_pretrained(tmp_path)
    assert type(reloaded).__name__ == tok_cls
    assert type(processor).__name__ == proc_cls
    assert type(processor.image_processor).__name__ == image_proc_cls
    assert reloaded.model_max_length == 24
    for text in ["a red circle", "红色圆形", "carré bleu"]:
        assert reloaded(text)["input_ids"] == tokenizer(text)["input_ids"]

    # a non-square photo is resized on its short side, then centre-cropped to 64 x 64
    batch = processor(text=["red circle", "蓝色正方形"], images=[Image.new("RGB", (96, 64))],
                      padding=True, return_tensors="pt")
    assert tuple(batch["pixel_values"].shape) == (1, 3, 64, 64)
    assert batch["input_ids"].shape[0] == 2


def test_family_special_tokens():
    clip = build_tokenizer("clip", CORPUS)
    assert (clip.bos_token, clip.eos_token, clip.pad_token) == ("<|startoftext|>", "<|endoftext|>", "<|endoftext|>")
    assert clip.tokenize("Red circle") == ["red</w>", "circle</w>"]  # lower-cased, </w> suffix
    ids = clip("red")["input_ids"]
    assert ids[0] == clip.bos_token_id and ids[-1] == clip.eos_token_id

    bert = build_tokenizer("chinese_clip", CORPUS)
    assert bert.tokenize("红色圆形") == ["红", "色", "圆", "形"]  # one token per Chinese character
    assert bert.pad_token_id == 0 and bert.cls_token == "[CLS]" and bert.mask_token == "[MASK]"

    xlmr = build_tokenizer("altclip", CORPUS)
    assert [xlmr.convert_ids_to_tokens(i) for i in range(4)] == ["<s>", "<pad>", "</s>", "<unk>"]
    assert xlmr.convert_ids_to_tokens(len(xlmr) - 1) == "<mask>"


def test_unknown_family_is_a_clear_error():
    with pytest.raises(ValueError, match="clip, chinese_clip, altclip"):
        build_tokenizer("siglip", CORPUS)


# ---------------------------------------------------------------- the zoo directory


def test_zoo_path_and_error():
    from clipviz import zoo

    assert zoo.DEFAULT == "shapes-clip"
    for name in zoo.available():
        assert (zoo.path(name) / "config.json").is_file()
    with pytest.raises(ValueError, match="no bundled model named 'shapes-blip'; available: shapes-"):
        zoo.path("shapes-blip")


# ---------------------------------------------------------------- training machinery


def test_pixel_values_equal_the_processor():
    import torch

    from clipviz.data import shapes
    from clipviz.zoo.batches import pixel_values

    scenes = shapes.sample(3, seed=1, objects=2)
    for family in FAMILIES:
        processor = build_processor(family, build_tokenizer(family, CORPUS), image_size=64)
        expected = processor(images=[s.image for s in scenes], return_tensors="pt")["pixel_values"]
        torch.testing.assert_close(pixel_values(scenes), expected, atol=1e-5, rtol=1e-5)


def test_multi_positive_targets():
    from clipviz.data import shapes
    from clipviz.zoo.batches import match_matrix

    scene = shapes.sample(1, seed=0, objects=2)[0]
    a, b = scene.objects
    other = next(c for c in shapes.CLASSES if c not in {(a.color, a.shape), (b.color, b.shape)})
    mentions = [[(a.color, a.shape, None)], [(a.color, a.shape, a.size), (b.color, b.shape, None)],
                [(*other, None)], [(a.color, a.shape, "small" if a.size == "large" else "large")]]
    assert match_matrix([scene], mentions).tolist() == [[1.0, 1.0, 0.0, 0.0]]


def test_training_is_deterministic_and_saves_a_hub_checkpoint(tmp_path):
    """Two tiny runs with one seed give identical weights; the saved directory loads with Auto*."""
    import json

    import torch
    from transformers import AutoModel, AutoProcessor

    from clipviz.zoo import evaluate, train

    def tiny_run():
        # the curriculum's two kinds of stage: fresh plain scenes, then a (small) pool of wide ones
        stages = [train.Stage("plain", "smoke test", steps=2, learning_rate=1e-3, batch_size=8),
                  train.Stage("wide", "smoke test", steps=2, learning_rate=1e-3, batch_size=8, world="wide")]
        return train.train("clip", seed=3, stages=stages, eval_scenes=4, pool_scenes=16)

    torch.set_num_threads(1)
    model, processor, tokenizer, report = tiny_run()
    again = tiny_run()[0]
    for (name, p), q in zip(model.state_dict().items(), again.state_dict().values()):
        assert torch.equal(p, q), name
    assert set(report.metrics_plotted) == set(report.metrics_wide) == {"en"}
    train.save(model, processor, tokenizer, report, tmp_path)
    assert {"config.json", "model.safetensors", "README.md", "vocab.json", "merges.txt",
            "processor_config.json", "tokenizer.json"} <= {p.name for p in tmp_path.iterdir()}
    assert type(AutoModel.from_pretrained(tmp_path)).__name__ == "CLIPModel"
    assert type(AutoProcessor.from_pretrained(tmp_path)).__name__ == "CLIPProcessor"
    # measured again from the saved files, the figures and the card are the trainer's
    before = json.loads((tmp_path / "training.json").read_text())
    card = (tmp_path / "README.md").read_text(encoding="utf-8")
    evaluate.main([str(tmp_path), "--scenes", "4", "--threads", "1"])
    assert json.loads((tmp_path / "training.json").read_text()) == before
    assert (tmp_path / "README.md").read_text(encoding="utf-8") == card
    assert "| plain | 2 | 8 |" in card and "| wide | 2 | 8 |" in card and "matplotlib: zero-shot" in card


def test_resuming_gives_the_weights_of_one_run_and_the_card_says_so(tmp_path):
    """``--resume DIR --first-stage N`` (how the bundled shapes-clip was widened) reproduces the
    one-go run's weights, and the card names the resumed stages and the cached pool."""
    import torch

    from clipviz.zoo import train

    torch.set_num_threads(1)
    cache = str(tmp_path / "pool.pkl")

    def stages():
        return [train.Stage("plain", "smoke test", steps=2, learning_rate=1e-3, batch_size=8),
                train.Stage("wide", "smoke test", steps=2, learning_rate=1e-3, batch_size=8, world="wide")]

    def run(stage_list, **kwargs):
        return train.train("clip", seed=4, stages=stage_list, eval_scenes=2, pool_scenes=8, pool_cache=cache, **kwargs)

    whole, *_, whole_report = run(stages())
    assert not whole_report.pool_cached  # rendered, then written to the cache
    first = run(stages()[:1])
    train.save(*first, tmp_path / "first")
    resumed, processor, tokenizer, report = run(stages(), resume_dir=tmp_path / "first", first_stage=1)
    for (name, p), q in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(p, q), name
    assert report.pool_cached and report.resumed_stages == 1
    train.save(resumed, processor, tokenizer, report, tmp_path / "resumed")
    card = (tmp_path / "resumed" / "README.md").read_text(encoding="utf-8")
    assert f"--resume {tmp_path / 'first'} --first-stage 1" in card and "reading the wide stages' pool" in card


def test_shipped_models_follow_the_default_recipe():
    """The default recipe (``--world curriculum``) is the bundled models' own: their stages and worlds."""
    import json

    from clipviz import zoo
    from clipviz.zoo import train

    keys = ("name", "steps", "batch_size", "learning_rate", "world")
    for name, family in (("shapes-clip", "clip"), ("shapes-clip-bow", "clip"),
                         ("shapes-chinese-clip", "chinese_clip"), ("shapes-altclip", "altclip")):
        record = json.loads((zoo.path(name) / "training.json").read_text())
        assert record["world"] == "curriculum" and record["pool_scenes"] == train.POOL_SCENES, name
        assert ([{k: stage[k] for k in keys} for stage in record["stages"]]
                == [{k: getattr(stage, k) for k in keys} for stage in train.default_stages(family)]), name


def test_stage_worlds_are_checked():
    from clipviz.zoo import evaluate, train

    with pytest.raises(ValueError, match="'drawn' or 'plotted'"):
        evaluate.evaluate_drawn(None, None, ("en",), n=1, renderer="photos")

    with pytest.raises(ValueError, match="'plain' or 'wide'"):
        train.train("clip", stages=[train.Stage("x", "", 1, 1e-3, world="fancy")])
    with pytest.raises(ValueError, match="'curriculum' or 'plain'"):
        train.train("clip", world="wide")


# ---------------------------------------------------------------- the bundled models
BUNDLED = {
    # name: (model type, model class, tokenizer class, languages checked)
    "shapes-clip": ("clip", "CLIPModel", "CLIPTokenizer", ("en",)),
    # the binding pair's bag of words: shapes-clip's recipe with --captions shuffled (issue 14)
    "shapes-clip-bow": ("clip", "CLIPModel", "CLIPTokenizer", ("en",)),
    "shapes-chinese-clip": ("chinese_clip", "ChineseCLIPModel", "BertTokenizer", ("zh",)),
    "shapes-altclip": ("altclip", "AltCLIPModel", "XLMRobertaTokenizer", ("en", "zh", "fr", "es", "de")),
}
# issue 14's targets: zero-shot top-1 on the native (plain) world and on each independent renderer
# (Pillow, matplotlib), every checked language; present vs absent on the plain and the wide world
MINIMUM_ZERO_SHOT = 0.97
MINIMUM_INDEPENDENT_RENDERER = 0.90
MINIMUM_PRESENT_VS_ABSENT = 0.97


@pytest.fixture(scope="module", params=sorted(BUNDLED))
def bundled(request):
    from transformers import AutoModel, AutoProcessor

    from clipviz import zoo

    directory = zoo.path(request.param)
    return request.param, directory, AutoModel.from_pretrained(directory), AutoProcessor.from_pretrained(directory)


def test_bundled_model_files(bundled):
    name, directory, model, processor = bundled
    model_type, model_cls, tokenizer_cls, _ = BUNDLED[name]
    assert model.config.model_type == model_type and type(model).__name__ == model_cls
    assert type(processor.tokenizer).__name__ == tokenizer_cls
    assert model.config.vision_config.image_size // model.config.vision_config.patch_size >= 8
    assert sum(f.stat().st_size for f in directory.iterdir()) <= 8 * 2**20
    assert (directory / "README.md").read_text(encoding="utf-8").startswith("---")


def test_bundled_model_accuracy_on_unseen_scenes(bundled):
    """On held-out seed 2026 (training uses seeds >= 1,000,000), issue 14's targets for every checked
    language: the plain world, the two independent renderers training never imports
    (``clipviz.data.drawn``, ``clipviz.data.plotted``), present vs absent on both worlds; the wide
    world's zero-shot figure (the hardest, 87-89%) is printed beside them."""
    from clipviz.zoo.batches import TRAIN_SEED_BASE
    from clipviz.zoo.evaluate import EVAL_SEED, measure

    assert EVAL_SEED < TRAIN_SEED_BASE
    name, _, model, processor = bundled
    figures = measure(model, processor, model.config.model_type, n=300, binding=False)  # test_binding_pair
    for lang, plain in figures["metrics"].items():
        wide = figures["metrics_wide"][lang]
        print(f"{name} [{lang}] zero-shot top-1: plain {plain['zero_shot']:.1%}, wide {wide['zero_shot']:.1%}, "
              f"Pillow {figures['metrics_drawn'][lang]:.1%}, matplotlib {figures['metrics_plotted'][lang]:.1%}; "
              f"present vs absent: plain {plain['present_vs_absent']:.1%}, wide {wide['present_vs_absent']:.1%}")
    for lang in BUNDLED[name][3]:
        assert figures["metrics"][lang]["zero_shot"] >= MINIMUM_ZERO_SHOT, (name, lang, figures["metrics"][lang])
        for renderer in ("metrics_drawn", "metrics_plotted"):
            assert figures[renderer][lang] >= MINIMUM_INDEPENDENT_RENDERER, (name, renderer, lang, figures[renderer])
        for world in ("metrics", "metrics_wide"):
            assert figures[world][lang]["present_vs_absent"] >= MINIMUM_PRESENT_VS_ABSENT, (name, world, lang)


def test_swapped_twin_and_hard_negative_loss():
    import torch

    from clipviz.zoo import batches

    assert batches.swapped([("red", "circle", None), ("blue", "square", "small")]) == [
        ("blue", "circle", None), ("red", "square", "small")]
    assert batches.swapped([("red", "circle", None), ("red", "square", None)]) is None
    assert batches.swapped([("red", "circle", None)]) is None
    # a caption column that fits no image (a hard negative) changes the image->text loss only
    logits = torch.tensor([[3.0, 0.0, 1.0], [0.0, 3.0, 2.0]])
    matches = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    loss = batches.contrastive_loss(logits, matches)
    assert torch.isfinite(loss)
    assert loss > batches.contrastive_loss(logits[:, :2], matches[:, :2])


def test_shuffled_captions_keep_their_words():
    import numpy as np

    from clipviz.zoo import batches

    mentions = [[("red", "circle", None), ("blue", "square", None)]] * 20
    ordered = batches.caption_batch(mentions, ("en",), np.random.default_rng(0))
    shuffled = batches.caption_batch(mentions, ("en",), np.random.default_rng(0), shuffle_words=True)
    assert [sorted(t.split()) for t in ordered] == [sorted(t.split()) for t in shuffled]
    assert ordered != shuffled


def test_binding_scenes_differ_in_colour_and_shape():
    from clipviz.zoo.evaluate import binding_scenes

    scenes = binding_scenes(30)
    assert len(scenes) == 30
    for scene in scenes:
        a, b = scene.objects
        assert a.color != b.color and a.shape != b.shape


@pytest.mark.slow
def test_binding_pair():
    """Issue 14's pair, one training choice apart: shapes-clip (captions as written) prefers "a red
    circle and a blue square" over its attribute-swapped twin "a blue circle and a red square";
    shapes-clip-bow (the same recipe, every caption's words shuffled) behaves like a bag of words
    (Yuksekgonul et al. 2023, "When and why vision-language models behave like bags-of-words").
    250 held-out two-object scenes whose objects differ in colour and shape (seed 2027)."""
    import json

    from transformers import AutoModel, AutoProcessor

    from clipviz import zoo
    from clipviz.zoo.evaluate import binding_accuracy

    binds, bag = zoo.path("shapes-clip"), zoo.path("shapes-clip-bow")
    # the same tokenizer, architecture and size: only the training captions differ
    for file in ("vocab.json", "merges.txt"):
        assert (binds / file).read_bytes() == (bag / file).read_bytes(), file
    configs = [json.loads((d / "config.json").read_text()) for d in (binds, bag)]
    for tower in ("text_config", "vision_config"):  # "dtype" is written by some transformers versions only
        assert ({k: v for k, v in configs[0][tower].items() if k != "dtype"}
                == {k: v for k, v in configs[1][tower].items() if k != "dtype"}), tower
    trained = json.loads((bag / "training.json").read_text())
    assert trained["captions"] == "shuffled" and trained["seed"] == 0
    # shapes-clip's stages (steps, batch, learning rate)
    recipe = [{k: stage[k] for k in ("name", "steps", "batch_size", "learning_rate")} for stage in trained["stages"]]
    assert recipe == [{k: stage[k] for k in recipe[0]} for stage in json.loads((binds / "training.json").read_text())["stages"]]

    figures, wide = {}, {}
    for name, directory in (("shapes-clip", binds), ("shapes-clip-bow", bag)):
        model, processor = AutoModel.from_pretrained(directory), AutoProcessor.from_pretrained(directory)
        figures[name] = binding_accuracy(model, processor, n=250)
        wide[name] = binding_accuracy(model, processor, n=250, world="wide")
        print(f"{name}: the true caption beats its swapped twin in {figures[name]:.1%} of 250 scenes "
              f"({wide[name]:.1%} of 250 wide-world scenes)")
    for measured in (figures, wide):  # on both worlds
        assert measured["shapes-clip"] >= 0.90, (figures, wide)
        assert measured["shapes-clip-bow"] <= 0.65, (figures, wide)
    # the figure the trainer wrote into the card is the one measured here (pinned, not a floor)
    assert abs(figures["shapes-clip-bow"] - trained["binding"]) < 1e-9, (figures, trained["binding"])
