"""Chunked, sharded Zarr v3 score stores (see docs/contracts.md).

A store holds one array per scored weight matrix (float32; a mean store may keep
float16 or bfloat16, ``storage_dtype``), named by its Hugging Face parameter
name, plus group attributes describing how it was made.  Final stores hold
means; shard stores hold sums and merge exactly.  Every chunk carries
a crc32c checksum so a corrupted chunk fails loudly instead of reading as numbers.
Chunks are packed into Zarr's sharding codec (one file per matrix up to
``SHARD_BYTES``), so a store has a few files per matrix however large the model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator, Mapping

import numpy as np
import torch
import zarr
from zarr.codecs import Crc32cCodec, ZstdCodec

from ..atomic import atomic_dir

CHUNK_BYTES = 2 << 20  # about 2 MB per chunk: small enough to stream, large enough to compress well
SHARD_BYTES = 256 << 20  # chunks per file: a 7B matrix (<= 180 MB in float32) is one file


class StoreError(RuntimeError):
    pass


def _chunks(shape: tuple[int, ...], itemsize: int = 4) -> tuple[int, ...]:
    row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * itemsize if len(shape) > 1 else itemsize
    rows = max(1, min(shape[0], CHUNK_BYTES // max(row_bytes, 1)))
    return (rows, *shape[1:])


def _shards(shape: tuple[int, ...], chunks: tuple[int, ...], itemsize: int = 4) -> tuple[int, ...]:
    """Whole chunk rows per shard file, at most SHARD_BYTES (and never more rows than the array)."""
    chunk_bytes = int(np.prod(chunks, dtype=np.int64)) * itemsize
    per = max(1, SHARD_BYTES // max(chunk_bytes, 1))
    rows = min(chunks[0] * per, -(-shape[0] // chunks[0]) * chunks[0])
    return (rows, *shape[1:])


# How a store may keep its values (attribute ``storage_dtype``): float32 always for sums (the merge
# stays exact); float16 or bfloat16 selectable for the means (scoring.store_dtype).  Zarr has no
# bfloat16, so bfloat16 is kept as its 16 raw bits (uint16; 0x7FC0, a NaN, as the fill value).
STORAGE_DTYPES = ("float32", "float16", "bfloat16")
_BF16_NAN = 0x7FC0


def to_bfloat16_bits(a: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bits, rounded to nearest even (as torch's conversion)."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return np.where(np.isnan(a), _BF16_NAN, rounded).astype(np.uint16)


def from_bfloat16_bits(b: np.ndarray) -> np.ndarray:
    return (b.astype(np.uint32) << 16).view(np.float32)


def _encode(data: np.ndarray, storage: str) -> tuple[np.ndarray, str, float | int]:
    """(values as stored, zarr dtype, fill value) of float32 ``data``."""
    if storage == "float32":
        return data, "float32", np.nan
    if storage == "float16":
        top = float(np.abs(data).max(initial=0.0))
        if top > float(np.finfo(np.float16).max):
            raise StoreError(f"float16 cannot keep a mean activation of {top:.3g} (largest float16: 65504); "
                             "set scoring.store_dtype to bfloat16 or float32")
        return data.astype(np.float16), "float16", np.nan
    if storage == "bfloat16":
        return to_bfloat16_bits(data), "uint16", _BF16_NAN
    raise StoreError(f"unknown storage dtype {storage!r}; use one of {', '.join(STORAGE_DTYPES)}")


def _to_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float32).numpy()
    return np.asarray(x, dtype=np.float32)


def write_store(path: str | Path, arrays: Mapping[str, object] | Iterable[tuple[str, object]], attrs: dict,
                storage: str = "float32") -> Path:
    """Write ``arrays`` (name -> 2-D array, or an iterable of such pairs, consumed one at a time so
    only one matrix need be in memory) and ``attrs`` to a new store at ``path``, values kept as
    ``storage`` (``STORAGE_DTYPES``; read back as float32).

    The store is assembled under a temporary sibling name and renamed when complete:
    an interrupted write never leaves a store that looks finished.
    """
    path = Path(path)
    pairs = arrays.items() if isinstance(arrays, Mapping) else arrays
    # A job killed while writing (SIGKILL, node failure) leaves its temporary store behind; one job
    # writes one path, so leftovers of this path are garbage (as large as the model in float32).
    with atomic_dir(path, clean_stale=True) as tmp:
        root = zarr.open_group(store=str(tmp), mode="w", zarr_format=3)
        for name, value in pairs:
            data, dtype, fill = _encode(_to_numpy(value), storage)
            size = data.dtype.itemsize
            chunks = _chunks(data.shape, size)
            arr = root.create_array(
                name, shape=data.shape, chunks=chunks, shards=_shards(data.shape, chunks, size), dtype=dtype,
                compressors=[ZstdCodec(level=3), Crc32cCodec()], fill_value=fill,
            )
            arr[...] = data
            del data
        root.attrs.update(_jsonable({**attrs, "storage_dtype": storage}))
    return path


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    if isinstance(x, Path):
        return str(x)
    return x


class ScoreStore:
    """Read access to a store; errors name the store and the array."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not (self.path / "zarr.json").is_file():
            raise StoreError(f"{self.path} is not a complete score store (no zarr.json); rerun the scoring job")
        self.group = zarr.open_group(store=str(self.path), mode="r", zarr_format=3)
        self.attrs = dict(self.group.attrs)

    @property
    def names(self) -> list[str]:
        weights = self.attrs.get("weights")
        if weights:
            return [w["name"] for w in weights]
        return sorted(self.group.array_keys())

    def layer_of(self) -> dict[str, int]:
        return {w["name"]: int(w["layer"]) for w in self.attrs.get("weights", [])}

    def read(self, name: str) -> np.ndarray:
        """One array as float32 (decoded from the store's ``storage_dtype``), checked."""
        try:
            a = self.group[name][...]
            if self.attrs.get("storage_dtype") == "bfloat16":
                a = from_bfloat16_bits(a)
            elif a.dtype != np.float32 and a.dtype != np.float64:
                a = a.astype(np.float32)
        except KeyError as e:
            raise StoreError(f"{self.path}: no array {name!r}") from e
        except Exception as e:  # codec/checksum failures surface here
            raise StoreError(f"{self.path}: array {name!r} cannot be read ({type(e).__name__}: {e}); "
                             "the store is corrupted: delete it and rerun the job that wrote it") from e
        # A deleted chunk file reads as the fill value (NaN) without any error; stored sums and means
        # are always finite (non-finite samples are excluded before they reach them).
        if not np.isfinite(a).all():
            bad = ~np.isfinite(a.ravel())
            raise StoreError(f"{self.path}: array {name!r} holds a non-finite value at flat index "
                             f"{int(np.flatnonzero(bad)[0])} ({int(bad.sum())} in all; a missing chunk reads as NaN): "
                             "the store is corrupted: delete it and rerun the job that wrote it")
        return a

    def items(self) -> Iterator[tuple[str, np.ndarray]]:
        for name in self.names:
            yield name, self.read(name)

    def verify(self, shapes: Mapping[str, tuple[int, ...]]) -> None:
        """Read every array back (checksums, finiteness) and check names and shapes against
        ``shapes``: what must hold before the shard stores it was merged from may be deleted."""
        if sorted(self.names) != sorted(shapes):
            raise StoreError(f"{self.path}: holds arrays {sorted(self.names)[:3]}..., expected {sorted(shapes)[:3]}...")
        for name, a in self.items():
            if a.shape != tuple(shapes[name]):
                raise StoreError(f"{self.path}: array {name!r} has shape {a.shape}, expected {tuple(shapes[name])}")


