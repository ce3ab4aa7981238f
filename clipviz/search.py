"""Exact nearest-neighbour search over an :class:`~clipviz.embeddings.Embeddings` table, by cosine similarity.

``emb.search(query, k=10, model=model)``: the query becomes one unit vector (a text through the
model's text tower, an image through its image tower, or a vector as given) and every row is scored
by cosine similarity, as CLIP retrieval does (Radford et al., 2021). The search is exact and never
loads the table whole: the (possibly memory-mapped, possibly float16) vectors are read
``block_rows`` rows at a time, each block multiplied with the query (float16 unit vectors through a
float16 product and an exact float32 rescoring of the candidates, see :func:`top_k`), and a running
top-k is kept with ``argpartition``. Memory is ``O(block_rows * d)``; time is one pass over
the vectors (a million 512-d float16 rows is 1 GB read per query).

Vectors from one model and a query from another are never comparable: when the table knows which
model made it (a weights fingerprint, or at least a name), a query through another model is refused.
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass

import numpy as np

AMONG = ("image", "text", "all")


@dataclass
class Hits:
    """The ``k`` nearest rows, best first: ``rows`` into the table, ``scores`` (cosine), and their
    ``modality``, ``sources`` and ``labels``."""

    rows: np.ndarray
    scores: np.ndarray
    modality: list
    sources: list
    labels: list
    query: str = ""

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self):
        return iter(zip(self.rows.tolist(), self.scores.tolist(), self.sources))

    def __repr__(self) -> str:
        lines = [f"{r:>8}  {s:+.4f}  {m:<5}  {src}" for r, s, m, src in
                 zip(self.rows.tolist(), self.scores.tolist(), self.modality, self.sources)]
        return f"Hits for {self.query}:\n" + "\n".join(lines)

    def _repr_html_(self) -> str:
        body = "".join(f"<tr><td>{r}</td><td>{s:.4f}</td><td>{m}</td><td>{html.escape(str(src))}</td></tr>"
                       for r, s, m, src in zip(self.rows.tolist(), self.scores.tolist(), self.modality, self.sources))
        return (f"<div><b>Hits for {html.escape(self.query)}</b><table><tr><th>row</th><th>cosine</th>"
                f"<th>modality</th><th>source</th></tr>{body}</table></div>")


def check_model(emb, model) -> None:
    """Refuse ``model`` when ``emb`` says another model made its vectors (or the widths differ)."""
    from .embeddings import _output_dim, model_fingerprint

    mine = model_fingerprint(model)
    theirs_name = emb.model_name or "?"
    if emb.fingerprint and emb.fingerprint != mine:
        raise ValueError(
            f"model: these vectors were made by model {theirs_name!r} (weights fingerprint {emb.fingerprint[:12]}), "
            f"not by {model.name!r} (fingerprint {mine[:12]}); vectors of two models are not comparable: "
            "pass the model that made them, or re-embed with this one")
    if not emb.fingerprint and emb.model_name and emb.model_name != model.name:
        raise ValueError(f"model: these vectors were made by model {emb.model_name!r}, not by {model.name!r}; "
                         "vectors of two models are not comparable: pass the model that made them")
    if _output_dim(model) != emb.dim:
        raise ValueError(f"model: {model.name!r} makes {_output_dim(model)}-d vectors but these are {emb.dim}-d: "
                         "they come from another model")


def query_vector(emb, query, model) -> tuple[np.ndarray, str, str]:
    """``(unit vector [d], query modality, description)`` for a text, an image or a vector."""
    if isinstance(query, str) and not _is_image_file(query):
        return _encoded(emb, model, "text", query), "text", repr(query)
    if _is_vector(query):
        vector = np.asarray(query.detach().cpu() if hasattr(query, "detach") else query, dtype=np.float64)
        if vector.shape != (emb.dim,):
            raise ValueError(f"query: a vector must have shape ({emb.dim},), got {vector.shape}")
        norm = np.linalg.norm(vector)
        if not np.isfinite(norm) or norm == 0:
            raise ValueError("query: the vector is all zeros or not finite and has no direction")
        return (vector / norm).astype(np.float32), "vector", f"a {emb.dim}-d vector"
    description = str(query) if isinstance(query, (str, os.PathLike)) else f"a {type(query).__name__} image"
    return _encoded(emb, model, "image", query), "image", description


def search(emb, query, k: int = 10, *, model=None, among: str | None = None, block_rows: int = 65536) -> Hits:
    """The ``k`` rows of ``emb`` with the highest cosine similarity to ``query``, best first (exact).

    ``among``: which rows compete: ``"image"``, ``"text"`` or ``"all"``. By default a text finds
    images and an image finds texts (the cross-modal retrieval CLIP was trained for), and a vector
    searches all rows; when the table has no rows of that modality, all rows compete.
    """
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if among is not None and among not in AMONG:
        raise ValueError(f"among={among!r} is not known: pass one of {AMONG}")
    if block_rows < 1:
        raise ValueError("block_rows must be at least 1")
    vector, kind, description = query_vector(emb, query, model)
    if among is None:
        among = {"text": "image", "image": "text"}.get(kind, "all")
        if among != "all" and not (emb.modality == among).any():
            among = "all"
    allowed = None if among == "all" else np.asarray(emb.modality == among)
    rows, scores = top_k(emb.vectors, vector, k, allowed=allowed, block_rows=block_rows)
    return Hits(rows, scores, [str(emb.modality[r]) for r in rows], [emb.sources[r] for r in rows],
                [emb.labels[r] for r in rows], description)


_HALF_MARGIN = 4e-3  # >> float16 rounding of a unit-vector dot product (2**-11 of the result plus accumulation)


def top_k(vectors, query: np.ndarray, k: int, *, allowed=None, block_rows: int = 65536):
    """Exact top-``k`` cosine similarities of ``query`` (unit, ``[d]``) against ``vectors`` ``[n, d]``, blockwise.

    float16 unit vectors (as clip-retrieval stores them) take a fast path: each block is scored by a
    float16 matrix-vector product in torch (no float32 copy of the block), every row within
    ``_HALF_MARGIN`` of the block's k-th score is kept as a candidate, and candidates are rescored
    exactly in float32 with their norms. The margin bounds float16's rounding of the score, so no
    true top-k row can be left out: the result equals the float32 search.
    """
    query = np.asarray(query, np.float32)
    fast = vectors.dtype == np.float16 and _looks_unit(vectors)
    if fast:
        import warnings

        import torch

        query_half = torch.from_numpy(query).half()
    best_rows = np.zeros(0, np.int64)
    best_scores = np.zeros(0, np.float32)
    for start in range(0, len(vectors), block_rows):
        raw = np.asarray(vectors[start : start + block_rows])
        if fast:
            with warnings.catch_warnings():  # a read-only memory map: torch only reads it
                warnings.simplefilter("ignore", UserWarning)
                rough = torch.mv(torch.from_numpy(raw), query_half).float().numpy()
            if allowed is not None:
                rough[~allowed[start : start + len(raw)]] = -np.inf
            if len(rough) > k:
                floor = np.partition(rough, len(rough) - k)[len(rough) - k] - _HALF_MARGIN
                if len(best_scores) >= k:
                    floor = max(floor, float(best_scores.min()) - _HALF_MARGIN)
                keep = np.flatnonzero(rough >= floor)
            else:
                keep = np.flatnonzero(np.isfinite(rough))
            scores = _cosine(raw[keep], query)
        else:
            scores = _cosine(raw, query)
            if allowed is not None:
                scores[~allowed[start : start + len(raw)]] = -np.inf
            keep = np.argpartition(-scores, k - 1)[:k] if len(scores) > k else np.arange(len(scores))
            scores = scores[keep]
        best_rows = np.concatenate([best_rows, start + keep])
        best_scores = np.concatenate([best_scores, scores])
        if len(best_rows) > k:
            top = np.argpartition(-best_scores, k - 1)[:k]
            best_rows, best_scores = best_rows[top], best_scores[top]
    order = np.lexsort((best_rows, -best_scores))  # best first; ties by row, so results are deterministic
    best_rows, best_scores = best_rows[order], best_scores[order]
    finite = np.isfinite(best_scores)  # rows that were not allowed never count as hits
    return best_rows[finite], best_scores[finite]


def _cosine(block: np.ndarray, query: np.ndarray) -> np.ndarray:
    block = np.asarray(block, dtype=np.float32)
    scores = block @ query
    norms = np.sqrt(np.einsum("ij,ij->i", block, block))
    return np.divide(scores, norms, out=np.full_like(scores, -np.inf), where=norms > 0)


def _looks_unit(vectors) -> bool:
    """Rows of (close to) unit length, judged on up to 1,000 evenly spread rows."""
    if not len(vectors):
        return False
    rows = np.asarray(vectors[:: max(1, len(vectors) // 1000)], dtype=np.float32)
    return bool(np.all(np.abs(np.linalg.norm(rows, axis=1) - 1) < 2e-3))


def _is_vector(query) -> bool:
    if hasattr(query, "detach") and hasattr(query, "ndim"):
        return query.ndim == 1
    return isinstance(query, np.ndarray) and query.ndim == 1 or (
        isinstance(query, (list, tuple)) and query and all(isinstance(v, (int, float)) for v in query))


def _is_image_file(text: str) -> bool:
    from .images import IMAGE_SUFFIXES

    return text.lower().endswith(IMAGE_SUFFIXES) and os.path.isfile(text)


def _encoded(emb, model, kind: str, query) -> np.ndarray:
    if model is None:
        raise ValueError(f"model: a {kind} query must be embedded: pass model= (the model that made these vectors), "
                         "or pass a vector")
    check_model(emb, model)
    import torch

    with torch.no_grad():
        if kind == "text":
            vector = model.text_embeds([query])[0]
        else:
            from .images import load_image

            vector = model.image_embeds([load_image(query)])[0]
    return vector.float().cpu().numpy()
