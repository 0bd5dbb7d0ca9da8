"""Transfer-set augmentation: unlabelled copies of the training rows for a teacher to label.

A small student learns more from a teacher when it sees more inputs than the labelled set holds. The methods here
follow:

- Tang et al. 2019, "Distilling Task-Specific Knowledge from BERT into Simple Neural Networks"
  (arXiv:1903.12136): ``"mask"`` (each word replaced by the mask token with probability p), ``"ngram"`` (with
  probability p the text becomes one random n-gram of it, n in 1..5) and ``"mask_ngram"`` (both, in that order);
- Jiao et al. 2020, "TinyBERT: Distilling BERT for Natural Language Understanding" (arXiv:1909.10351): ``"mlm"``
  (each word chosen with probability p is replaced by a word sampled among a masked LM's top-k predictions for
  it, its punctuation and capital kept: "Mat." -> "Rug."; never a piece of a word such as ``##ed``), and
  ``"embedding"``, its word-vector path (TinyBERT uses GloVe neighbours for words a masked LM cannot fill in one
  piece): each word chosen with probability p is replaced by one of its nearest words in a table, such as the one
  [`embedding_neighbours`] builds from a model's own input word embeddings (``ran`` -> ``run``, ``running``,
  ``runs``...), so no extra model is needed.

The copies carry no label (-100 for classification, NaN for regression): the teacher's outputs are their targets.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Mapping, Sequence
from numbers import Integral, Real

import torch
from datasets import ClassLabel, Dataset, Features, Value

from .positions import usable_positions

__all__ = ["AUGMENTATIONS", "EMBEDDING_TOP_K", "augment_dataset", "embedding_neighbours"]

AUGMENTATIONS = ("none", "mask", "ngram", "mask_ngram", "mlm", "embedding")
EMBEDDING_TOP_K = 15  # "embedding" draws among a word's 15 nearest by default (TinyBERT's K)
_MAX_NGRAM = 5
# A word's replaceable core: what lies between its leading and trailing punctuation ("(rocks)." -> "rocks").
_CORE = re.compile(r"^(\W*)(.*?)(\W*)$", re.DOTALL)


def augment_dataset(
    dataset: Dataset,
    *,
    text_columns: Sequence[str],
    method: str,
    copies: int,
    probability: float,
    seed: int,
    mask_token: str | None = None,
    mlm_model=None,
    mlm_tokenizer=None,
    label_column: str = "label",
    mlm_top_k: int = 15,
    mlm_batch_size: int = 32,
    neighbours: Mapping[str, Sequence[str]] | None = None,
    regression: bool | None = None,
    keep_duplicates: bool = False,
) -> Dataset:
    """Make up to `copies` augmented, unlabelled copies of every row of `dataset`.

    A copy that nothing changed (no word chosen, no n-gram cut: an `ngram` copy at p = 0.2 is its row 4 times in 5)
    or that repeats an earlier copy of its row is dropped, as Tang et al. (2019) discard duplicates: each would be a
    teacher pass over text the student already has, counted as new. Compared on every text column with whitespace
    collapsed. `keep_duplicates=True` keeps all K (what hf-distill did before 2026-12-07).

    Words are the whitespace-separated tokens of a text (``text.split()``), re-joined with single spaces; every text
    column (each side of a sentence pair) is augmented independently. Each (row, copy, column) draws from its own
    `random.Random` seeded from ``(seed, row, copy, column)``, so the output does not depend on batching.

    Args:
        dataset (`datasets.Dataset`): the labelled rows.
        text_columns (`Sequence[str]`): one text column (``"sentence"``) or two for pairs (``"sentence1"``,
            ``"sentence2"``).
        method (`str`): one of [`AUGMENTATIONS`]: ``"none"``, ``"mask"``, ``"ngram"``, ``"mask_ngram"``, ``"mlm"``,
            ``"embedding"``.
        copies (`int`): K >= 0 copies per row.
        probability (`float`): p in [0, 1]: per-word masking/replacement probability, or for ``"ngram"`` the
            probability that a text is cut to an n-gram.
        seed (`int`): seed of the random choices.
        mask_token (`str`, *optional*): the token written over masked words; needed by ``"mask"`` and
            ``"mask_ngram"`` (e.g. ``tokenizer.mask_token``).
        mlm_model (`PreTrainedModel`, *optional*): a ``*ForMaskedLM`` model; needed by ``"mlm"``.
        mlm_tokenizer (`PreTrainedTokenizerBase`, *optional*): its tokenizer; needed by ``"mlm"``.
        label_column (`str`, *optional*, defaults to `"label"`): the label column, created if missing.
        mlm_top_k (`int`, *optional*, defaults to 15): ``"mlm"`` samples among this many top predictions.
        mlm_batch_size (`int`, *optional*, defaults to 32): texts per forward pass of the masked LM.
        neighbours (`Mapping[str, Sequence[str]]`, *optional*): needed by ``"embedding"``: each word's replacements
            (e.g. [`embedding_neighbours`]). A chosen word is looked up by its core (punctuation around it kept),
            as written, then lower-cased; one of its neighbours is drawn uniformly, capitalised like the word. A
            word the table lacks, or maps to nothing, stays as it is.
        regression (`bool`, *optional*): whether the task is a regression, which sets the copies' "no label" mark
            (NaN in float32, since -100 is a valid regression target; -100 in int64 otherwise). By default it follows
            the label column: float labels mean a regression; integer or `ClassLabel` labels, or none, a
            classification. Pass it where the column does not tell (integer ratings trained as a regression).
        keep_duplicates (`bool`, *optional*, defaults to `False`): keep copies identical to their row or to an
            earlier copy of it.

    Returns:
        `datasets.Dataset`: up to ``len(dataset) * copies`` rows (row 0's copies, then row 1's, ...; exactly that
        many with `keep_duplicates`) with columns ``(*text_columns, label_column)``; every label the "no label"
        mark (see `regression`). Empty when `method` is ``"none"`` or `copies` is 0.

    Raises:
        `ValueError`: on an unknown method, a bad number, a missing column or a missing mask token/model.
    """
    text_columns = _check_arguments(
        dataset, text_columns, method, copies, probability, seed, mask_token, mlm_model, mlm_tokenizer, label_column
    )
    if method == "embedding" and not isinstance(neighbours, Mapping):
        raise ValueError(
            f"augment_method 'embedding' needs a neighbours table (word -> replacement words), got "
            f"{type(neighbours).__name__}: pass neighbours=embedding_neighbours(model, tokenizer)."
        )
    if method == "mlm":
        _check_positive_int(mlm_top_k, "mlm_top_k")
        _check_positive_int(mlm_batch_size, "mlm_batch_size")
    if regression is None:
        label_feature, no_label = _unlabelled_feature(dataset, label_column)
    else:
        label_feature, no_label = (Value("float32"), math.nan) if regression else (Value("int64"), -100)
    features = Features({**{column: dataset.features[column] for column in text_columns}, label_column: label_feature})
    columns: dict[str, list] = {column: [] for column in features}
    if method == "none" or copies == 0:
        return Dataset.from_dict(columns, features=features)

    mlm_jobs = []  # (column, output index, words, chosen flags, rng): filled after batched forward passes
    for column in text_columns:
        for row, text in enumerate(dataset[column]):
            for copy in range(copies):
                rng = random.Random(f"{seed}-{row}-{copy}-{column}")
                if text is None:
                    columns[column].append(None)
                    continue
                words = text.split()
                if method in ("mask", "mask_ngram"):
                    words = [mask_token if rng.random() < probability else word for word in words]
                if method in ("ngram", "mask_ngram") and words and rng.random() < probability:
                    n = rng.randint(1, min(_MAX_NGRAM, len(words)))
                    start = rng.randint(0, len(words) - n)
                    words = words[start : start + n]
                if method == "mlm":
                    chosen = [rng.random() < probability for _ in words]
                    if any(chosen):
                        mlm_jobs.append((column, len(columns[column]), words, chosen, rng))
                if method == "embedding":
                    words = [_replace(word, neighbours, rng) if rng.random() < probability else word for word in words]
                columns[column].append(" ".join(words))
    columns[label_column] = [no_label] * (len(dataset) * copies)
    if mlm_jobs:
        _fill_with_mlm(mlm_jobs, columns, mlm_model, mlm_tokenizer, mlm_top_k, mlm_batch_size)
    if not keep_duplicates:
        kept = _new_copies(dataset, columns, text_columns, copies)
        columns = {column: [values[index] for index in kept] for column, values in columns.items()}
    return Dataset.from_dict(columns, features=features)


def _new_copies(dataset: Dataset, columns: dict[str, list], text_columns: Sequence[str], copies: int) -> list[int]:
    """The indices of the copies that differ from their row and from every earlier copy of it (texts compared with
    whitespace collapsed: the copies are re-joined with single spaces)."""

    def key(texts) -> tuple:
        return tuple(None if text is None else " ".join(text.split()) for text in texts)

    originals = zip(*(dataset[column] for column in text_columns))
    kept = []
    for row, original in enumerate(originals):
        seen = {key(original)}
        for index in range(row * copies, (row + 1) * copies):
            texts = key(columns[column][index] for column in text_columns)
            if texts not in seen:
                seen.add(texts)
                kept.append(index)
    return kept


def _replace(word: str, neighbours: Mapping[str, Sequence[str]], rng: random.Random) -> str:
    """`word` with its core swapped for one of the core's neighbours (drawn with `rng`), or as it is."""
    core = _CORE.match(word).group(2)
    candidates = neighbours.get(core) or neighbours.get(core.lower())
    if not core or not candidates:
        return word
    return _in_place_of(word, rng.choice(list(candidates)))


