"""JointLayout / JointUMAP / JointPCA / JointTSNE, bad input, placing new points, the background fit,
the modality gap, the map plot and the EmbeddingApp."""

from __future__ import annotations

import numpy as np
import pytest

import clipviz
from clipviz.embeddings import Embeddings
from clipviz.projection import (
    JointLayout,
    JointPCA,
    JointTSNE,
    JointUMAP,
    close_modality_gap,
    cosine_knn,
    exact_cosine_knn,
    fit_in_background,
    modality_gap,
    place_by_neighbours,
)


def gap_data(n_images=24, n_texts=12, z=0.6, dim=6, seed=0):
    """Unit vectors with a known gap: images on a circle at height +z, texts at −z (dims 0, 1, 2),
    plus zero-mean noise in the other dims. Centres (0, 0, ±z·s, 0…): gap = 2·z·s along axis 2."""
    rng = np.random.default_rng(seed)

    def ring(n, height):
        angles = 2 * np.pi * np.arange(n) / n  # evenly spaced: cos and sin average to zero
        radius = np.sqrt(1 - height**2)
        rows = np.zeros((n, dim))
        rows[:, 0], rows[:, 1], rows[:, 2] = radius * np.cos(angles), radius * np.sin(angles), height
        return rows

    return ring(n_images, z), ring(n_texts, -z), rng


def clustered(n_images=60, n_texts=12, dim=16, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim)) * 2
    image_labels, text_labels = np.arange(n_images) % classes, np.arange(n_texts) % classes
    images = centres[image_labels] + rng.normal(size=(n_images, dim)) * 0.3 + 1.5
    texts = centres[text_labels] + rng.normal(size=(n_texts, dim)) * 0.3 - 1.5
    return Embeddings.from_arrays(images, texts, [f"c{i}" for i in image_labels], [f"c{i}" for i in text_labels],
                                  texts=[f"a photo of c{i}" for i in text_labels])


# ---------------------------------------------------------------------------- the modality gap
def test_gap_on_constructed_data_is_known():
    images, texts, _ = gap_data(z=0.6)
    gap = modality_gap((images, texts))
    np.testing.assert_allclose(gap.vector, [0, 0, 1.2, 0, 0, 0], atol=1e-12)
    assert gap.norm == pytest.approx(1.2)
    assert gap.centroid_cosine == pytest.approx(-1.0)
    assert (gap.n_images, gap.n_texts) == (24, 12)
    assert "1.2000" in gap._repr_html_() and "Liang" in gap._repr_html_()
    # the same through an Embeddings, and no gap when both modalities share a centre
    assert modality_gap(Embeddings.from_arrays(images, texts)).norm == pytest.approx(1.2)
    assert modality_gap(gap_data(z=0.0)[:2]).norm == pytest.approx(0.0, abs=1e-12)


def test_closing_the_gap_centres_each_modality():
    embeddings = clustered()
    assert modality_gap(embeddings).norm > 0.5
    closed = close_modality_gap(embeddings)
    assert modality_gap(closed).norm < 0.15  # re-normalising after centring leaves only a small residue
    np.testing.assert_allclose(np.linalg.norm(closed.vectors, axis=1), 1, atol=1e-5)
    assert list(closed.labels) == list(embeddings.labels)
    with pytest.raises(ValueError, match="needs both"):
        modality_gap(Embeddings.from_arrays(np.eye(3)))


