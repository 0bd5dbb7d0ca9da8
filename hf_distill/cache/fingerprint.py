"""The teacher cache's fingerprint: a hash of everything the stored teacher outputs depend on.

A cache folder is named by [`cache_fingerprint`] of the teacher's weights and config ([`fingerprint_model`]), the
training rows' content ([`fingerprint_rows`]), the tokenisation length, the teacher's precision, the collator
([`collator_identity`]) and, for token heads, k and the temperature. A changed input gets a new folder; a stale
cache is never read.

Not part of it, because code cannot be hashed faithfully: a custom teacher module's plain Python attributes and its
`forward` code (a wrapper scaling the logits by `self.scale`, ensemble weights kept in a list). Keep such a setting in
a buffer or parameter (`register_buffer`), which the hash sees (non-persistent buffers too), or rebuild the cache after
changing it (delete its folder or pass another `teacher_cache_dir`).
"""

from __future__ import annotations

import enum
import functools
import hashlib
import inspect
import json
import logging
import os
import re
import types
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import torch
from torch import nn

__all__ = [
    "CACHE_FORMAT_VERSION",
    "cache_fingerprint",
    "collator_identity",
    "fingerprint_model",
    "fingerprint_rows",
    "is_list_array",
]

CACHE_FORMAT_VERSION = 1
_HASH_ROWS = 10_000  # rows hashed per Arrow slice: bounded memory on large datasets


def fingerprint_model(model: nn.Module) -> str:
    """sha256 of a model's class, config, every state_dict tensor and every non-persistent buffer (name, dtype,
    shape, bytes).

    A custom wrapper's plain Python attributes (`self.scale = 0.5`) and its `forward` code are not part of it: keep a
    setting that changes the outputs in a buffer or parameter, or rebuild the cache (delete its folder, or pass
    another `teacher_cache_dir`) after changing one.
    """
    digest = hashlib.sha256()
    digest.update(type(model).__qualname__.encode())
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "to_dict"):
        # Where it was loaded from and which library wrote it do not change its outputs.
        skipped = {"_name_or_path", "transformers_version", "_commit_hash"}
        values = {key: value for key, value in config.to_dict().items() if key not in skipped}
        digest.update(json.dumps(values, sort_keys=True, default=str).encode())
    state = model.state_dict()
    for name, tensor in sorted(state.items()):
        _hash_tensor(digest, name, tensor)
    # Buffers registered with persistent=False (a scale, a mask, rotary tables) change the outputs as much, but
    # state_dict() leaves them out.
    buffers = dict(model.named_buffers())
    for name in sorted(set(buffers) - set(state)):
        _hash_tensor(digest, f"buffer:{name}", buffers[name])
    return digest.hexdigest()


def _hash_tensor(digest: Any, name: str, tensor: torch.Tensor) -> None:
    tensor = tensor.detach()
    digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
    digest.update(tensor.cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())


def fingerprint_rows(dataset: datasets.Dataset) -> str:
    """sha256 of every value of every column, in row order, independent of how the Arrow data is chunked or sliced.

    This is the content the collator (and so the teacher) sees: token ids, masks, token types, labels. Hashing the
    content rather than `datasets`' own `_fingerprint` means a re-tokenised dataset with identical rows keeps its
    cache, and one with a single changed token does not.
    """
    digest = hashlib.sha256()
    digest.update(json.dumps(sorted(dataset.column_names)).encode())
    arrow = dataset.with_format("arrow")
    for start in range(0, len(dataset), _HASH_ROWS):
        table = arrow[start : start + _HASH_ROWS]
        for name in sorted(dataset.column_names):
            _hash_array(digest, table.column(name).combine_chunks())
    digest.update(str(len(dataset)).encode())
    return digest.hexdigest()