def _in_place_of(word: str, new: str) -> str:
    """`new` in place of `word`'s core, with `word`'s punctuation and capital kept ("Mat." and "rug" give "Rug.")."""
    before, core, after = _CORE.match(word).groups()
    if core[:1].isupper():
        new = new[:1].upper() + new[1:]
    return before + new + after


def embedding_neighbours(
    model, tokenizer, *, top_k: int = EMBEDDING_TOP_K, words=None, batch_size: int = 1024
) -> dict[str, list[str]]:
    """Each vocabulary word's `top_k` nearest words by cosine similarity of a model's input word embeddings.

    The table ``augment_dataset(method="embedding")`` draws replacements from. Only tokens that read as one
    alphabetic word take part, as keys and as neighbours (no ``##`` piece, special token or punctuation; a
    byte-level or SentencePiece token by the word it spells), and a word is never its own neighbour. Computed on the
    CPU in float32, so every process of a run gets the same table.

    Args:
        model (`PreTrainedModel` or `torch.Tensor`): a model whose `get_input_embeddings()` rows are indexed by the
            tokenizer's ids (the teacher), or that `(vocab, dim)` matrix itself.
        tokenizer (`PreTrainedTokenizerBase`): its tokenizer.
        top_k (`int`, *optional*, defaults to 15): neighbours per word (TinyBERT samples among 15).
        words (`Iterable[str]`, *optional*): the keys wanted (e.g. the words of the rows to augment, lower-cased
            for an uncased tokenizer); words outside the vocabulary are left out. All vocabulary words when None.
        batch_size (`int`, *optional*, defaults to 1024): keys per similarity product (memory: batch x vocab).

    Returns:
        `dict[str, list[str]]`: word -> its neighbours, nearest first.
    """
    _check_positive_int(top_k, "top_k")
    _check_positive_int(batch_size, "batch_size")
    weight = model if isinstance(model, torch.Tensor) else model.get_input_embeddings().weight
    weight = weight.detach().to("cpu", torch.float32)
    if weight.dim() != 2 or weight.shape[0] == 0:
        raise ValueError(
            f"the input embeddings have shape {tuple(weight.shape)}, not (vocabulary, dim): pass the model whole "
            "(not a sharded partition) or its embedding matrix."
        )
    rows_of = _word_rows(tokenizer, weight.shape[0])
    if not rows_of:
        raise ValueError("the tokenizer has no whole alphabetic word in the embedding matrix's rows: no neighbours.")
    vocabulary, ids = list(rows_of), list(rows_of.values())
    position = {word: index for index, word in enumerate(vocabulary)}
    keys = list(position) if words is None else sorted({w for w in words if w in position})
    unit = torch.nn.functional.normalize(weight[ids], dim=-1)
    k = min(top_k, len(ids) - 1)
    table: dict[str, list[str]] = {}
    for begin in range(0, len(keys), batch_size):
        batch = keys[begin : begin + batch_size]
        rows = torch.tensor([position[word] for word in batch])
        similarity = unit[rows] @ unit.T
        similarity[torch.arange(len(batch)), rows] = -math.inf  # never the word itself
        nearest = similarity.topk(k, dim=-1).indices.tolist() if k > 0 else [[] for _ in batch]
        for word, found in zip(batch, nearest):
            table[word] = [vocabulary[index] for index in found]
    return table


