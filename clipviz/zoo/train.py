"""Train the bundled shapes models: ``python -m clipviz.zoo.train --family clip|chinese_clip|altclip``.

Each family follows its own published recipe, in miniature (a few thousand steps: about 43 min for
shapes-clip on 2 idle CPU cores, 12-13 min each for the two that start from it; BENCHMARKS.md):

* **CLIP** (Radford et al. 2021, "Learning Transferable Visual Models From Natural Language
  Supervision"): both towers from scratch, contrastive. Images and captions of a batch are
  embedded, every image is scored against every caption, and a symmetric cross-entropy pulls
  matching pairs together and pushes the rest apart. Colour is learned within a few hundred
  steps, shape far later; two warm restarts of the learning rate (SGDR, Loshchilov & Hutter 2017)
  split the run into three stages that a notebook can compare.
* **Chinese-CLIP** (Yang et al. 2022, "Chinese CLIP: Contrastive Vision-Language Pretraining in
  Chinese"): two stages. Stage 1 locks the image tower, taken from a pretrained CLIP (here the
  trained shapes-clip), and trains only the text tower to meet it: locked-image tuning, LiT
  (Zhai et al. 2022). Stage 2 unlocks everything and tunes both towers contrastively.
* **AltCLIP** (Chen et al. 2022, "AltCLIP: Altering the Language Encoder in CLIP for Extended
  Language Capabilities"): two stages. Stage 1, teacher learning: a multilingual XLM-R text tower
  (the student) learns to put a caption in any language where CLIP's text tower (the teacher,
  shapes-clip) puts the English caption; text only, a mean-squared error on parallel captions.
  The student then replaces CLIP's text tower, keeping CLIP's image tower and projections.
  Stage 2, contrastive tuning on image-caption pairs in all languages, image tower locked.

Data, a curriculum (Bengio et al. 2009, "Curriculum Learning"): each stage names its ``world``.
"plain" stages render fresh plain-world scenes every step; "wide" stages widen the world. A tiny ViT
trained from scratch on the wide world finds shape very slowly (24% zero-shot after 1500 steps,
BENCHMARKS.md), and one that had too few plain steps first lost the plain world (68%), while on the
plain world the first recipe learned shape in 2300 steps. So the default CLIP recipe (``--world
curriculum``) is that whole plain recipe (three stages with SGDR warm restarts) followed by
``WIDE_STEPS`` wide steps: 98.7% plain, 93.3% on the Pillow renderer and 90.3% on the matplotlib one
(BENCHMARKS.md, "A curriculum"). A wide stage draws from a pool of ``POOL_SCENES`` one-object and as
many two-object scenes, ``PLAIN_SHARE`` of them plain so the plain world is not forgotten, the rest
wide, rendered once (in ``--workers`` processes) and drawn from with a seeded generator; rendering
the wide world is dearer than a training step on 2 cores, so its scenes are reused rather than drawn
fresh. Chinese-CLIP and AltCLIP start from the widened shapes-clip and train on the same pool.
``--world plain`` keeps every stage on the plain world: the recipe of the first bundled models.

Binding variants (``--captions``): "ordered" (the default), "shuffled" (each caption's words in
random order: a bag-of-words text tower), "one-object" (captions never name two objects),
"hard-negatives" (each two-object caption's attribute-swapped twin added as a negative, NegCLIP,
Yuksekgonul et al. 2023). BENCHMARKS.md reports what each does to binding.

Deterministic given ``--seed`` (and the step counts, and the device): weights are initialised after
``torch.manual_seed`` and every step's scenes and captions come from seeded numpy generators.
Training scenes use seeds >= ``batches.TRAIN_SEED_BASE``; the evaluation seeds are smaller.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from clipviz.data import shapes
from clipviz.zoo import FAMILY_MODELS, batches, recipes
from clipviz.zoo.evaluate import measure
from clipviz.zoo.tokenizers import build_processor, build_tokenizer, write_vocab_files

LANGUAGES = {"clip": ("en",), "chinese_clip": ("zh", "zh", "zh", "en"), "altclip": shapes.LANGUAGES}
CAPTION_MODES = ("ordered", "shuffled", "one-object", "hard-negatives")
POOL_SCENES = 16_000
WIDE_STEPS = 3_500  # the curriculum's wide stage, after the whole plain recipe
PLAIN_SHARE = 0.3  # of the wide stages' scene pool: plain scenes, so the plain world is not forgotten


def _render(args):
    return shapes.sample_one(*args)


def pool_cached(cache: str | None) -> bool:
    """Whether ``render_pool(..., cache=cache)`` reads the pool from that file instead of rendering it."""
    return cache is not None and Path(cache).is_file()


def render_pool(seed: int, n: int = POOL_SCENES, workers: int = 1, cache: str | None = None,
                plain_share: float = PLAIN_SHARE) -> dict:
    """``{objects: (uint8 crops [n, 3, 64, 64], scenes)}`` for 1 and 2 objects, from training seeds:
    the first ``round(plain_share * n)`` scenes of each from the plain world, the rest wide.

    ``cache``: a pickle file to read the pool from, or to write it to (variants trained side by
    side share one rendering)."""
    import pickle

    if pool_cached(cache):
        with open(cache, "rb") as f:
            return pickle.load(f)
    pool = {}
    n_plain = round(plain_share * n)
    for objects in (1, 2):
        jobs = [(batches.train_seed(seed, 9, 0), objects, i, "plain" if i < n_plain else "wide")
                for i in range(n)]
        if workers > 1:
            import multiprocessing

            with multiprocessing.get_context("fork").Pool(workers) as processes:
                scenes = processes.map(_render, jobs, chunksize=64)
        else:
            scenes = [_render(job) for job in jobs]
        pool[objects] = (batches.crops(scenes), scenes)
    if cache is not None:
        with open(cache, "wb") as f:
            pickle.dump(pool, f, protocol=pickle.HIGHEST_PROTOCOL)
    return pool


@dataclass
class Stage:
    """One training stage: what it does, what it trains, for how long."""

    name: str
    description: str
    steps: int
    learning_rate: float
    batch_size: int = 128
    world: str = "plain"  # "plain": fresh plain-world scenes; "wide": the scene pool (see the module docstring)
    seconds: float = 0.0
    final_loss: float = float("nan")


@dataclass
class Report:
    family: str
    seed: int
    stages: list[Stage] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)  # plain world
    metrics_wide: dict = field(default_factory=dict)
    metrics_drawn: dict = field(default_factory=dict)  # independent renderers: {lang: zero-shot top-1}
    metrics_plotted: dict = field(default_factory=dict)
    parameters: int = 0
    threads: int = 2
    captions: str = "ordered"
    pool_scenes: int = POOL_SCENES
    pool_seconds: float = 0.0
    pool_cached: bool = False  # the pool was read from --pool-cache, not rendered
    device: str = "cpu"
    binding: float | None = None  # plain world
    binding_wide: float | None = None
    name: str = ""
    world: str = "plain"  # "plain": every stage plain (the first recipe); "curriculum": each stage's own world
    tokenizer: str | None = None  # --tokenizer: the directory whose vocabulary was reused
    resumed_from: str | None = None  # --resume: the model its first ``resumed_stages`` stages come from
    resumed_stages: int = 0


def default_stages(family: str, world: str = "curriculum") -> list[Stage]:
    """The stages of ``family``'s recipe: ``world="curriculum"``, the bundled models' recipe, plain
    stages first, then wide ones; ``world="plain"``, every stage on the plain world (for CLIP three
    stages with warm restarts, SGDR, Loshchilov & Hutter 2017)."""
    if world not in ("curriculum", "plain"):
        raise ValueError(f"unknown world {world!r}; expected 'curriculum' or 'plain'")
    # Chinese-CLIP and AltCLIP start from a trained shapes-clip: in a curriculum they only see the pool
    pool_world = "wide" if world == "curriculum" else "plain"
    if family == "clip" and world == "plain":
        return [Stage("contrastive", "Both towers from scratch, symmetric contrastive loss "
                      "on English captions (Radford et al. 2021).", 1200, 1e-3),
                Stage("contrastive-restart", "Same loss and data, learning rate warm-restarted "
                      "(SGDR, Loshchilov & Hutter 2017) to keep learning shape.", 700, 1e-3),
                Stage("contrastive-restart-2", "A second, gentler warm restart.", 400, 5e-4)]
    if family == "clip":
        # the curriculum's second half: smaller batches give more updates for the same compute,
        # which the wide world's slow shape learning needs more than negatives
        return default_stages("clip", "plain") + [
            Stage("wide", "Same loss on the wide world (sizes, rotations, outlines, shades, textures, "
                  "blur, JPEG; 30% plain scenes kept): a curriculum (Bengio et al. 2009).",
                  WIDE_STEPS, 1e-3, batch_size=64, world="wide")]
    if family == "chinese_clip":
        return [Stage("locked-image", "Image tower (shapes-clip's) locked; the BERT text tower "
                      "learns to meet it: locked-image tuning (LiT, Zhai et al. 2022).", 500, 1e-3,
                      world=pool_world),
                Stage("unlocked", "Everything trainable, contrastive on Chinese (and some English) "
                      "captions, lower learning rate.", 250, 2e-4, world=pool_world)]
    if family == "altclip":
        return [Stage("teacher-learning", "Text only: the XLM-R student's [CLS] output regresses "
                      "(MSE) onto the CLIP teacher's English text feature, for parallel captions in "
                      "all languages.", 600, 1e-3, batch_size=256),
                Stage("contrastive", "Image tower locked; the student text tower is tuned "
                      "contrastively on image-caption pairs in all languages.", 300, 3e-4, world=pool_world)]
    raise ValueError(f"unknown family {family!r}; expected one of clip, chinese_clip, altclip")


def _schedule(optimizer, steps: int, warmup: int):
    """Linear warm-up, then cosine decay to 10% (CLIP's schedule, shortened)."""
    def factor(step):
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, steps - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _optimizer(params, stage: Stage):
    params = [p for p in params if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]  # no weight decay on norms, biases, temperature
    rest = [p for p in params if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                                   {"params": rest, "weight_decay": 0.0}], lr=stage.learning_rate)
    return optimizer, _schedule(optimizer, stage.steps, warmup=max(1, stage.steps // 20))


def _run(stage: Stage, params, step_loss, deadline: float | None) -> None:
    """The loop every stage shares: ``step_loss(step)`` builds a batch and returns its loss."""
    from tqdm.auto import tqdm

    optimizer, scheduler = _optimizer(params, stage)
    start = time.perf_counter()
    bar = tqdm(range(stage.steps), desc=stage.name, mininterval=2.0)
    for step in bar:
        loss = step_loss(step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in params if p.requires_grad], 1.0)
        optimizer.step()
        scheduler.step()
        stage.final_loss = loss.item()
        if step % 20 == 0:
            bar.set_postfix(loss=f"{stage.final_loss:.3f}")
        if deadline is not None and time.time() > deadline:
            print(f"--minutes budget reached: stopping '{stage.name}' after {step + 1} steps")
            stage.steps = step + 1
            break
    stage.seconds = round(time.perf_counter() - start, 1)


def _contrastive_step(model, tokenizer, languages, stage: Stage, stage_index: int, seed: int,
                      pool: dict | None = None, captions: str = "ordered", device: str = "cpu"):
    """A batch of half one-object, half two-object scenes with captions; multi-positive CLIP loss.

    A "plain" stage renders fresh plain-world scenes for every step; a "wide" stage draws its
    scenes from ``pool`` with replacement."""
    if stage.world == "wide" and pool is None:
        raise ValueError(f"stage {stage.name!r} trains on the wide world: pass its scene pool")
    def step_loss(step):
        rng = np.random.default_rng([seed, stage_index, step])
        if stage.world == "plain":
            scene_seed = batches.train_seed(seed, stage_index, step)
            scenes = (shapes.sample(stage.batch_size // 2, seed=scene_seed, objects=1)
                      + shapes.sample(stage.batch_size // 2, seed=scene_seed, objects=2))
            pixels = [batches.pixel_values(scenes)]
        else:
            pixels, scenes = [], []
            for objects in (1, 2):
                crops, pool_scenes = pool[objects]
                index = rng.integers(len(pool_scenes), size=stage.batch_size // 2)
                pixels.append(crops[torch.from_numpy(index)])
                scenes += [pool_scenes[i] for i in index]
        mentions = [batches.scene_mentions(s, rng, one_object=captions == "one-object") for s in scenes]
        if captions == "hard-negatives":
            twins = [batches.swapped(m) for m in mentions]
            mentions = mentions + [t for t in twins if t is not None]
        texts = batches.caption_batch(mentions, languages, rng, shuffle_words=captions == "shuffled")
        inputs = tokenizer(texts, padding=True, truncation=True, return_tensors="pt").to(device)
        pixel_values = (pixels[0] if stage.world == "plain" else batches.normalise(torch.cat(pixels))).to(device)
        logits = model(**inputs, pixel_values=pixel_values).logits_per_image
        with torch.no_grad():  # CLIP clips the temperature at 100
            model.logit_scale.clamp_(max=math.log(100))
        return batches.contrastive_loss(logits, batches.match_matrix(scenes, mentions).to(device))
    return step_loss


def _distillation_step(student, teacher, student_tok, teacher_tok, stage: Stage, stage_index, seed,
                       device: str = "cpu"):
    """AltCLIP teacher learning: student(caption in any language) ~ teacher(English caption)."""
    def step_loss(step):
        rng = np.random.default_rng([seed, stage_index, step])
        mentions = [batches.random_mentions(rng) for _ in range(stage.batch_size)]
        articles = [bool(rng.random() < 0.5) for _ in mentions]
        english = [batches.render(m, "en", a) for m, a in zip(mentions, articles)]
        langs = [shapes.LANGUAGES[rng.integers(len(shapes.LANGUAGES))] for _ in mentions]
        translated = [batches.render(m, lang, a) for m, lang, a in zip(mentions, langs, articles)]
        with torch.no_grad():
            target = teacher.text_model(**teacher_tok(english, padding=True, return_tensors="pt").to(device)).pooler_output
        student_inputs = student_tok(translated, padding=True, truncation=True, return_tensors="pt").to(device)
        prediction = student.text_model(**student_inputs).pooler_output
        return torch.nn.functional.mse_loss(prediction, target)
    return step_loss


def _check_world(world: str) -> None:
    if world not in ("plain", "wide"):
        raise ValueError(f"unknown stage world {world!r}; expected 'plain' or 'wide'")


def _lock(module) -> None:
    for p in module.parameters():
        p.requires_grad_(False)


def _unlock(module) -> None:
    for p in module.parameters():
        p.requires_grad_(True)


def train(family: str, seed: int = 0, teacher_dir: str | os.PathLike | None = None,
          stages: list[Stage] | None = None, minutes: float | None = None, eval_scenes: int = 300,
          resume_dir: str | os.PathLike | None = None, first_stage: int = 0,
          tokenizer_dir: str | os.PathLike | None = None, captions: str = "ordered",
          workers: int = 1, device: str = "cpu", pool_scenes: int = POOL_SCENES,
          pool_cache: str | None = None, world: str = "curriculum"):
    """Train ``family``; return ``(model, processor, tokenizer, report)`` (not yet saved).

    ``world`` picks the default stages when ``stages`` is not given: "curriculum" (the bundled
    models' recipe, see the module docstring) or "plain" (every stage on the plain world). Each
    stage trains on its own ``Stage.world``.

    ``resume_dir`` + ``first_stage`` (CLIP only): start from a model saved after stage
    ``first_stage - 1``; as nothing random happens inside a step beyond the seeded data, this
    gives the same weights as running every stage in one go (the bundled shapes-clip resumed the
    plain-world model after its three plain stages). ``tokenizer_dir``: reuse a saved
    tokenizer (e.g. a bundled model's) instead of learning one from the shapes world's phrases.
    """
    import transformers

    if captions not in CAPTION_MODES:
        raise ValueError(f"unknown captions {captions!r}; expected one of: {', '.join(CAPTION_MODES)}")
    stages = stages or default_stages(family, world)
    for stage in stages:
        _check_world(stage.world)
    wide = any(stage.world == "wide" for stage in stages)
    deadline = time.time() + 60 * minutes if minutes else None
    languages = LANGUAGES[family]
    if tokenizer_dir is not None:
        tokenizer = transformers.AutoTokenizer.from_pretrained(tokenizer_dir)
    else:
        tokenizer = build_tokenizer(family, batches.tokenizer_corpus(sorted(set(languages))),
                                    model_max_length=recipes.MAX_TEXT_LENGTH)
    torch.manual_seed(seed)
    model = recipes.build_model(family, tokenizer)
    model.train()
    report = Report(family, seed, stages, threads=torch.get_num_threads(), captions=captions,
                    pool_scenes=pool_scenes, device=device, world="curriculum" if wide else "plain",
                    tokenizer=None if tokenizer_dir is None else str(tokenizer_dir))
    started = time.perf_counter()
    report.pool_cached = wide and pool_cached(pool_cache)
    pool = render_pool(seed, pool_scenes, workers, pool_cache) if wide else None
    report.pool_seconds = round(time.perf_counter() - started, 1)
    model.to(device)

    if resume_dir is not None:
        if family != "clip":
            raise ValueError("resuming is implemented for the one-tower-pair CLIP recipe only")
        model = transformers.CLIPModel.from_pretrained(resume_dir, attn_implementation="sdpa").to(device).train()
        done = json.loads((Path(resume_dir) / "training.json").read_text())["stages"][:first_stage]
        stages[:first_stage] = [Stage(**record) for record in done]
        report.resumed_from, report.resumed_stages = str(resume_dir), first_stage
    if family == "clip":
        for index in range(first_stage, len(stages)):
            _run(stages[index], list(model.parameters()),
                 _contrastive_step(model, tokenizer, languages, stages[index], index, seed, pool, captions,
                                   device), deadline)
    else:
        teacher_dir = teacher_dir or Path(__file__).parent / "models" / FAMILY_MODELS["clip"]
        teacher = transformers.CLIPModel.from_pretrained(teacher_dir, attn_implementation="sdpa").to(device).eval()
        recipes.copy_image_tower(teacher, model)
        frozen_image_tower = [model.vision_model, model.visual_projection]
        for module in frozen_image_tower:
            _lock(module)
        if family == "chinese_clip":
            _run(stages[0], list(model.parameters()),
                 _contrastive_step(model, tokenizer, languages, stages[0], 0, seed, pool, captions, device),
                 deadline)
            for module in frozen_image_tower:
                _unlock(module)
            _run(stages[1], list(model.parameters()),
                 _contrastive_step(model, tokenizer, languages, stages[1], 1, seed, pool, captions, device),
                 deadline)
        else:
            _lock(teacher)
            teacher_tokenizer = transformers.AutoTokenizer.from_pretrained(teacher_dir)
            # the student inherits the teacher's projection: it was trained to land in its input space
            model.text_projection.load_state_dict(teacher.text_projection.state_dict())
            _run(stages[0], list(model.text_model.parameters()),
                 _distillation_step(model, teacher, tokenizer, teacher_tokenizer, stages[0], 0, seed, device),
                 deadline)
            model.logit_scale.requires_grad_(False)
            _run(stages[1], list(model.parameters()),
                 _contrastive_step(model, tokenizer, languages, stages[1], 1, seed, pool, captions, device),
                 deadline)

    model.to("cpu").eval()
    for p in model.parameters():
        p.requires_grad_(True)
    processor = build_processor(family, tokenizer, recipes.IMAGE_SIZE)
    report.parameters = sum(p.numel() for p in model.parameters())
    for key, value in measure(model, processor, family, n=eval_scenes).items():
        setattr(report, key, value)
    return model, processor, tokenizer, report


def save(model, processor, tokenizer, report: Report, out_dir) -> Path:
    """Write the model as a Hub checkpoint would be, plus ``training.json`` and a model card."""
    from clipviz.zoo.card import write_record

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # the template-set marker clipviz reads to pick the shapes world's prompts (TEAM convention)
    model.config.clipviz_template_set = "shapes"
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    write_vocab_files(tokenizer, out_dir)
    write_record(out_dir, asdict(report))
    return out_dir


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", required=True, choices=sorted(FAMILY_MODELS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="output directory (default: the bundled model's directory)")
    parser.add_argument("--teacher", help="shapes-clip directory used by chinese_clip and altclip")
    parser.add_argument("--steps-scale", type=float, default=1.0,
                        help="multiply every stage's step count (e.g. 0.01 for a smoke test)")
    parser.add_argument("--lr-scale", type=float, default=1.0, help="multiply every stage's learning rate")
    parser.add_argument("--minutes", type=float, default=None,
                        help="wall-clock cap; stopping early makes results depend on machine speed")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1, help="processes rendering the scene pool")
    parser.add_argument("--device", default="cpu", help="torch device to train on (e.g. cuda)")
    parser.add_argument("--captions", default="ordered", choices=CAPTION_MODES,
                        help="binding experiment: how captions are written (see the module docstring)")
    parser.add_argument("--world", choices=("plain", "curriculum"), default="curriculum",
                        help="curriculum (the bundled recipe): the plain world first, then the wide world; "
                        "plain: every stage on the plain world (the first bundled models' recipe)")
    parser.add_argument("--pool-scenes", type=int, default=POOL_SCENES)
    parser.add_argument("--pool-cache", help="pickle file holding (or to hold) the rendered scene pool")
    parser.add_argument("--name", help="model name for the card (default: the family's bundled name)")
    parser.add_argument("--resume", help="(clip) directory saved after an earlier stage")
    parser.add_argument("--first-stage", type=int, default=0, help="(with --resume) first stage to run")
    parser.add_argument("--tokenizer", help="reuse the tokenizer saved in this directory (e.g. the "
                        "bundled model's, to reproduce its weights) instead of learning a new one")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    stages = default_stages(args.family, args.world)
    for stage in stages:
        stage.steps = max(2, round(stage.steps * args.steps_scale))
        stage.learning_rate *= args.lr_scale
    started = time.perf_counter()
    model, processor, tokenizer, report = train(args.family, args.seed, args.teacher, stages, args.minutes,
                                                resume_dir=args.resume, first_stage=args.first_stage,
                                                tokenizer_dir=args.tokenizer, captions=args.captions,
                                                workers=args.workers, device=args.device,
                                                pool_scenes=args.pool_scenes, pool_cache=args.pool_cache)
    report.name = args.name or FAMILY_MODELS[args.family]
    out = args.out or Path(__file__).parent / "models" / report.name
    save(model, processor, tokenizer, report, out)
    print(json.dumps(report.metrics, indent=2))
    print(f"saved {out} after {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