def collator_identity(collator: Any) -> str:
    """What the cache fingerprint knows of the collator that pads the teacher's batches, the same in every process of
    a run and in every run: a function by its module, name, code (constants included), defaults and closure (a
    factory's `pad_collator(8)` differs from `pad_collator(None)`); a `functools.partial` by its function and
    arguments; a bound method by its function and object; an object by its class, the code of its methods (its
    bases' too) and its public settings, in `__dict__` or `__slots__` (`padding`, `max_length`,
    `pad_to_multiple_of`...; a wrapped collator described in turn) or in its class body (`max_length = 128`: every
    public class attribute of its classes that is a value, not a method, class or property, an instance's own value
    winning; none of Python's own classes (`object`, `typing`, `dataclasses`, `enum`), while transformers' collator
    classes are read like any other: their class attributes are their dataclass fields' defaults, which every
    instance holds in its `__dict__`, so they change no identity); a numpy scalar, tensor or array by its value
    (dtype, shape, bytes), a `torch.dtype`, `numpy.dtype` or `torch.device` by its text, an `Enum` member by its
    class and value, a compiled regex by its pattern and flags, bytes by their hash, a class by its name and code,
    a path by its text; a tokenizer by its whole state (its vocabulary, normalisation and special tokens, and the
    settings that change its outputs: padding and truncation sides, model_max_length, do_lower_case...). Not part of
    it: module-level globals a function reads, and private attributes (``self._n``), which hold run-time state (a
    process id, a generator): keep a setting that changes the batches public, or delete the cache."""
    return value_identity(collator)


def value_identity(value: Any) -> str:
    """`value` as comparable text (see `collator_identity`): a tensor or array by its dtype, shape and bytes."""
    return json.dumps(_describe(value, 0), sort_keys=True)


_MAX_DEPTH = 8  # an object and its settings take two levels: a collator wrapped twice, its tokenizer


def _describe(value: Any, depth: int) -> Any:
    """A JSON value standing for `value`; never a repr that holds a memory address."""
    if isinstance(value, np.generic):  # np.int64 is no int: np.max(lengths) as a truncation length
        value = value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, os.PathLike):
        return os.fsdecode(value)
    kind = f"{type(value).__module__}.{type(value).__qualname__}"
    if depth >= _MAX_DEPTH:
        return kind
    if isinstance(value, (torch.dtype, np.dtype)):  # no public attributes: each would describe as its type alone
        return {"dtype": str(value)}
    if isinstance(value, torch.device):
        return {"device": str(value)}
    if isinstance(value, enum.Enum):
        return {"enum": kind, "value": _describe(value.value, depth + 1)}
    if isinstance(value, re.Pattern):
        return {"regex": _describe(value.pattern, depth + 1), "flags": int(value.flags)}
    if isinstance(value, (bytes, bytearray)):
        return {"bytes": hashlib.sha256(value).hexdigest()[:16], "length": len(value)}
    if isinstance(value, type):  # a class as a setting (dtype=np.float16): by its name and code, not its namespace
        return {"class": f"{value.__module__}.{value.__qualname__}", "methods": _methods(value)}
    if isinstance(value, types.ModuleType):
        return {"module": value.__name__}
    if isinstance(value, logging.Logger):  # its manager holds every logger of the process
        return {"logger": value.name}
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return _describe_array(value, kind, depth)
    if isinstance(value, (list, tuple)):
        return [_describe(item, depth + 1) for item in value]
    if isinstance(value, (set, frozenset)):
        return sorted(json.dumps(_describe(item, depth + 1), sort_keys=True) for item in value)
    if isinstance(value, dict):
        return {str(key): _describe(item, depth + 1) for key, item in value.items()}
    if isinstance(value, functools.partial):
        return {"partial": _describe(value.func, depth + 1), "args": _describe(value.args, depth + 1),
                "keywords": _describe(value.keywords, depth + 1)}  # fmt: skip
    if inspect.ismethod(value):
        return {"method": _describe(value.__func__, depth + 1), "of": _describe(value.__self__, depth + 1)}
    code = getattr(value, "__code__", None)
    if code is not None:
        cells = [cell.cell_contents for cell in value.__closure__ or () if _filled(cell)]
        return {
            "function": f"{getattr(value, '__module__', None)}.{getattr(value, '__qualname__', None)}",
            "code": _code_hash(code),
            "defaults": _describe(getattr(value, "__defaults__", None), depth + 1),
            "keyword_defaults": _describe(getattr(value, "__kwdefaults__", None), depth + 1),
            "closure": _describe(cells, depth + 1),
        }
    if callable(getattr(value, "convert_tokens_to_ids", None)):
        return _describe_tokenizer(value, kind, depth)
    if isinstance(value, nn.Module):
        return kind
    # Public settings only: private ones hold run-time state (a process id, a generator).
    settings = {name: item for name, item in getattr(value, "__dict__", {}).items() if not name.startswith("_")}
    for klass in type(value).__mro__:  # and a class with __slots__ keeps them there, not in __dict__
        slots = getattr(klass, "__slots__", ())
        for name in (slots,) if isinstance(slots, str) else slots:
            if not name.startswith("_") and hasattr(value, name):
                settings.setdefault(name, getattr(value, name))
    for name, item in _class_settings(type(value)).items():
        settings.setdefault(name, item)  # the instance's own value wins, as in attribute lookup
    return {"object": kind, "methods": _methods(type(value)), "settings": _describe(settings, depth + 1)}  # fmt: skip