def _word_rows(tokenizer, rows: int) -> dict[str, int]:
    """{word: its embedding row} for the tokens (ids below `rows`, no special token) that read as one alphabetic word.

    A token is read as the text the tokenizer makes of it alone (WordPiece's ``##s`` is left out; byte-level BPE's
    ``Ġcat`` and SentencePiece's ``▁cat`` read ``cat``). Where the vocabulary marks word starts (``Ġ``, ``▁``), only
    marked tokens count: an unmarked one is a piece of a word (``lay`` of ``Ġp lay ed``)."""
    special = set(tokenizer.all_special_ids)
    marks_starts = _marks_word_starts(tokenizer)
    found: dict[str, tuple[int, bool]] = {}
    for index, token in enumerate(tokenizer.convert_ids_to_tokens(list(range(rows)))):
        if token is None or index in special:  # None: an id past the tokenizer's vocabulary (a padded matrix)
            continue
        word, starts = _token_word(tokenizer, token, marks_starts)
        if word is not None and word.isalpha() and (word not in found or (starts and not found[word][1])):
            found[word] = (index, starts)
    return {word: index for word, (index, _) in found.items()}


def _marks_word_starts(tokenizer) -> bool:
    """Whether the vocabulary marks the token that starts a word (byte-level BPE's ``Ġ``, SentencePiece's ``▁``),
    so that an unmarked token is a piece of a word, rather than marking a word's later pieces (WordPiece's ``##``)."""
    return any(token[:1] in ("Ġ", "▁") for token in tokenizer.tokenize("a b"))


