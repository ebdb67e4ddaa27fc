"""Coarse centroids for IVF: plain k-means for small nlist, two-level k-means beyond.

Flat k-means costs n x nlist x dim per iteration: ~1.6e12 flops at nlist 4k on a 256k sample, an
hour of one core at 237M's nlist ~60k. Two-level k-means (sqrt(nlist) clusters, then each split
into its share of the nlist) costs ~n x 2 sqrt(nlist) x dim, the method of
faiss.contrib.clustering.two_level_clustering, here with exact allocation (no empty splits).
Centroids are spherical (unit norm): with inner-product search, assignment then goes by direction,
so a long vector does not pull every query into its list.
"""

from __future__ import annotations

import math

import faiss
import numpy as np

TWO_LEVEL_ABOVE = 1024
NITER = 20


def _kmeans(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    if k == 1:
        c = x.mean(axis=0, keepdims=True)
        return (c / max(float(np.linalg.norm(c)), 1e-12)).astype(np.float32)
    if len(x) <= k:
        rows = x[np.arange(k) % len(x)].copy()
        return (rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)).astype(np.float32)
    km = faiss.Kmeans(x.shape[1], k, niter=NITER, spherical=True, seed=seed, max_points_per_centroid=256)
    km.train(x)
    return np.asarray(km.centroids, dtype=np.float32)


def _split(sizes: np.ndarray, total: int) -> np.ndarray:
    """Split ``total`` sub-clusters over first-level clusters by size: each >= 1, <= its size."""
    alloc = np.maximum(1, np.floor(sizes * total / sizes.sum())).astype(np.int64)
    alloc = np.minimum(alloc, sizes)
    alloc[sizes == 0] = 0
    while alloc.sum() < total:  # give to the clusters with the most points per centroid
        room = np.where(alloc < sizes, sizes / np.maximum(alloc, 1), -1.0)
        alloc[int(np.argmax(room))] += 1
    while alloc.sum() > total:
        crowd = np.where(alloc > 1, sizes / alloc, np.inf)
        alloc[int(np.argmin(crowd))] -= 1
    return alloc


def coarse_centroids(x: np.ndarray, nlist: int, *, seed: int = 0) -> np.ndarray:
    """(nlist, dim) unit-norm centroids of the float32 sample ``x``."""
    if nlist <= TWO_LEVEL_ABOVE:
        return _kmeans(x, nlist, seed)
    nc1 = int(math.sqrt(nlist))
    top = _kmeans(x, nc1, seed)
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(top)
    _, assign = index.search(x, 1)
    assign = assign.ravel()
    sizes = np.bincount(assign, minlength=nc1)
    alloc = _split(sizes, nlist)
    parts = [_kmeans(x[assign == c], int(alloc[c]), seed + 1 + c) for c in range(nc1) if alloc[c] > 0]
    out = np.vstack(parts)
    assert len(out) == nlist, (len(out), nlist)
    return out