def merge_sum_stores(paths: list[str | Path], out: str | Path, extra_attrs: dict | None = None, *,
                     verify: bool = False, storage: str = "float32") -> Path:
    """Merge shard stores (sums) into a final store (means), adding in the given order.

    Sums are added in float64 and divided once, so the result does not depend on
    how samples were split into shards beyond float rounding of the shard sums.
    """
    if not paths:
        raise StoreError("no shard stores to merge")
    stores = [ScoreStore(p) for p in paths]
    first = stores[0].attrs
    for s in stores[1:]:
        for key in ("model", "domain", "target", "layers", "max_tokens", "dtype", "include", "exclude"):
            if s.attrs.get(key) != first.get(key):
                raise StoreError(f"cannot merge {s.path} into {stores[0].path}: {key} differs "
                                 f"({s.attrs.get(key)!r} vs {first.get(key)!r})")
        fa, fb = first.get("model_fingerprint") or {}, s.attrs.get("model_fingerprint") or {}
        for key in ("sha256", "commit"):  # shards scored with different weights must not be averaged
            if fa.get(key) != fb.get(key):
                raise StoreError(f"cannot merge {s.path} into {stores[0].path}: it was scored with other model "
                                 f"weights (model_fingerprint.{key} differs); rerun all shards of this domain")
        if [w["name"] for w in s.attrs["weights"]] != [w["name"] for w in first["weights"]]:
            raise StoreError(f"cannot merge {s.path}: it scores different weights than {stores[0].path}")
    n = sum(int(s.attrs["n_samples"]) for s in stores)
    if n == 0:
        raise StoreError(f"all samples of {[str(p) for p in paths]} were excluded; nothing to average")

    def means():  # one matrix at a time: memory is bounded by the largest matrix, not the model
        for name in stores[0].names:
            total = np.zeros(stores[0].group[name].shape, dtype=np.float64)
            for s in stores:
                total += s.read(name)
            yield name, (total / n).astype(np.float32)
            del total

    attrs = {k: v for k, v in first.items() if k not in ("kind", "shard", "storage_dtype")}
    attrs.update({
        "kind": "mean",
        "n_samples": n,
        "n_excluded": sum(int(s.attrs.get("n_excluded", 0)) for s in stores),
        "excluded_ids": [i for s in stores for i in s.attrs.get("excluded_ids", [])],
        "n_truncated": sum(int(s.attrs.get("n_truncated", 0)) for s in stores),
        "tokens_cut": {k: v for s in stores for k, v in s.attrs.get("tokens_cut", {}).items()},
        "shards": len(stores),
    })
    attrs.update(extra_attrs or {})
    write_store(out, means(), attrs, storage)
    if verify:  # the shards are about to be deleted: the merged store must read back whole
        ScoreStore(out).verify({name: stores[0].group[name].shape for name in stores[0].names})
    return Path(out)