def _token_word(tokenizer, token: str, marks_starts: bool) -> tuple[str | None, bool]:
    """(the one word a vocabulary token spells, whether it starts a word), or (None, False) for a token that is no
    whole word: WordPiece's ``##ed``; where the vocabulary marks word starts, a token without the mark (byte-level
    BPE's ``lay`` of ``Ġp lay ed``: "played" cut up). A replacement drawn from such pieces turned "the cat sat" into
    "ed ed ed"."""
    if token.startswith("##"):
        return None, False
    text = tokenizer.convert_tokens_to_string([token])
    word, starts = text.strip(), text[:1].isspace() or token[:1] in ("Ġ", "▁")
    if not word or len(word.split()) != 1:
        return None, False
    if marks_starts and not starts:  # a text's first word ("the") has its marked twin ("Ġthe"), which counts
        return None, False
    return word, starts


def _check_arguments(
    dataset, text_columns, method, copies, probability, seed, mask_token, mlm_model, mlm_tokenizer, label_column
) -> tuple[str, ...]:
    if method not in AUGMENTATIONS:
        raise ValueError(f"augment_method must be one of {', '.join(AUGMENTATIONS)}, got {method!r}.")
    if not isinstance(copies, Integral) or isinstance(copies, bool) or copies < 0:
        raise ValueError(f"augment_copies must be an integer >= 0, got {copies!r}: pass 0 for no copies.")
    if not isinstance(probability, Real) or isinstance(probability, bool) or not 0 <= probability <= 1:
        raise ValueError(f"augment_probability must be in [0, 1], got {probability!r}.")
    if not isinstance(seed, Integral) or isinstance(seed, bool):
        raise ValueError(f"seed must be an integer, got {seed!r}.")
    # A bare string would otherwise be read as one column per character.
    text_columns = (text_columns,) if isinstance(text_columns, str) else tuple(text_columns)
    if not text_columns:
        raise ValueError("text_columns is empty: pass one text column, or two for sentence pairs.")
    for column in text_columns:
        if column not in dataset.column_names:
            raise ValueError(
                f"text column {column!r} is not in the dataset, which has columns {dataset.column_names}: "
                "pass text_columns among them."
            )
        feature = dataset.features[column]
        if not (isinstance(feature, Value) and feature.dtype in ("string", "large_string")):
            raise ValueError(f"text column {column!r} holds {feature}, not text: pass text_columns of strings.")
    if label_column in text_columns:
        raise ValueError(f"label_column {label_column!r} is also a text column: pass a different label_column.")
    if method in ("mask", "mask_ngram") and not mask_token:
        raise ValueError(
            f"augment_method {method!r} needs a mask_token, got {mask_token!r}: pass e.g. tokenizer.mask_token."
        )
    if method == "mlm":
        missing = [
            name for name, value in (("mlm_model", mlm_model), ("mlm_tokenizer", mlm_tokenizer)) if value is None
        ]
        if missing:
            raise ValueError(
                f"augment_method 'mlm' needs {' and '.join(missing)}, got None: pass a *ForMaskedLM model and its "
                "tokenizer."
            )
        if mlm_tokenizer.mask_token is None or mlm_tokenizer.mask_token_id is None:
            raise ValueError(
                "the masked LM's tokenizer has no mask token: pass the tokenizer of a masked LM (mlm_tokenizer)."
            )
    return text_columns


