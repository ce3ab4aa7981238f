"""What it costs the caches to notice every weight edit: ``HookedCLIP.weights_version``.

PyTorch's per-tensor version counters are nearly free but blind to edits through ``.data``
(``p.data[...] = x``, ``p.data.copy_(y)``): a cache keyed on them served stale label embeddings.
``weights_version`` reads every value instead (a CRC-32 of each tensor's bytes). This measures that
pass against, in the same run:

* the old key: ``(data_ptr, _version)`` of every parameter;
* a zero-shot label-cache miss it protects: encoding one label's 10-template ensemble;
* a whole warm-cache ``classify`` call (1 image x 30 labels), which now includes the text-tower check.

Models: a random ``CLIPModel`` of ViT-B/32 size (vision width 768, 12 layers, patch 32; text width
512, 12 layers, vocabulary 49,408; 151 M parameters), and the bundled shapes-clip. Medians of 7.

Run: ``python benchmarks/bench_weights_version.py`` (with this checkout's clipviz importable). The
B/32-size model is built here rather than with ``clipviz.testing.random_checkpoint`` because its
text tower must keep CLIP's real 49,408-token vocabulary (25 M of its 63 M parameters).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch

import clipviz
from clipviz import zeroshot
from clipviz.data import shapes


def median_ms(function, repeats: int = 7) -> float:
    function()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def build_b32(directory: Path) -> Path:
    from transformers import CLIPConfig, CLIPModel

    from clipviz.zoo.tokenizers import build_processor, build_tokenizer

    corpus = [f"a photo of a {c} {s}" for c, s in shapes.CLASSES] * 4
    tokenizer = build_tokenizer("clip", corpus, vocab_size=500, model_max_length=77)
    text = dict(pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id)  # CLIP-B text tower: vocabulary 49,408 as the real one
    torch.manual_seed(0)
    CLIPModel(CLIPConfig(text_config=text, vision_config=dict(patch_size=32))).save_pretrained(directory)
    build_processor("clip", tokenizer, 224).save_pretrained(directory)
    return directory


def measure(name: str, model) -> None:
    params = list(model.model.parameters())
    n = sum(p.numel() for p in params)
    image = shapes.sample(1, seed=0)[0].image
    labels = [f"{c} {s}" for c, s in shapes.CLASSES]
    ensemble = [t.replace("{}", labels[0]) for t in zeroshot.TEMPLATES["en"]["ensemble"]]
    zeroshot.classify(model, image, labels, templates="ensemble")  # warm the label cache
    rows = {
        "old key (data_ptr, _version) of every parameter": median_ms(lambda: tuple((p.data_ptr(), p._version) for p in params)),
        "weights_version() (every parameter)": median_ms(model.weights_version),
        'weights_version("text") (what the label cache checks)': median_ms(lambda: model.weights_version("text")),
        "label-cache miss: encode one label's 10 prompts": median_ms(lambda: model.text_embeds(ensemble)),
        "classify(1 image, 30 labels), warm label cache": median_ms(
            lambda: zeroshot.classify(model, image, labels, templates="ensemble")),
    }
    print(f"\n{name}: {n / 1e6:.1f} M parameters ({sum(p.numel() * p.element_size() for p in params) / 2**20:.0f} MiB)")
    for label, ms in rows.items():
        print(f"  {label:58s} {ms:9.2f} ms")
    check = rows['weights_version("text") (what the label cache checks)']
    print(f"  text check / one label's encoding = {check / rows[next(k for k in rows if 'miss' in k)]:.2f}; "
          f"share of a warm classify = {check / rows[next(k for k in rows if 'warm' in k)]:.0%}")


def main() -> None:
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    measure("shapes-clip", clipviz.load("shapes-clip"))
    with tempfile.TemporaryDirectory() as tmp:
        measure("ViT-B/32-size CLIP (random weights)", clipviz.load(build_b32(Path(tmp) / "b32")))


if __name__ == "__main__":
    main()