# ---------------------------------------------------------------------------- the estimators
def test_estimator_conventions_and_validation():
    from sklearn.base import BaseEstimator, clone

    projection = JointLayout(method="nope", n_neighbors=-3)  # __init__ stores, never validates
    assert isinstance(projection, BaseEstimator)
    assert projection.get_params()["method"] == "nope" and not hasattr(projection, "embedding_")
    with pytest.raises(ValueError, match="method must be one of"):
        projection.fit(clustered())
    with pytest.raises(ValueError, match="n_neighbors"):
        JointUMAP(n_neighbors=1).fit(clustered())
    with pytest.raises(ValueError, match="sample_size"):
        JointUMAP(sample_size=5).fit(clustered())
    with pytest.raises(TypeError, match="tuple"):
        JointUMAP().fit(np.ones((5, 3)))
    with pytest.raises(RuntimeError, match="not fitted"):
        JointUMAP().plot()
    with pytest.raises(RuntimeError, match="not fitted"):
        JointPCA().transform(np.ones((2, 3)))
    assert JointLayout(method="pca").set_params(close_gap=True).close_gap is True
    assert repr(JointLayout(method="pca")) == "JointLayout(method='pca')"
    # honest names: each class has only its own method's parameters
    assert repr(JointUMAP(n_neighbors=5)) == "JointUMAP(n_neighbors=5)"
    assert set(JointPCA().get_params()) == {"n_components", "close_gap", "random_state"}
    assert "perplexity" in JointTSNE().get_params() and "n_neighbors" not in JointTSNE().get_params()
    assert clone(JointTSNE(perplexity=4)).get_params()["perplexity"] == 4


def test_jointumap_with_another_method_still_runs_but_warns():
    with pytest.warns(FutureWarning, match="not UMAP; use JointPCA"):
        old = JointUMAP("pca", random_state=0).fit(clustered())
    np.testing.assert_allclose(old.embedding_, JointPCA(random_state=0).fit_transform(clustered()), atol=1e-5)


@pytest.mark.parametrize("cls", [JointPCA, JointTSNE])
def test_pca_and_tsne_map_images_then_texts_deterministically(cls):
    embeddings = clustered()
    images, texts = np.asarray(embeddings.image_vectors), np.asarray(embeddings.text_vectors)
    first = cls(random_state=3).fit_transform((images, texts))
    again = cls(random_state=3)
    assert again.fit(embeddings) is again
    assert first.shape == (72, 2) and again.message_ == "" and again.n_dropped_ == 0
    np.testing.assert_allclose(first, again.embedding_, atol=1e-5)
    assert (again.n_images_, again.n_texts_) == (60, 12) and again.gap_.norm > 0.5
    # without the gap, texts sit among the images of their class
    closed = cls(close_gap=True, random_state=3).fit_transform(embeddings)
    assert closed.shape == (72, 2) and not np.allclose(closed, first)


# ---------------------------------------------------------------------------- bad input
def test_nan_and_infinite_rows_are_dropped_and_counted():
    embeddings = clustered()
    images, texts = np.array(embeddings.image_vectors), np.array(embeddings.text_vectors)
    images[3] = np.nan
    texts[2, 5] = np.inf
    layout = JointPCA(random_state=0).fit((images, texts))
    assert layout.n_dropped_ == 2 and "2 of 72 vectors contain NaN or infinite values" in layout.message_
    assert layout.embedding_.shape == (72, 2)
    assert np.isnan(layout.embedding_[[3, 62]]).all() and np.isfinite(np.delete(layout.embedding_, [3, 62], 0)).all()
    assert list(np.flatnonzero(~layout.valid_)) == [3, 62]
    # the same layout as without those rows
    clean = JointPCA(random_state=0).fit_transform((np.delete(images, 3, 0), np.delete(texts, 2, 0)))
    np.testing.assert_allclose(np.abs(np.delete(layout.embedding_, [3, 62], 0)), np.abs(clean), atol=1e-4)
    assert "NaN" in layout._repr_html_()


@pytest.mark.parametrize("cls", [JointUMAP, JointTSNE, JointPCA])
def test_one_to_three_points_get_a_pca_layout_and_a_message(cls):
    rng = np.random.default_rng(0)
    for n in (2, 3):
        layout = cls(random_state=0).fit((rng.normal(size=(n, 8)), None))
        assert layout.method_ == "pca" and np.isfinite(layout.embedding_).all()
        assert len(np.unique(layout.embedding_.round(5), axis=0)) == n  # distinct points stay apart
        if cls is not JointPCA:
            assert f"{n} points are too few" in layout.message_
    single = cls().fit((rng.normal(size=(1, 8)), None))
    assert single.method_ == "origin" and single.embedding_.tolist() == [[0.0, 0.0]] and "single point" in single.message_


