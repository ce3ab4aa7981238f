"""Embeddings.open (clipviz's cache, clip-retrieval folders, any Parquet) and exact search."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import clipviz
from clipviz.embeddings import Embeddings
from clipviz.search import top_k

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


@pytest.fixture
def model(tiny_hooked):
    return tiny_hooked["clip"]


def _unit(rng, n, d, dtype=np.float32):
    v = rng.standard_normal((n, d))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(dtype)


def test_top_k_is_exact_blockwise_and_respects_the_mask():
    rng = np.random.default_rng(0)
    vectors, query = _unit(rng, 1000, 16), _unit(rng, 1, 16)[0]
    exact = np.argsort(-(vectors @ query), kind="stable")[:7]
    for block in (1, 7, 64, 5000):
        rows, scores = top_k(vectors, query, 7, block_rows=block)
        assert rows.tolist() == exact.tolist()
        np.testing.assert_allclose(scores, (vectors @ query)[exact], rtol=1e-6)
    allowed = np.arange(1000) % 2 == 1
    rows, _ = top_k(vectors, query, 5, allowed=allowed, block_rows=33)
    odd = np.flatnonzero(allowed)
    assert rows.tolist() == odd[np.argsort(-(vectors[odd] @ query), kind="stable")[:5]].tolist()
    rows, _ = top_k(vectors[:3], query, 10)  # fewer rows than k: all of them
    assert sorted(rows.tolist()) == [0, 1, 2]


def test_clip_retrieval_folder_opens_memory_mapped_and_searches(model, tmp_path):
    """The layout clip-retrieval's inference writes: img_emb/, text_emb/, metadata/ in numbered parts."""
    rng = np.random.default_rng(1)
    captions = ["red circle", "blue square", "green star", "yellow triangle", "a cat", "a dog", "a car"]
    text_vectors = model.text_embeds(captions).numpy()
    # image vectors: each one a noisy copy of its caption's vector, so caption i must find image i
    image_vectors = text_vectors + 0.05 * rng.standard_normal(text_vectors.shape).astype(np.float32)
    image_vectors /= np.linalg.norm(image_vectors, axis=1, keepdims=True)
    root = tmp_path / "laion-part"
    for sub in ("img_emb", "text_emb", "metadata"):
        (root / sub).mkdir(parents=True)
    for part, (a, b) in enumerate([(0, 4), (4, 7)]):
        np.save(root / "img_emb" / f"img_emb_{part}.npy", image_vectors[a:b].astype(np.float16))
        np.save(root / "text_emb" / f"text_emb_{part}.npy", text_vectors[a:b].astype(np.float16))
        pq.write_table(pa.table({"image_path": [f"img/{i}.jpg" for i in range(a, b)], "caption": captions[a:b]}),
                       root / "metadata" / f"metadata_{part}.parquet")
    emb = Embeddings.open(root, cache=tmp_path / "cache")
    assert emb.n_images == 7 and emb.n_texts == 7
    assert isinstance(emb.vectors, np.memmap) and emb.vectors.dtype == np.float16
    assert emb.sources[:2] == ["img/0.jpg", "img/1.jpg"] and emb.sources[7:9] == captions[:2]
    np.testing.assert_allclose(np.asarray(emb.vectors[7:], np.float32), text_vectors, atol=1e-3)
    assert emb.pairs.tolist()[3] == [3, 10]
    for i, caption in enumerate(captions):
        hits = emb.search(caption, k=3, model=model)
        assert hits.rows[0] == i and hits.modality == ["image"] * 3  # a text finds images
        assert hits.sources[0] == f"img/{i}.jpg"
    hits = emb.search(image_vectors[2], k=2)  # a vector searches all rows
    assert set(hits.rows.tolist()) == {2, 9}
    hits = emb.search(image_vectors[2], k=1, among="text")
    assert hits.rows.tolist() == [9] and "green star" in repr(hits)
    assert emb.model_name == "" and emb.fingerprint == ""  # the layout does not say: any model may query
    again = Embeddings.open(root, cache=tmp_path / "cache")  # the conversion is reused
    assert again.vectors.filename == emb.vectors.filename
    with pytest.raises(ValueError, match="must have shape"):
        emb.search(np.ones(5))
    with pytest.raises(ValueError, match="pass model="):
        emb.search("red circle")


def test_generic_parquet_with_list_of_float_column(model, tmp_path):
    rng = np.random.default_rng(2)
    vectors = _unit(rng, 20, 8) * 3  # not unit: cosine must still be exact
    table = pa.table({"url": [f"u{i}" for i in range(20)], "label": ["a", "b"] * 10,
                      "vec": pa.array(vectors.tolist(), pa.list_(pa.float32()))})
    pq.write_table(table, tmp_path / "a.parquet", row_group_size=6)
    emb = Embeddings.open(tmp_path / "a.parquet")
    assert isinstance(emb.vectors, np.memmap) and len(emb) == 20 and emb.sources[3] == "u3"
    np.testing.assert_allclose(emb.vectors, vectors, rtol=1e-6)
    hits = emb.search(vectors[5], k=1)
    assert hits.rows.tolist() == [5] and hits.scores[0] == pytest.approx(1, abs=1e-6)
    two = pa.table({"a": pa.array(vectors.tolist(), pa.list_(pa.float32())),
                    "b": pa.array(vectors.tolist(), pa.list_(pa.float32()))})
    (tmp_path / "two").mkdir()
    pq.write_table(two, tmp_path / "two" / "x.parquet")
    with pytest.raises(ValueError, match="pass embedding_column="):
        Embeddings.open(tmp_path / "two")
    assert Embeddings.open(tmp_path / "two", embedding_column="b").dim == 8


def test_single_process_cache_opens_and_refuses_another_model(tiny_hooked, tmp_path):
    model = tiny_hooked["clip"]
    images = [Image.fromarray(np.full((20, 20, 3), 40 * i, np.uint8)) for i in range(5)]
    made = clipviz.embed(model, images=images, texts=["red", "blue"], batch_size=2, cache=tmp_path / "c")
    emb = Embeddings.open(tmp_path / "c")
    np.testing.assert_array_equal(np.asarray(emb.vectors), np.asarray(made.vectors))
    assert list(emb.modality) == list(made.modality) and emb.sources == made.sources
    assert emb.fingerprint and emb.model_name == model.name
    assert emb.search("red", k=2, model=model).modality == ["image", "image"]
    other = tiny_hooked["chinese_clip"]
    with pytest.raises(ValueError, match="made by model .* not comparable"):
        emb.search("red", model=other)
    with pytest.raises(ValueError, match="not comparable"):
        emb.check_model(other)


def test_open_says_what_it_cannot_read(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Embeddings.open(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no collection"):
        Embeddings.open(tmp_path / "empty")


def test_the_float16_fast_path_equals_the_float32_search():
    rng = np.random.default_rng(5)
    full = _unit(rng, 20000, 64)
    half = full.astype(np.float16)
    for q in range(20):
        query = full[q * 7] + 0.3 * _unit(rng, 1, 64)[0]
        query = (query / np.linalg.norm(query)).astype(np.float32)
        exact, _ = top_k(full, query, 10, block_rows=100000)
        fast, scores = top_k(half, query, 10, block_rows=3000)
        assert fast.tolist() == exact.tolist()
        np.testing.assert_allclose(scores, _cosine_ref(half[fast], query), rtol=1e-6)


def _cosine_ref(rows, query):
    rows = rows.astype(np.float64)
    return rows @ query / np.linalg.norm(rows, axis=1)