# Python's own classes, whose class attributes are no collator's settings.
_PYTHON_MODULES = frozenset(
    {"builtins", "abc", "typing", "typing_extensions", "dataclasses", "enum", "collections.abc", "_collections_abc"}
)


def _class_settings(cls: type) -> dict[str, Any]:
    """The public class attributes of `cls` and its bases that are values, not methods or descriptors (a
    `max_length = 128` in the class body), the subclass's winning; none from Python's own classes."""
    settings: dict[str, Any] = {}
    for klass in cls.__mro__:
        if klass.__module__ in _PYTHON_MODULES:
            continue
        for name, member in vars(klass).items():
            # functions, classes, properties, classmethods, slots: code or descriptors, not values
            if name.startswith("_") or callable(member) or hasattr(type(member), "__get__"):
                continue
            settings.setdefault(name, member)
    return settings


def _describe_array(value: torch.Tensor | np.ndarray, kind: str, depth: int) -> Any:
    """A tensor or array by its dtype, shape and a hash of its bytes (an object array by its items: its bytes are
    memory addresses)."""
    if isinstance(value, np.ndarray) and value.dtype.hasobject:
        return {"array": kind, "shape": list(value.shape), "items": _describe(value.tolist(), depth + 1)}
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu()
        tensor = tensor.to_dense() if tensor.layout != torch.strided else tensor
        data = tensor.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()  # any dtype, bfloat16 too
    else:
        data = np.ascontiguousarray(value).tobytes()
    return {"array": kind, "dtype": str(value.dtype), "shape": list(value.shape),
            "bytes": hashlib.sha256(data).hexdigest()[:16]}  # fmt: skip


# Tokenizer settings that change what it returns, besides its vocabulary and pipeline.
_TOKENIZER_SETTINGS = ("padding_side", "truncation_side", "model_max_length", "pad_token_id", "pad_token_type_id")
_TOKENIZER_INIT_SETTINGS = (
    "do_lower_case", "strip_accents", "tokenize_chinese_chars", "do_basic_tokenize", "never_split", "add_prefix_space",
    "trim_offsets", "lowercase", "add_bos_token", "add_eos_token", "legacy", "split_special_tokens",
    "clean_up_tokenization_spaces",
)  # fmt: skip


def _describe_tokenizer(tokenizer: Any, kind: str, depth: int) -> dict[str, Any]:
    """A tokenizer by its whole state: a collator that tokenizes text gives other ids for a cased tokenizer, another
    vocabulary of the same class or another truncation side."""
    settings = {name: getattr(tokenizer, name, None) for name in _TOKENIZER_SETTINGS}
    # by their text: an AddedToken has no public attributes to describe it by
    settings["special_tokens"] = json.loads(json.dumps(getattr(tokenizer, "special_tokens_map", None), default=str))
    # Its constructor's settings that change the ids (a slow tokenizer has no serialised pipeline to hash); not the
    # rest of init_kwargs, which also holds where it was loaded from and the last call's options (max_length, stride)
    # saved with it: the same tokenizer saved and reloaded would describe as another.
    init = getattr(tokenizer, "init_kwargs", None) or {}
    settings["init"] = {name: init[name] for name in _TOKENIZER_INIT_SETTINGS if name in init}
    return {"tokenizer": kind, "state": _tokenizer_state(tokenizer), "settings": _describe(settings, depth + 1)}