def test_identical_vectors_and_empty_input():
    layout = JointUMAP(random_state=0).fit((np.ones((20, 8)), np.ones((4, 8))))
    assert layout.method_ == "spiral" and "all 24 vectors are identical" in layout.message_
    assert len(np.unique(layout.embedding_.round(6), axis=0)) == 24  # each point can still be hovered
    with pytest.raises(ValueError, match="all 3 vectors contain NaN"):
        JointLayout().fit((np.full((3, 4), np.nan), None))
    empty = Embeddings.from_arrays(np.ones((2, 4)))
    from dataclasses import replace

    empty = replace(empty, vectors=np.zeros((0, 4), np.float32), modality=np.array([], dtype="<U5"),
                    labels=np.array([], dtype=object), sources=[], index=np.zeros(0, int), inputs=[])
    with pytest.raises(ValueError, match="no points to lay out"):
        JointPCA().fit(empty)


# ---------------------------------------------------------------------------- new points
def test_transform_places_new_points_near_their_neighbours():
    embeddings = clustered()
    for layout in (JointPCA(random_state=0).fit(embeddings), JointTSNE(random_state=0).fit(embeddings)):
        again = layout.transform(embeddings)  # the fitted points land where they are (PCA) or close by
        spread = np.ptp(layout.embedding_, axis=0).max()
        assert np.median(np.linalg.norm(again - layout.embedding_, axis=1)) < 0.1 * spread
        bad = np.array(embeddings.vectors[:3])
        bad[1] = np.nan
        placed = layout.transform(bad)
        assert np.isnan(placed[1]).all() and np.isfinite(placed[[0, 2]]).all()
    with pytest.raises(ValueError, match="modality"):
        JointPCA(close_gap=True).fit(embeddings).transform(np.asarray(embeddings.vectors))
    with pytest.raises(ValueError, match="16-d"):
        JointPCA().fit(embeddings).transform(np.ones((2, 5)))


