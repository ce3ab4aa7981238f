"""Engines that run :func:`clipviz.embed` beyond one process (``engine="ray"``: Ray Data).

Nothing here is imported by ``import clipviz`` or by ``clipviz.embeddings``: Ray and pyarrow load
only when ``engine="ray"`` is asked for (``pip install "clipviz[scale]"``).
"""