def _check_positive_int(value, name: str) -> None:
    if not isinstance(value, Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}.")


def _unlabelled_feature(dataset: Dataset, label_column: str) -> tuple[Value, float | int]:
    """The output label feature and the 'no label' value: int64 -100 for classification, NaN for regression."""
    feature = dataset.features.get(label_column)
    if feature is None or isinstance(feature, ClassLabel):
        # A ClassLabel cannot hold -100, so the copies get a plain integer column.
        return Value("int64"), -100
    if isinstance(feature, Value) and feature.dtype in ("float32", "float64"):
        return Value(feature.dtype), math.nan
    if isinstance(feature, Value) and feature.dtype == "float16":
        return Value("float32"), math.nan
    if isinstance(feature, Value) and (feature.dtype.startswith(("int", "uint")) or feature.dtype == "bool"):
        return Value("int64"), -100
    raise ValueError(
        f"label column {label_column!r} holds {feature}: pass a label_column of integer, ClassLabel or float labels."
    )


def _fill_with_mlm(jobs, columns, model, tokenizer, top_k: int, batch_size: int) -> None:
    """Replace the chosen words of every job by words sampled among the masked LM's top-k predictions."""
    mask = tokenizer.mask_token
    special_ids = set(tokenizer.all_special_ids)
    words_of_id: dict[int, str | None] = {}

    marks_starts = _marks_word_starts(tokenizer)

    def candidate_word(token_id: int) -> str | None:
        if token_id not in words_of_id:
            token = tokenizer.convert_ids_to_tokens(token_id)
            word = None
            # token is None for ids past the tokenizer's vocabulary (a model whose embedding matrix was padded).
            if token is not None and token_id not in special_ids:
                # a whole word only (no ## piece, no unmarked BPE piece), of letters or digits (no "," or [unused0])
                word = _token_word(tokenizer, token, marks_starts)[0]
                word = word if word is not None and word.isalnum() else None
            words_of_id[token_id] = word
        return words_of_id[token_id]

    device = getattr(model, "device", None) or next(model.parameters()).device
    # RoBERTa-style models read fewer tokens than their position table's rows (usable_positions).
    max_length = min(tokenizer.model_max_length, usable_positions(model.config) or 512)
    was_training = model.training
    model.eval()
    try:
        for begin in range(0, len(jobs), batch_size):
            batch = jobs[begin : begin + batch_size]
            texts, owners = [], []
            for _, _, words, chosen, _ in batch:
                # a chosen word's core is masked, its punctuation kept ("mat." -> "[MASK].")
                texts.append(" ".join(_masked(word, mask) if pick else word for word, pick in zip(words, chosen)))
                # The k-th mask token of the encoding is the k-th mask in the text: a chosen word, or a literal
                # mask token already present in an unchosen word (None: left alone).
                owners.append(
                    [
                        slot
                        for index, word in enumerate(words)
                        for slot in _mask_slots(index, word, chosen[index], mask)
                    ]
                )
            encoding = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
            input_ids = encoding["input_ids"].to(device)
            with torch.inference_mode():
                # Only ids and mask: some masked LMs (DistilBERT) take no token_type_ids.
                logits = model(input_ids=input_ids, attention_mask=encoding["attention_mask"].to(device)).logits
            top_ids = logits.topk(min(top_k, logits.shape[-1]), dim=-1).indices.cpu()
            for position_row, (column, out_index, words, _, rng) in enumerate(batch):
                positions = (input_ids[position_row] == tokenizer.mask_token_id).nonzero().flatten().tolist()
                new_words = list(words)
                # Masks cut off by truncation are missing from `positions`: those words keep their original.
                for owner, position in zip(owners[position_row], positions):
                    if owner is None:
                        continue
                    # Drawn uniformly, so their order only maps the draw to a word: in token-id order, a draw does
                    # not hang on how near-tied scores rank on a given device or batch.
                    top = sorted(top_ids[position_row, position].tolist())
                    candidates = [w for w in map(candidate_word, top) if w]
                    if candidates:
                        new_words[owner] = _recased(words[owner], rng.choice(candidates), mask)
                columns[column][out_index] = " ".join(new_words)
    finally:
        model.train(was_training)


def _mask_slots(index: int, word: str, chosen: bool, mask: str) -> list[int | None]:
    """The owners of the mask tokens a word yields: the word itself when chosen (one mask, where it has something to
    mask), else None per literal mask."""
    if chosen and _mask_parts(word, mask) is not None:
        return [index]
    return [None] * word.count(mask)


def _mask_parts(word: str, mask: str) -> tuple[str, str] | None:
    """What stays around a chosen word's mask: its leading and trailing punctuation ("mat." -> "[MASK]."); nothing
    for a word holding a literal mask (replaced whole, as one mask); None for punctuation alone (nothing to mask)."""
    if mask in word:
        return "", ""
    before, core, after = _CORE.match(word).groups()
    return (before, after) if core else None


def _masked(word: str, mask: str) -> str:
    parts = _mask_parts(word, mask)
    return word if parts is None else parts[0] + mask + parts[1]


def _recased(word: str, new: str, mask: str) -> str:
    """`new` in the place of a chosen `word` (`_mask_parts`): whole for one holding a literal mask, else its core."""
    return new if mask in word else _in_place_of(word, new)