def test_cosine_knn_and_weighted_placement():
    rng = np.random.default_rng(2)
    base = rng.normal(size=(500, 8)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    queries = base[:40] + rng.normal(size=(40, 8)).astype(np.float32) * 0.01
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    indices, distances = cosine_knn(queries, base, 5)
    expected = np.argsort(-(queries @ base.T), axis=1)[:, :5]
    assert (indices == expected).mean() > 0.99 and (indices[:, 0] == np.arange(40)).all()
    assert (np.diff(distances, axis=1) >= 0).all()
    layout = rng.normal(size=(500, 2)).astype(np.float32)
    # equal distances → plain mean; one much nearer neighbour → that neighbour's position dominates
    np.testing.assert_allclose(place_by_neighbours(layout, np.array([[1, 2]]), np.zeros((1, 2), np.float32)),
                               layout[[1, 2]].mean(axis=0, keepdims=True), atol=1e-6)
    near = place_by_neighbours(layout, np.array([[1, 2, 3]]), np.array([[0.0, 0.5, 0.5]], np.float32))
    weights = np.exp([0, -1.5, -1.5]) / np.exp([0, -1.5, -1.5]).sum()  # σ = mean excess = 1/3
    np.testing.assert_allclose(near[0], weights @ layout[[1, 2, 3]], atol=1e-5)


# ---------------------------------------------------------------------------- in the background
def test_background_fit_reports_progress_and_can_be_cancelled():
    embeddings = clustered()
    seen, done = [], []
    job = fit_in_background(JointPCA(random_state=0), embeddings, on_progress=lambda f, w: seen.append(f),
                            on_done=done.append)
    result = job.wait(120)
    assert result is not None and done == [result] and seen and seen[-1] == 1.0
    assert result["method"] == "pca" and result["embedding"].shape == (72, 2)
    np.testing.assert_allclose(result["embedding"], JointPCA(random_state=0).fit_transform(embeddings), atol=1e-4)
    cancelled = []
    slow = fit_in_background(JointTSNE(random_state=0), embeddings, on_done=cancelled.append,
                             on_error=cancelled.append)
    slow.cancel()
    assert slow.wait(60) is None and not slow.running and cancelled == []
    assert slow.process.returncode is not None


def test_exact_cosine_knn_matches_brute_force():
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(300, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    indices, distances = exact_cosine_knn(vectors, 7)
    assert indices.shape == (300, 7) and (indices[:, 0] == np.arange(300)).all() and (distances[:, 0] == 0).all()
    full = 1 - vectors @ vectors.T
    np.fill_diagonal(full, -1)
    expected = np.argsort(full, axis=1, kind="stable")[:, :7]
    assert (np.sort(indices, axis=1) == np.sort(expected, axis=1)).mean() > 0.999  # ties may reorder
    np.testing.assert_allclose(distances[:, 1:], np.take_along_axis(full, expected, 1)[:, 1:], atol=1e-5)
    assert (np.diff(distances, axis=1) >= 0).all()


@pytest.mark.slow  # umap-learn compiles its kernels on first use (tens of seconds in a fresh process)
def test_sampled_umap_places_the_rest_and_keeps_neighbourhoods():
    from sklearn.manifold import trustworthiness

    embeddings = clustered(n_images=400, n_texts=20)
    layout = JointUMAP(random_state=0, sample_size=120).fit(embeddings)
    assert layout.method_ == "umap+placed" and len(layout.sample_rows_) == 120
    assert set(np.flatnonzero(embeddings.is_text)) <= set(layout.sample_rows_)  # every text is in the sample
    assert "sample of 120" in layout.message_ and np.isfinite(layout.embedding_).all()
    assert trustworthiness(np.asarray(embeddings.vectors), layout.embedding_, n_neighbors=10, metric="cosine") > 0.85
    assert layout.transform(np.asarray(embeddings.vectors[:5])).shape == (5, 2)


@pytest.mark.slow  # umap-learn compiles its kernels on first use (tens of seconds in a fresh process)
def test_umap_is_reproducible_and_keeps_neighbourhoods():
    from sklearn.manifold import trustworthiness

    embeddings = clustered(n_images=120, n_texts=20)
    first = JointUMAP(random_state=0).fit_transform(embeddings)
    second = JointUMAP(random_state=0).fit_transform((embeddings.image_vectors, embeddings.text_vectors))
    assert first.shape == (140, 2)
    np.testing.assert_array_equal(first, second)
    assert trustworthiness(np.asarray(embeddings.vectors), first, n_neighbors=10, metric="cosine") > 0.9
    with_gap = JointUMAP(random_state=0, close_gap=True).fit(embeddings)
    assert with_gap.embedding_.shape == (140, 2) and with_gap.reducer_ is not None


# ---------------------------------------------------------------------------- plotting
def test_plot_draws_points_texts_pairs_and_legend():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection

    embeddings = clustered()
    projection = JointPCA(random_state=0).fit(embeddings)
    ax = projection.plot(color_by="label")
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert {"image", "text", "c0", "c3", "matched pair"} <= set(legend)
    lines = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert len(lines) == 1 and len(lines[0].get_segments()) == len(embeddings.matched_pairs()) == 60 * 3
    assert sum(t.get_text().startswith("a photo of") for t in ax.texts) == 12
    fig, ax2 = plt.subplots()
    assert projection.plot(ax=ax2, pairs=False, annotate_texts=3) is ax2
    assert not [c for c in ax2.collections if isinstance(c, LineCollection)] and len(ax2.texts) == 3
    assert "image (60)" in [t.get_text() for t in ax2.get_legend().get_texts()]
    with pytest.raises(ValueError, match="color_by"):
        projection.plot(color_by="size")
    with pytest.raises(ValueError, match="no thumbnails"):
        projection.plot(thumbnails=True)
    plt.close("all")


# ---------------------------------------------------------------------------- the app, headless
def _hover(app, row):
    """What the browser gets back when it hovers ``row`` (jupyter-scatter's tooltip message)."""
    sent = []
    app.map.send = lambda message, buffers=None: sent.append(message)
    app.map._handle_custom_msg({"type": "tooltip", "index": row, "properties": ["label", "row", "text"],
                                "preview": "text"}, [])
    del app.map.send
    return sent[0]


def test_embedding_app_map_hover_selection_colour_and_filter(tiny_hooked, tmp_path):
    from PIL import Image

    from clipviz.widgets import EmbeddingApp

    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)) for _ in range(11)]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    texts = ["red", "green", "blue"]
    embeddings = clipviz.embed(tiny_hooked["clip"], images=[*images, images[0]], texts=texts,
                               labels={"images": ["red", "green", "blue"] * 4, "texts": texts})
    embeddings.inputs[11] = str(broken)  # the file went away after embedding: a placeholder, not a crash
    app = EmbeddingApp(embeddings, method="pca", columns={"score": np.linspace(0, 1, 15)})
    assert app.coords.shape == (15, 2) and app.last_error is None and app.layout_method == "pca"
    assert "12 images + 3 texts" in app._status.value and "modality gap" in app._status.value
    assert type(app.map).__module__.startswith("clipviz")  # the lazy-preview widget, no matplotlib
    assert app.previews.made == 0  # nothing shipped up front

    reply = _hover(app, 4)
    assert reply["index"] == 4 and reply["properties"] == {"label": "green", "row": 4, "text": "<image 4>"}
    assert reply["preview"].startswith("data:image/jpeg;base64,")
    import base64
    import io

    thumb = Image.open(io.BytesIO(base64.b64decode(reply["preview"].split(",", 1)[1])))
    assert max(thumb.size) <= 96
    assert _hover(app, 4)["preview"] == reply["preview"] and app.previews.made == 1  # made once
    assert _hover(app, 13)["preview"].startswith("data:image/svg+xml")  # a text shows its text
    assert _hover(app, 11)["preview"].startswith("data:image/jpeg")  # the stored 32 px thumbnail stands in
    bare = EmbeddingApp(clustered(), method="pca")  # no file, no stored thumbnail: a placeholder
    assert _hover(bare, 0)["preview"].startswith("data:image/svg+xml") and bare.previews.failed == [0]

    picked = []
    app.on_select(picked.append)
    app.map.selection = np.array([4, 13, 2], dtype="uint32")  # what a lasso in the browser sends
    assert app.selected_rows == [4, 13, 2] and picked[-1] == [4, 13, 2]
    assert app.selected_image is images[4] and app.selected_text == "green" and app.selected_row == 4
    assert "3 selected" in app._details.value
    app.highlight([7])
    assert list(app.map.selection) == [7] and list(app.map.zoom_to) == [7] and picked[-1] == [7]
    app.select(None)
    assert app.selected_rows == [] and picked[-1] == []

    assert app.color_columns == ["modality", "label", "prediction", "correct", "score"]
    for column in app.color_columns:
        app._color.value = column
        assert app._scatter.color()["by"] == column and app.last_error is None
    assert set(app.table["correct"][:12]) <= {"correct", "wrong"} and set(app.table["correct"][12:]) == {"text"}
    app._show.value = "texts"
    assert list(app.map.filter) == [12, 13, 14]
    app._show.value = "all"
    assert app.map.filter is None or len(app.map.filter) == 15

    app.select(99)  # errors go into the app, not the void
    assert "no point 99" in app.last_error
    with pytest.raises(ValueError, match="color_by must be one of"):
        app.color_by("size")


