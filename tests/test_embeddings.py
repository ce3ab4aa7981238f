"""clipviz.embed: batching, metadata, bad input, and the on-disk cache (rerun, interrupt, resume)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import clipviz
from clipviz import embeddings as E
from clipviz.images import ImageLoadError


@pytest.fixture
def model(tiny_hooked):
    return tiny_hooked["clip"]


def _images(n, seed=0):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (30 + i % 7, 40, 3), dtype=np.uint8)) for i in range(n)]


@pytest.fixture
def image_folder(tmp_path):
    """Two class sub-folders of PNGs and one corrupt file among them."""
    root = tmp_path / "photos"
    for k, image in enumerate(_images(9)):
        folder = root / ("cats" if k % 2 else "dogs")
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / f"{k:02d}.png")
    (root / "dogs" / "03_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    return root


class CountingModel:
    """Counts forward calls; optionally raises on the n-th image batch (an interrupted run)."""

    def __init__(self, model, monkeypatch, fail_on_call=None):
        self.image_calls = 0
        self.text_calls = 0
        image_features, text_features = model.image_features, model.text_features

        def counted_images(pixels):
            self.image_calls += 1
            if fail_on_call is not None and self.image_calls == fail_on_call:
                raise KeyboardInterrupt("interrupted on purpose")
            return image_features(pixels)

        def counted_texts(tokens):
            self.text_calls += 1
            return text_features(tokens)

        monkeypatch.setattr(model, "image_features", counted_images)
        monkeypatch.setattr(model, "text_features", counted_texts)


def _shard_files(cache: Path):
    return sorted(p for p in cache.rglob("*") if p.is_file())


# ---------------------------------------------------------------------------- basics
def test_embed_rows_match_the_model_and_carry_metadata(model):
    images, texts = _images(7), ["a red circle", "a blue square", "蓝色正方形"]
    result = clipviz.embed(model, images=images, texts=texts, labels=list("abcabca") + ["a", "b", "x"], batch_size=3)
    assert result.vectors.shape == (10, model.model.config.projection_dim)
    np.testing.assert_allclose(np.linalg.norm(result.vectors, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(result.image_vectors, model.image_embeds(images).numpy(), atol=1e-5)
    np.testing.assert_allclose(result.text_vectors, model.text_embeds(texts).numpy(), atol=1e-5)
    assert list(result.modality) == ["image"] * 7 + ["text"] * 3
    assert list(result.labels) == list("abcabca") + ["a", "b", "x"]
    assert result.sources[:2] == ["<image 0>", "<image 1>"] and result.sources[7:] == texts
    assert result.inputs[0] is images[0] and result.inputs[-1] == texts[-1]
    assert list(result.index) == list(range(7)) + [0, 1, 2]
    assert result.thumbnails.shape == (7, E.THUMBNAIL_SIZE, E.THUMBNAIL_SIZE, 3)
    assert result.thumbnail(0).shape == (E.THUMBNAIL_SIZE, E.THUMBNAIL_SIZE, 3) and result.thumbnail(8) is None
    described = repr(result).replace(repr(result.model_name), "")  # the model's tmp path may hold any digits
    assert "10" not in described and "7 images + 3 texts" in described
    assert "<table>" in result._repr_html_()
    # image 0 (label a) pairs with text 0 (label a): rows (0, 7), (3, 7), (6, 7)
    assert {tuple(p) for p in result.matched_pairs() if p[1] == 7} == {(0, 7), (3, 7), (6, 7)}


def test_folder_labels_from_subfolders_and_unreadable_image_skipped(model, image_folder):
    with pytest.warns(UserWarning, match="1 of 10 images could not be read"):
        result = clipviz.embed(model, images=image_folder, batch_size=4)
    assert result.n_images == 9 and result.n_texts == 0
    assert [Path(s).name for s, _ in result.skipped] == ["03_broken.jpg"]
    assert "03_broken.jpg" in result.skipped[0][0] and result.skipped[0][1]
    assert set(result.labels) == {"cats", "dogs"}
    assert all(Path(s).parent.name == label for s, label in zip(result.sources, result.labels))
    assert not any("broken" in str(s) for s in result.sources)


def test_many_images_with_a_bad_one_among_them_is_not_fatal(model):
    sources = _images(40) + [np.zeros((0, 3, 3), np.uint8), "/no/such/file.png"] + _images(5, seed=1)
    with pytest.warns(UserWarning, match="2 of 47"):
        result = clipviz.embed(model, images=sources, batch_size=16, pairs=[(0, 0), (40, 0), (46, 0)], texts=["x"])
    assert result.n_images == 45
    assert [s for s, _ in result.skipped] == ["<image 40>", "/no/such/file.png"]
    assert list(result.index[:45]) == list(range(40)) + list(range(42, 47))
    # the pair whose image was skipped is dropped; image 46 is row 44 now
    assert result.pairs.tolist() == [[0, 45], [44, 45]]


def test_bad_input_gives_clear_errors(model):
    with pytest.raises(ValueError, match=r"2 labels were given for 2 images \+ 1 texts = 3 rows"):
        clipviz.embed(model, images=_images(2), texts=["a"], labels=["a", "b"])
    with pytest.raises(ValueError, match=r"labels\['texts'\] has 2 entries but 1 texts"):
        clipviz.embed(model, images=_images(2), texts=["a"], labels={"images": ["a", "b"], "texts": ["x", "y"]})
    with pytest.raises(ValueError, match="nothing to embed"):
        clipviz.embed(model)
    with pytest.raises(TypeError, match="texts must be strings"):
        clipviz.embed(model, texts=["ok", 3])
    with pytest.raises(ImageLoadError, match="none of the 2 images"), pytest.warns(UserWarning):
        clipviz.embed(model, images=["/nope/a.png", "/nope/b.png"])
    with pytest.raises(ValueError, match="pairs must be"):
        clipviz.embed(model, images=_images(2), texts=["a"], pairs=[(2, 0)])


# ---------------------------------------------------------------------------- cache
def test_rerun_with_cache_is_instant_and_identical(model, monkeypatch, tmp_path, image_folder):
    texts = [f"text {i}" for i in range(5)]
    with pytest.warns(UserWarning):
        first = clipviz.embed(model, images=image_folder, texts=texts, batch_size=4, text_batch_size=2, cache=tmp_path)
    counter = CountingModel(model, monkeypatch)
    with pytest.warns(UserWarning):
        again = clipviz.embed(model, images=image_folder, texts=texts, batch_size=4, text_batch_size=2, cache=tmp_path)
    assert counter.image_calls == 0 and counter.text_calls == 0
    assert isinstance(again.vectors, np.memmap)  # read from disk, not held in memory
    np.testing.assert_array_equal(np.asarray(first.vectors), np.asarray(again.vectors))
    np.testing.assert_array_equal(np.asarray(first.thumbnails), np.asarray(again.thumbnails))
    assert first.sources == again.sources and list(first.labels) == list(again.labels)
    assert [s for s, _ in first.skipped] == [s for s, _ in again.skipped]


def test_interrupted_run_resumes_without_recomputing_finished_batches(model, monkeypatch, tmp_path):
    images = _images(23)  # 6 batches of 4 (the last has 3)
    texts = ["one", "two", "three"]
    reference = clipviz.embed(model, images=images, texts=texts, batch_size=4)  # no cache, uninterrupted

    with monkeypatch.context() as patch:
        CountingModel(model, patch, fail_on_call=4)  # batches 1-3 finish, the 4th is interrupted
        with pytest.raises(KeyboardInterrupt):
            clipviz.embed(model, images=images, texts=texts, batch_size=4, cache=tmp_path)
    files = _shard_files(tmp_path)
    assert not [f for f in files if f.name.endswith(".tmp")], "a temporary file was left behind"
    records = [f for f in files if f.suffix == ".json"]
    assert len(records) == 3
    for record in records:  # every finished batch is whole
        stem = record.name[: -len(".json")]
        assert (record.parent / f"{stem}.vectors.npy").is_file() and (record.parent / f"{stem}.thumbs.npy").is_file()

    counter = CountingModel(model, monkeypatch)
    resumed = clipviz.embed(model, images=images, texts=texts, batch_size=4, cache=tmp_path)
    assert counter.image_calls == 3  # only batches 4, 5 and 6
    assert counter.text_calls == 1
    np.testing.assert_array_equal(np.asarray(resumed.vectors), reference.vectors)  # no lost or duplicated rows
    np.testing.assert_array_equal(np.asarray(resumed.thumbnails), reference.thumbnails)
    assert resumed.sources == reference.sources and list(resumed.modality) == list(reference.modality)


def test_interrupt_while_writing_leaves_no_half_written_file(model, monkeypatch, tmp_path):
    images = _images(8)
    real_save = np.save
    calls = {"n": 0}

    def save_then_die(handle, array, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:  # batch 2's vectors: write half the bytes, then the "kernel dies"
            handle.write(b"\x93NUMPY partial")
            raise KeyboardInterrupt("killed while writing")
        return real_save(handle, array, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(E.np, "save", save_then_die)
        with pytest.raises(KeyboardInterrupt):
            clipviz.embed(model, images=images, batch_size=4, cache=tmp_path)
    files = _shard_files(tmp_path)
    assert not [f for f in files if f.name.endswith(".tmp")]
    assert len([f for f in files if f.suffix == ".json"]) == 1
    # batch 2's vectors reached disk but without its record the batch counts as unfinished
    assert len([f for f in files if f.name.endswith(".vectors.npy")]) == 2
    assert len([f for f in files if f.name.endswith(".thumbs.npy")]) == 1
    for f in files:
        if f.suffix == ".npy":
            np.load(f)  # every .npy on disk is complete

    counter = CountingModel(model, monkeypatch)
    resumed = clipviz.embed(model, images=images, batch_size=4, cache=tmp_path)
    assert counter.image_calls == 1
    uninterrupted = clipviz.embed(model, images=images, batch_size=4)
    np.testing.assert_array_equal(np.asarray(resumed.vectors), uninterrupted.vectors)


def test_changed_file_is_recomputed_and_unchanged_ones_are_not(model, monkeypatch, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for k, image in enumerate(_images(8)):
        image.save(folder / f"{k}.png")
    first = clipviz.embed(model, images=folder, batch_size=4, cache=tmp_path / "cache")
    _images(1, seed=5)[0].save(folder / "6.png")  # new content in the second batch
    os.utime(folder / "6.png", ns=(1, 10**18))
    counter = CountingModel(model, monkeypatch)
    second = clipviz.embed(model, images=folder, batch_size=4, cache=tmp_path / "cache")
    assert counter.image_calls == 1
    np.testing.assert_array_equal(np.asarray(first.vectors[:6]), np.asarray(second.vectors[:6]))
    assert not np.allclose(first.vectors[6], second.vectors[6])


def test_model_fingerprint_sees_weight_changes(model):
    import torch

    before = E.model_fingerprint(model)
    assert before == E.model_fingerprint(model)
    parameter = model.model.visual_projection.weight
    original = parameter[0, 0].item()
    with torch.no_grad():
        parameter[0, 0] += 0.5
    try:
        assert E.model_fingerprint(model) != before
    finally:
        with torch.no_grad():
            parameter[0, 0] = original  # exactly: subtracting 0.5 again can round to another float
    assert E.model_fingerprint(model) == before


def test_other_families_and_background_workers(tiny_hooked):
    images = _images(5)
    for family in ("chinese_clip", "altclip"):
        hooked = tiny_hooked[family]
        for workers in (0, 2):
            result = clipviz.embed(hooked, images=images, texts=["红色圆形"], batch_size=2, workers=workers)
            np.testing.assert_allclose(result.image_vectors, hooked.image_embeds(images).numpy(), atol=1e-5)


def test_a_4d_array_is_a_batch_of_images(model):
    batch = np.random.default_rng(0).integers(0, 256, (5, 20, 20, 3), dtype=np.uint8)
    result = clipviz.embed(model, images=batch, progress=False)
    assert result.n_images == 5
    np.testing.assert_allclose(result.vectors, model.image_embeds(list(batch)).numpy(), atol=1e-5)


def test_from_arrays_validates():
    with pytest.raises(ValueError, match="3 image labels were given for 2 image vectors"):
        E.Embeddings.from_arrays(np.ones((2, 4)), image_labels=["a", "b", "c"])
    with pytest.raises(ValueError, match="differ in width"):
        E.Embeddings.from_arrays(np.ones((2, 4)), np.ones((2, 5)))
    made = E.Embeddings.from_arrays(np.ones((2, 4)), np.eye(4)[:1], texts=["t"])
    assert made.sources == ["<image 0>", "<image 1>", "t"]
    np.testing.assert_allclose(np.linalg.norm(made.vectors, axis=1), 1)


# ---------------------------------------------------------------------------- what the cache trusts
def _folder_of(tmp_path, n=4):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for k, image in enumerate(_images(n)):
        image.save(folder / f"{k}.png")
    return folder


def _same_size_replacement(path: Path, seed: int) -> None:
    """Replace the file with other pixels of the same byte size, then restore its mtime (as ``cp -p`` does)."""
    stat = path.stat()
    rng = np.random.default_rng(seed)
    with Image.open(path) as original:
        size = original.size
    while True:
        candidate = path.with_suffix(".new.png")
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(candidate)
        data = candidate.read_bytes()
        candidate.unlink()
        if len(data) == stat.st_size:  # random noise does not compress: the size is the same every time
            break
    path.write_bytes(data)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns


def test_content_key_notices_a_same_size_file_with_its_mtime_restored(model, monkeypatch, tmp_path):
    folder = _folder_of(tmp_path)
    for key, recomputed in (("stat", 0), ("content", 1)):
        cache = tmp_path / f"cache-{key}"
        first = clipviz.embed(model, images=folder, batch_size=2, cache=cache, cache_key=key)
        _same_size_replacement(folder / "3.png", seed=len(key))
        with monkeypatch.context() as patch:
            counter = CountingModel(model, patch)
            second = clipviz.embed(model, images=folder, batch_size=2, cache=cache, cache_key=key)
        assert counter.image_calls == recomputed
        fresh = clipviz.embed(model, images=folder, batch_size=2)
        if key == "stat":  # documented: the stat key cannot see this change
            np.testing.assert_array_equal(np.asarray(second.vectors), np.asarray(first.vectors))
        else:
            np.testing.assert_allclose(np.asarray(second.vectors), fresh.vectors, atol=1e-6)
            assert not np.allclose(first.vectors[3], second.vectors[3])
    with pytest.raises(ValueError, match="cache_key='mtime' is not known"):
        clipviz.embed(model, images=folder, cache=tmp_path / "c", cache_key="mtime")


def test_same_size_garbage_in_a_stored_shard_is_detected(model, monkeypatch, tmp_path):
    folder = _folder_of(tmp_path)
    reference = np.array(clipviz.embed(model, images=folder, batch_size=2, cache=tmp_path / "cache").vectors)
    for shard in sorted((tmp_path / "cache").rglob("*.vectors.npy")):
        data = bytearray(shard.read_bytes())
        data[-8:] = b"\x00\x00\xc0\x7f" * 2  # NaNs in place of the last values, same size, valid .npy
        shard.write_bytes(bytes(data))
    counter = CountingModel(model, monkeypatch)
    again = clipviz.embed(model, images=folder, batch_size=2, cache=tmp_path / "cache")
    assert counter.image_calls == 2  # every damaged batch recomputed, none served
    np.testing.assert_array_equal(np.asarray(again.vectors), reference)
    # and the consolidated run file is checked too
    run_file = next((tmp_path / "cache").rglob("*.run.vectors.npy"))
    data = bytearray(run_file.read_bytes())
    data[-4:] = b"\x00\x00\xc0\x7f"
    run_file.write_bytes(bytes(data))
    third = clipviz.embed(model, images=folder, batch_size=2, cache=tmp_path / "cache")
    assert np.isfinite(np.asarray(third.vectors)).all()
    np.testing.assert_array_equal(np.asarray(third.vectors), reference)


def test_a_cache_path_that_is_a_file_or_not_writable_is_refused_by_name(model, tmp_path):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(NotADirectoryError, match="cache=.*file.txt.* is a file, not a folder"):
        clipviz.embed(model, texts=["a"], cache=a_file)
    with pytest.raises(PermissionError, match="cache=.*sub.* cannot be created"):
        clipviz.embed(model, texts=["a"], cache=a_file / "sub")
    if os.geteuid() == 0:
        pytest.skip("root can write anywhere: the permission case cannot be shown")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(PermissionError, match="cache=.*locked.* not writable"):
            clipviz.embed(model, texts=["a"], cache=locked)
    finally:
        locked.chmod(0o700)


def test_every_store_file_goes_through_one_fsynced_atomic_write(model, monkeypatch, tmp_path):
    from clipviz import store

    synced, written = [], []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(store.os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    monkeypatch.setattr(store.os, "replace", lambda a, b: (written.append(Path(b).name), real_replace(a, b))[1])
    clipviz.embed(model, images=_images(4), texts=["a", "b"], batch_size=2, cache=tmp_path)
    on_disk = sorted(p.name for p in tmp_path.rglob("*") if p.is_file())
    assert sorted(written) == on_disk  # every file, consolidated ones included, came through the helper
    assert len(synced) >= 2 * len(written)  # the file and its folder, each time


def test_unit_rows_are_normalised_block_by_block_and_zero_rows_refused():
    rng = np.random.default_rng(0)
    vectors = (rng.normal(size=(10, 7)) * rng.uniform(0.1, 50, (10, 1))).astype(np.float32)
    out = E._unit(vectors, block=3)  # blocks that do not divide the row count
    np.testing.assert_allclose(out, vectors / np.linalg.norm(vectors.astype(np.float64), axis=1, keepdims=True), rtol=1e-6)
    assert out.dtype == np.float32 and out is not vectors
    vectors[4] = 0
    with pytest.raises(ValueError, match="all zeros"):
        E._unit(vectors, block=3)