def _tokenizer_state(tokenizer: Any) -> str:
    """sha256 of a fast tokenizer's serialised pipeline (vocabulary, normaliser, pre-tokenizer, post-processor, added
    tokens), or of a slow one's vocabulary."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        state = json.loads(backend.to_str())
        # Left by the last call (truncation=True, padding=...): every call sets its own, they are not the tokenizer's
        state.pop("truncation", None)
        state.pop("padding", None)
        text = json.dumps(state, sort_keys=True)
    else:
        text = json.dumps(sorted(tokenizer.get_vocab().items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _methods(cls: type) -> dict[str, str]:
    """The code of every method (properties' getters too) of `cls` and its bases outside Python's builtins: a
    collator's `__call__` may be a base's dispatcher (transformers' `DataCollatorMixin` calls `torch_call`)."""
    methods: dict[str, str] = {}
    for klass in cls.__mro__:
        if klass.__module__ == "builtins":
            continue
        for name, member in vars(klass).items():
            function = member.fget if isinstance(member, property) else getattr(member, "__func__", member)
            code = getattr(function, "__code__", None)
            if code is not None and name not in methods:  # the subclass's own wins, as in attribute lookup
                methods[name] = _code_hash(code)
    return methods


def _filled(cell: Any) -> bool:
    try:
        cell.cell_contents  # noqa: B018 - an empty cell (a name not bound yet) raises
    except ValueError:
        return False
    return True


def _code_hash(code: Any) -> str:
    """sha256 of a function's bytecode and constants (nested functions' too), not of where it was loaded from."""
    digest = hashlib.sha256(code.co_code)
    for constant in code.co_consts:
        digest.update(_constant(constant).encode())
    digest.update(repr(code.co_names).encode())
    return digest.hexdigest()[:16]


def _constant(value: Any) -> str:
    # A frozenset's repr follows string hashing, which differs per process (PYTHONHASHSEED): sorted, every rank of a
    # run names the same cache.
    if hasattr(value, "co_code"):
        return _code_hash(value)
    if isinstance(value, frozenset):
        return "frozenset(" + ",".join(sorted(map(_constant, value))) + ")"
    if isinstance(value, tuple):
        return "(" + ",".join(map(_constant, value)) + ")"
    return repr(value)


def cache_fingerprint(
    *,
    teacher_hash: str,
    rows_hash: str,
    max_length: int | None,
    precision: str,
    collator_name: str,
    token_level: bool,
    top_k: int | None = None,
    temperature: float | None = None,
    next_token: bool = False,
) -> str:
    """The cache folder's name: a sha256 of everything the stored outputs depend on.

    Class and regression caches store raw logits, which depend neither on the temperature nor on k; token caches
    store top-k log-probabilities at the temperature, so both are part of their fingerprint.
    """
    parts = {
        "format": CACHE_FORMAT_VERSION,
        "teacher": teacher_hash,
        "rows": rows_hash,
        "max_length": max_length,
        "precision": precision,
        "collator": collator_name,
        "token_level": token_level,
    }
    if token_level:
        parts.update(top_k=top_k, temperature=float(temperature))
    if next_token:  # a causal LM's positions since 2026-12-07 (before: its labels' own); others' names unchanged
        parts.update(next_token=True)
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


def _hash_array(digest: Any, array: pa.Array) -> None:
    if array.null_count:
        digest.update(np.asarray(array.is_null()).tobytes())
    if is_list_array(array):
        # Lengths then values: [[1, 2], [3]] and [[1], [2, 3]] differ. flatten() respects slicing offsets.
        lengths = pa.compute.list_value_length(array).fill_null(0)
        digest.update(np.asarray(lengths, dtype=np.int64).tobytes())
        _hash_array(digest, array.flatten())
    elif pa.types.is_integer(array.type):
        # int32 and int64 ids reach the teacher as the same tokens.
        digest.update(np.asarray(array.fill_null(0), dtype=np.int64).tobytes())
    elif pa.types.is_boolean(array.type):  # (pyarrow refuses an integer fill value for booleans)
        digest.update(np.asarray(array.fill_null(False), dtype=np.int64).tobytes())
    elif pa.types.is_floating(array.type):
        digest.update(np.asarray(array.fill_null(0), dtype=np.float64).tobytes())
    else:  # strings and anything else a custom collator might read
        digest.update(json.dumps(array.to_pylist(), default=str).encode())


def is_list_array(array: pa.Array) -> bool:
    kind = array.type
    return pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)