def test_embedding_app_swaps_in_a_background_layout_and_supersedes(tiny_hooked):
    from clipviz.widgets import EmbeddingApp

    embeddings = clustered()
    app = EmbeddingApp(embeddings, method="tsne")
    assert app.layout_method == "pca"  # the first picture, at once
    first_job = app._job
    assert first_job is not None and "computing" in app._status.value
    app._gap.value = True  # a second request cancels the first: never two layouts racing
    assert first_job.cancelled and app._job is not first_job
    assert app.wait(300)
    assert app.layout_method == "tsne" and "removed before projecting" in app._status.value
    first_job.wait(30)
    assert first_job.result is None
    assert not np.allclose(app.coords, JointPCA(random_state=0).fit_transform(embeddings))
    assert len(app.map.points) == 72


def test_embedding_app_reports_dropped_rows():
    from clipviz.widgets import EmbeddingApp

    embeddings = clustered()
    vectors = np.array(embeddings.vectors)
    vectors[5] = np.nan
    from dataclasses import replace

    app = EmbeddingApp(replace(embeddings, vectors=vectors), method="pca")
    assert "1 of 72 vectors contain NaN" in app._status.value
    assert 5 not in set(app.map.filter) and len(app.map.filter) == 71 and np.isfinite(app.coords).all()


def test_embedding_app_search_box_shows_hits_and_highlights_them(tiny_hooked):
    from PIL import Image

    from clipviz.widgets import EmbeddingApp

    rng = np.random.default_rng(1)
    images = [Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)) for _ in range(9)]
    texts = ["red", "green", "blue"]
    model = tiny_hooked["clip"]
    embeddings = clipviz.embed(model, images=images, texts=texts,
                               labels={"images": texts * 3, "texts": texts})
    app = EmbeddingApp(embeddings, method="pca", model=model, search_k=4)
    zooms = []
    original_zoom = app._scatter.zoom
    app._scatter.zoom = lambda *args, **kwargs: (zooms.append(kwargs.get("to")), original_zoom(*args, **kwargs))[1]
    assert not app._query.disabled

    app._query.value = "a red square"  # what typing + Enter in the box does
    expected = embeddings.search("a red square", k=4, model=model)
    assert app.last_error is None and app.hits is not None
    assert app.hits.rows.tolist() == expected.rows.tolist()
    assert all(embeddings.modality[r] == "image" for r in app.hits.rows)  # a text finds images
    assert app.selected_rows == expected.rows.tolist() and zooms[-1] == expected.rows.tolist()
    assert app._hits.value.count("<img ") == 4 and "a red square" in app._hits.value
    assert app.previews.made == 4  # thumbnails only for the hits

    app._query.value = ""  # clearing the box clears the hits, not the selection
    assert app.hits is None and app._hits.value == "" and app.selected_rows == expected.rows.tolist()

    no_model = EmbeddingApp(embeddings, method="pca")
    assert no_model._query.disabled
    with pytest.raises(ValueError, match="needs the model"):
        no_model.search("red")


def test_previews_keep_at_most_their_byte_budget_dropping_the_least_recently_shown():
    from PIL import Image

    from clipviz.embeddings import Embeddings
    from clipviz.thumbnails import Previews

    rng = np.random.default_rng(0)
    emb = Embeddings.from_arrays(rng.normal(size=(6, 8)))
    emb.inputs = [Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)) for _ in range(6)]
    one = len(Previews(emb).url(0))
    previews = Previews(emb, max_bytes=int(2.5 * one))  # room for two noise previews
    first = previews.url(0)
    previews.url(1)
    previews.url(0)  # shown again: now the most recent
    previews.url(2)  # over budget: row 1, the least recently shown, goes
    assert previews.nbytes() <= previews.max_bytes and previews.made == 3
    assert previews.url(0) == first and previews.made == 3  # still kept
    previews.url(1)
    assert previews.made == 4  # made again after it was dropped
    with pytest.raises(ValueError, match="max_bytes"):
        Previews(emb, max_bytes=-1)
