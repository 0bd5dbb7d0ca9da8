"""Transfer-set augmentation: mask, n-gram, mask + n-gram, masked-LM word replacement (tiny random BERT) and
embedding-neighbour replacement (checked against a float64 cosine reference)."""

from __future__ import annotations

import math
import types

import pytest
import torch
from datasets import ClassLabel, Dataset, Features, Value
from transformers import BertConfig, BertForMaskedLM, BertTokenizer

from hf_distill.tasks.augment import AUGMENTATIONS, augment_dataset, embedding_neighbours

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = (
    "the a cat dog sat on mat ran in park it was good bad very movie film plot slow fun we liked hated this that "
    "is are and but not quite long short story actors played well old new day night town"
).split()
VOCAB = SPECIAL + WORDS + ["##s", "##ed", "##ing"]
SENTENCES = [
    "the cat sat on the mat",
    "this movie was very good",
    "we hated the slow plot but the actors played well",
    "it is a short film",
]
MAX_POSITIONS = 64


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    vocab_file = tmp_path_factory.mktemp("mlm") / "vocab.txt"
    vocab_file.write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    return BertTokenizer(str(vocab_file))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(VOCAB),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=MAX_POSITIONS,
    )
    return BertForMaskedLM(config).eval()


def sentences(label_feature=None, labels=None) -> Dataset:
    data = {"sentence": SENTENCES, "idx": list(range(len(SENTENCES)))}
    features = {"sentence": Value("string"), "idx": Value("int32")}
    if label_feature is not None:
        data["label"] = labels
        features["label"] = label_feature
    return Dataset.from_dict(data, features=Features(features))


def classified() -> Dataset:
    return sentences(ClassLabel(names=["negative", "positive"]), [1, 1, 0, 1])


def pairs() -> Dataset:
    return Dataset.from_dict(
        {
            "sentence1": SENTENCES,
            "sentence2": list(reversed(SENTENCES)),
            "label": [0.5, 4.0, 2.25, 3.0],
        },
        features=Features({"sentence1": Value("string"), "sentence2": Value("string"), "label": Value("float32")}),
    )


def augment(dataset=None, **kwargs):
    # every draw kept: these tests check the draws themselves (the dropping of duplicates has tests of its own)
    options = {"text_columns": ["sentence"], "method": "mask", "copies": 3, "probability": 0.5, "seed": 0,
               "keep_duplicates": True}  # fmt: skip
    options["mask_token"] = "[MASK]"
    options.update(kwargs)
    return augment_dataset(classified() if dataset is None else dataset, **options)


# A hand-made table for "embedding": each word's replacements.
NEIGHBOURS = {"cat": ["dog"], "the": ["a", "this"], "movie": ["film", "plot"], "good": ["bad", "fun"], "sat": ["ran"]}


def embedding(dataset=None, **kwargs):
    return augment(dataset, method="embedding", mask_token=None, neighbours=NEIGHBOURS, **kwargs)


def mlm(model, tokenizer, dataset=None, **kwargs):
    return augment(dataset, method="mlm", mask_token=None, mlm_model=model, mlm_tokenizer=tokenizer, **kwargs)


# ---- shape, order, labels ----


def test_copies_follow_the_rows_in_order_without_labels():
    out = augment(probability=0.0, copies=3)
    assert out.column_names == ["sentence", "label"]
    assert out.features["label"] == Value("int64")
    assert out["sentence"] == [text for text in SENTENCES for _ in range(3)]
    assert out["label"] == [-100] * 12


def test_integer_labels_become_minus_100():
    out = augment(sentences(Value("int64"), [0, 2, 1, 2]), copies=2)
    assert out.features["label"] == Value("int64")
    assert out["label"] == [-100] * 8


def test_float_labels_become_nan_and_pairs_keep_both_columns():
    out = augment(pairs(), text_columns=["sentence1", "sentence2"], copies=2)
    assert out.column_names == ["sentence1", "sentence2", "label"]
    assert out.features["label"].dtype in ("float32", "float64")
    assert len(out) == 8 and all(math.isnan(label) for label in out["label"])


def test_missing_label_column_is_created():
    out = augment(sentences(), copies=2)
    assert out.column_names == ["sentence", "label"]
    assert out.features["label"] == Value("int64") and out["label"] == [-100] * 8


@pytest.mark.parametrize("kwargs", [{"copies": 0}, {"method": "none", "copies": 3}])
def test_no_copies_give_an_empty_dataset_with_the_same_columns(kwargs):
    out = augment(**kwargs)
    assert len(out) == 0
    assert out.features == Features({"sentence": Value("string"), "label": Value("int64")})
    empty_pairs = augment(pairs(), text_columns=["sentence1", "sentence2"], **kwargs)
    assert empty_pairs.column_names == ["sentence1", "sentence2", "label"] and len(empty_pairs) == 0


@pytest.mark.parametrize("method", ["mask", "ngram", "mask_ngram", "embedding"])
def test_empty_text_stays_empty(method):
    dataset = Dataset.from_dict({"sentence": ["", "   ", "the cat"], "label": [0, 1, 0]})
    out = augment(dataset, method=method, probability=1.0, copies=2, neighbours=NEIGHBOURS)
    assert out["sentence"][:4] == ["", "", "", ""]


# ---- seeding ----


@pytest.mark.parametrize("method", ["mask", "ngram", "mask_ngram", "embedding"])
def test_same_seed_same_copies_other_seed_other_copies(method):
    first = augment(method=method, copies=5, seed=3, neighbours=NEIGHBOURS)["sentence"]
    assert augment(method=method, copies=5, seed=3, neighbours=NEIGHBOURS)["sentence"] == first
    assert augment(method=method, copies=5, seed=4, neighbours=NEIGHBOURS)["sentence"] != first
    assert len(set(first[5:10])) > 1  # the copies of one row differ from each other


# ---- mask ----


def test_mask_probability_zero_and_one():
    assert augment(probability=0.0)["sentence"] == [text for text in SENTENCES for _ in range(3)]
    masked = augment(probability=1.0)["sentence"]
    for text, original in zip(masked, [text for text in SENTENCES for _ in range(3)]):
        assert text.split() == ["[MASK]"] * len(original.split())


def test_mask_half_masks_about_half_the_words():
    dataset = Dataset.from_dict({"sentence": [" ".join(WORDS * 5)] * 4, "label": [0] * 4})
    out = augment(dataset, probability=0.5, copies=5)
    words = [word for text in out["sentence"] for word in text.split()]
    assert len(words) == 20 * len(WORDS) * 5
    assert 0.45 < words.count("[MASK]") / len(words) < 0.55
    # Unmasked words stay in place.
    for text in out["sentence"]:
        for word, original in zip(text.split(), (WORDS * 5)):
            assert word in ("[MASK]", original)


# ---- n-gram ----


def is_contiguous(part: list[str], whole: list[str]) -> bool:
    return any(whole[start : start + len(part)] == part for start in range(len(whole) - len(part) + 1))


def test_ngram_outputs_are_contiguous_runs_of_one_to_five_words():
    out = augment(method="ngram", probability=1.0, copies=20)["sentence"]
    lengths = set()
    for index, text in enumerate(out):
        original = SENTENCES[index // 20].split()
        words = text.split()
        assert 1 <= len(words) <= min(5, len(original)) and is_contiguous(words, original)
        lengths.add(len(words))
    assert lengths == {1, 2, 3, 4, 5}
    assert augment(method="ngram", probability=0.0)["sentence"] == [text for text in SENTENCES for _ in range(3)]


def test_ngram_cuts_every_span_of_one_to_five_words_the_first_and_last_included():
    words = WORDS[:10]  # ten distinct words: a cut's words tell where it starts
    dataset = Dataset.from_dict({"sentence": [" ".join(words)], "label": [0]})
    out = augment(dataset, method="ngram", probability=1.0, copies=500)["sentence"]
    every_span = {" ".join(words[start : start + n]) for n in range(1, 6) for start in range(len(words) - n + 1)}
    assert set(out) == every_span  # 40 spans, each drawn about 1 time in 40
    assert any(text.endswith(" " + words[-1]) for text in out) and any(text.startswith(words[0] + " ") for text in out)


def test_ngram_at_half_keeps_some_texts_whole():
    out = augment(method="ngram", probability=0.5, copies=20)["sentence"]
    long_rows = out[40:60]  # the third sentence has 10 words, so an n-gram of it is always shorter
    whole = sum(text == SENTENCES[2] for text in long_rows)
    assert 0 < whole < 20


def test_mask_ngram_masks_then_cuts():
    out = augment(method="mask_ngram", probability=1.0, copies=4)["sentence"]
    for text in out:
        assert 1 <= len(text.split()) <= 5 and set(text.split()) == {"[MASK]"}


def test_pairs_augment_each_side_independently():
    out = augment(pairs(), text_columns=["sentence1", "sentence2"], method="ngram", probability=0.5, copies=20)
    changed_first = [a != SENTENCES[i // 20] for i, a in enumerate(out["sentence1"])]
    changed_second = [b != SENTENCES[::-1][i // 20] for i, b in enumerate(out["sentence2"])]
    assert any(changed_first) and any(changed_second)
    assert any(a and not b for a, b in zip(changed_first, changed_second))
    assert any(b and not a for a, b in zip(changed_first, changed_second))
    for i, (a, b) in enumerate(zip(out["sentence1"], out["sentence2"])):
        assert is_contiguous(a.split(), SENTENCES[i // 20].split())
        assert is_contiguous(b.split(), SENTENCES[::-1][i // 20].split())


def test_the_two_sides_of_a_pair_draw_their_own_randomness():
    # the same text on both sides: sides sharing one draw would get the same masking in every copy
    text = "the cat sat on the mat in park"
    dataset = Dataset.from_dict({"sentence1": [text], "sentence2": [text], "label": [0]})
    out = augment(dataset, text_columns=["sentence1", "sentence2"], probability=0.5, copies=50)
    different = sum(a != b for a, b in zip(out["sentence1"], out["sentence2"]))
    assert different > 45  # independent maskings of 8 words agree 1 time in 2**8


# ---- masked LM ----


def allowed_replacements() -> set[str]:
    return {word for word in VOCAB if word not in SPECIAL and not word.startswith("##")}


def test_mlm_replaces_all_words_with_plain_vocabulary_words(model, tokenizer):
    out = mlm(model, tokenizer, probability=1.0, copies=3)["sentence"]
    for index, text in enumerate(out):
        words = text.split()
        assert len(words) == len(SENTENCES[index // 3].split())
        assert set(words) <= allowed_replacements()
    assert out != [text for text in SENTENCES for _ in range(3)]


def test_mlm_leaves_unchosen_words_in_place(model, tokenizer):
    out = mlm(model, tokenizer, probability=0.5, copies=6)["sentence"]
    changed = 0
    for index, text in enumerate(out):
        original = SENTENCES[index // 6].split()
        words = text.split()
        assert len(words) == len(original)
        assert all(word == old or word in allowed_replacements() for word, old in zip(words, original))
        changed += sum(word != old for word, old in zip(words, original))
    assert changed > 0
    assert mlm(model, tokenizer, probability=0.0)["sentence"] == [text for text in SENTENCES for _ in range(3)]


def test_mlm_is_seeded_and_independent_of_batching(model, tokenizer):
    first = mlm(model, tokenizer, probability=0.6, copies=4, seed=1)["sentence"]
    assert mlm(model, tokenizer, probability=0.6, copies=4, seed=1, mlm_batch_size=1)["sentence"] == first
    assert mlm(model, tokenizer, probability=0.6, copies=4, seed=2)["sentence"] != first


def test_mlm_top_1_is_the_best_allowed_prediction_for_every_seed(model, tokenizer):
    # At p=1 every word is chosen, so with one candidate the seed cannot change anything.
    first = mlm(model, tokenizer, probability=1.0, copies=2, seed=0, mlm_top_k=1)["sentence"]
    assert mlm(model, tokenizer, probability=1.0, copies=2, seed=9, mlm_top_k=1)["sentence"] == first


def test_mlm_replacements_may_be_numbers(tmp_path):
    # the output bias makes "42" the top prediction everywhere: a word of digits is a whole word, so it replaces
    vocab_file = tmp_path / "vocab.txt"
    vocab_file.write_text("\n".join([*VOCAB, "42"]) + "\n", encoding="utf-8")
    tokenizer = BertTokenizer(str(vocab_file))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(VOCAB) + 1, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=MAX_POSITIONS)  # fmt: skip
    model = BertForMaskedLM(config).eval()
    with torch.no_grad():
        model.get_output_embeddings().bias[tokenizer.convert_tokens_to_ids("42")] = 100.0
    out = mlm(model, tokenizer, sentences().select([0]), probability=1.0, copies=2, mlm_top_k=1)["sentence"]
    assert out == ["42 42 42 42 42 42"] * 2


def test_mlm_keeps_unchosen_words_that_hold_a_literal_mask_token(model, tokenizer):
    # "a[MASK]b" tokenizes to a mask too: the chosen words must still get the predictions at their own positions.
    dataset = Dataset.from_dict({"sentence": ["a[MASK]b the cat sat"]})
    out = mlm(model, tokenizer, dataset, probability=0.5, copies=12)["sentence"]
    original = "a[MASK]b the cat sat".split()
    for text in out:
        words = text.split()
        assert len(words) == 4
        assert all(word == old or word in allowed_replacements() for word, old in zip(words, original))
    assert any(text.startswith("a[MASK]b ") for text in out) and any(not text.startswith("a[MASK]b") for text in out)


def test_mlm_pairs_truncation_and_training_mode(model, tokenizer):
    long_text = " ".join(WORDS * 3)  # longer than the model's 64 positions
    dataset = Dataset.from_dict({"sentence1": [long_text, ""], "sentence2": ["the cat sat", "a dog ran"]})
    model.train()
    try:
        out = mlm(model, tokenizer, dataset, text_columns=["sentence1", "sentence2"], probability=1.0, copies=2)
        assert model.training  # the caller's mode is restored...
    finally:
        model.eval()
    try:
        mlm(model, tokenizer, dataset, text_columns=["sentence1", "sentence2"], probability=1.0, copies=1)
        assert not model.training  # ...eval() too
    finally:
        model.eval()
    assert out["label"] == [-100] * 4 and out["sentence1"][2:] == ["", ""]
    kept = MAX_POSITIONS - 2  # [CLS] and [SEP]; every word here is one token
    for text in out["sentence1"][:2]:
        assert text.split()[kept:] == long_text.split()[kept:]
        assert set(text.split()[:kept]) <= allowed_replacements()


# ---- bad input ----


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"copies": -1}, "augment_copies"),
        ({"copies": 1.5}, "augment_copies"),
        ({"probability": 1.5}, "augment_probability"),
        ({"probability": -0.1}, "augment_probability"),
        ({"method": "shuffle"}, "augment_method.*mask_ngram"),
        ({"text_columns": ["text"]}, "text column 'text'.*sentence"),
        ({"mask_token": None}, "mask_token"),
        ({"method": "mask_ngram", "mask_token": ""}, "mask_token"),
        ({"method": "mlm", "mlm_tokenizer": "set below"}, "needs mlm_model,"),
        ({"method": "mlm", "mlm_model": "set below"}, "needs mlm_tokenizer,"),
        ({"method": "mlm"}, "needs mlm_model and mlm_tokenizer"),
    ],
)
def test_bad_input_raises_a_clear_error(kwargs, match, model, tokenizer):
    kwargs = {
        key: {"mlm_model": model, "mlm_tokenizer": tokenizer}[key] if value == "set below" else value
        for key, value in kwargs.items()
    }
    with pytest.raises(ValueError, match=match):
        augment(**kwargs)


def test_tokenizer_without_mask_token_raises(model):
    no_mask = types.SimpleNamespace(mask_token=None, mask_token_id=None)
    with pytest.raises(ValueError, match="masked LM's tokenizer has no mask token"):
        mlm(model, no_mask)


@pytest.mark.parametrize(("kwargs", "match"), [({"mlm_top_k": 0}, "mlm_top_k"), ({"mlm_batch_size": 0}, "mlm_batch")])
def test_bad_mlm_numbers_raise(kwargs, match, model, tokenizer):
    with pytest.raises(ValueError, match=match):
        mlm(model, tokenizer, **kwargs)


def test_the_methods_are_listed():
    assert AUGMENTATIONS == ("none", "mask", "ngram", "mask_ngram", "mlm", "embedding")


# ---- embedding neighbours ----


def test_embedding_replaces_every_word_the_table_has_and_keeps_the_rest():
    out = embedding(probability=1.0, copies=4)["sentence"]
    for copy in out[:4]:  # "the cat sat on the mat"
        first, cat, sat, on, second, mat = copy.split()
        assert first in ("a", "this") and second in ("a", "this")
        assert (cat, sat, on, mat) == ("dog", "ran", "on", "mat")
    for copy in out[4:8]:  # "this movie was very good"
        this, movie, was, very, good = copy.split()
        assert (this, was, very) == ("this", "was", "very")
        assert movie in ("film", "plot") and good in ("bad", "fun")
    assert set(out[:4]) != {out[0]}  # the draws among several neighbours differ between copies
    assert embedding(probability=0.0, copies=2)["sentence"] == [text for text in SENTENCES for _ in range(2)]


def test_embedding_keeps_punctuation_and_capitals_and_skips_what_the_table_lacks():
    dataset = Dataset.from_dict(
        {"sentence": ["The cat, (sat) on Mat's mat.", "... !"], "label": [1, 0]},
        features=Features({"sentence": Value("string"), "label": Value("int64")}),
    )
    out = embedding(dataset, probability=1.0, copies=3)["sentence"]
    for copy in out[:3]:
        the, cat, sat, rest = copy.split(" ", 3)
        assert the in ("A", "This") and cat == "dog," and sat == "(ran)" and rest == "on Mat's mat."
    assert out[3:] == ["... !"] * 3


def test_embedding_looks_a_capitalised_word_up_as_written_in_a_cased_table():
    # a cased tokenizer's table holds "Paris" and no "paris": the word is looked up as written first
    dataset = Dataset.from_dict({"sentence": ["Paris is big", "I like Paris."], "label": [0, 1]})
    out = augment(dataset, method="embedding", mask_token=None, neighbours={"Paris": ["London"], "big": ["large"]},
                  probability=1.0, copies=1)  # fmt: skip
    assert out["sentence"] == ["London is large", "I like London."]


def test_embedding_with_half_probability_replaces_about_half_the_words():
    dataset = Dataset.from_dict({"sentence": ["cat " * 200], "label": [0]})
    (copy,) = embedding(dataset, probability=0.5, copies=1)["sentence"]
    assert 70 < copy.split().count("dog") < 130


def test_embedding_pairs_replace_each_side_independently_and_keep_no_label():
    out = embedding(pairs(), text_columns=["sentence1", "sentence2"], probability=0.5, copies=20)
    changed_first = [a != SENTENCES[i // 20] for i, a in enumerate(out["sentence1"])]
    changed_second = [b != SENTENCES[::-1][i // 20] for i, b in enumerate(out["sentence2"])]
    assert any(a and not b for a, b in zip(changed_first, changed_second))
    assert any(b and not a for a, b in zip(changed_first, changed_second))
    assert all(math.isnan(label) for label in out["label"])


@pytest.mark.parametrize("neighbours", [None, ["cat", "dog"]])
def test_embedding_without_a_table_raises(neighbours):
    with pytest.raises(ValueError, match="needs a neighbours table.*embedding_neighbours"):
        augment(method="embedding", neighbours=neighbours)


def reference_neighbours(matrix: torch.Tensor, tokenizer, top_k: int) -> dict[str, list[str]]:
    """The table by brute force in float64: cosine of every whole-word pair, itself excluded, sorted."""
    words = {token: index for token, index in tokenizer.get_vocab().items() if token in WORDS}
    vectors = {word: matrix[index].double() for word, index in words.items()}
    table = {}
    for word, vector in vectors.items():
        scores = {
            other: float(vector @ other_vector / (vector.norm() * other_vector.norm()))
            for other, other_vector in vectors.items()
            if other != word
        }
        table[word] = sorted(scores, key=scores.get, reverse=True)[:top_k]
    return table


@pytest.mark.parametrize("top_k", [1, 5, 200])
def test_embedding_neighbours_match_a_float64_cosine_reference(model, tokenizer, top_k):
    table = embedding_neighbours(model, tokenizer, top_k=top_k, batch_size=7)
    assert table == reference_neighbours(model.get_input_embeddings().weight.detach(), tokenizer, top_k)
    assert set(table) == set(WORDS)  # no special token, no ## piece
    assert all(len(found) == min(top_k, len(WORDS) - 1) for found in table.values())


def test_embedding_neighbours_of_chosen_words_from_a_matrix(tokenizer):
    matrix = torch.zeros(len(VOCAB), 3)
    matrix[:, 2] = 1.0  # every word alike...
    ids = tokenizer.convert_tokens_to_ids(["cat", "dog", "sat", "[MASK]", "##s"])
    matrix[ids] = torch.tensor([[1.0, 0.0, 0.0], [0.9, 0.1, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    table = embedding_neighbours(matrix, tokenizer, top_k=2, words=["cat", "sat", "unknown"])
    assert set(table) == {"cat", "sat"}
    assert table["cat"][0] == "dog" and table["sat"][0] == "dog"  # ...but these: [MASK] and ##s never count


def test_embedding_neighbours_read_byte_level_tokens_as_the_words_they_spell():
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(SENTENCES * 20, vocab_size=400, min_frequency=1, special_tokens=["<pad>", "<mask>"])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, pad_token="<pad>", mask_token="<mask>")
    vocab = tokenizer.get_vocab()
    assert {"Ġthe", "the", "Ġmovie"} <= set(vocab)  # "the" starts a word (Ġthe) and a text (the)
    torch.manual_seed(0)
    matrix = torch.randn(len(tokenizer), 8)
    matrix[vocab["Ġthe"]] = matrix[vocab["Ġmovie"]]  # the word-start row: nearest to "movie"...
    matrix[vocab["the"]] = -matrix[vocab["Ġmovie"]]  # ...the other one: farthest from it
    table = embedding_neighbours(matrix, tokenizer, top_k=3)
    assert {"the", "movie", "cat"} <= set(table)  # "Ġcat" read as "cat"
    assert not any(word.startswith("Ġ") or not word.isalpha() for word in table)  # nor lone bytes ("ĸ")
    assert all(neighbour in table for found in table.values() for neighbour in found)
    assert table["the"][0] == "movie" and table["movie"][0] == "the"  # a word is its word-start token


def byte_level_tokenizer(vocab_size: int):
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    bpe.train_from_iterator(SENTENCES * 20, vocab_size=vocab_size, min_frequency=1, special_tokens=specials)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer, bos_token="<s>", pad_token="<pad>", eos_token="</s>", mask_token="<mask>"
    )


def word_pieces(tokenizer) -> list[str]:
    """Byte-level tokens that only ever continue a word: letters, no Ġ, and no Ġ twin in the vocabulary."""
    vocab = tokenizer.get_vocab()
    return [t for t in vocab if t.isalpha() and t.isascii() and "Ġ" + t not in vocab and len(t) > 1]


def test_byte_level_pieces_of_words_are_never_neighbours_or_replacements():
    # "played" is Ġp lay ed: "lay" and "ed" were taken for words, and a masked LM favouring "ed" turned every chosen
    # word into "ed"; the embedding table held "lay", "ed" as keys and neighbours
    tokenizer = byte_level_tokenizer(300)
    pieces = word_pieces(tokenizer)
    assert pieces  # the vocabulary is small enough to cut words: the case under test
    torch.manual_seed(0)
    table = embedding_neighbours(torch.randn(len(tokenizer), 8), tokenizer, top_k=3)
    assert not set(pieces) & (set(table) | {word for found in table.values() for word in found})
    model = biased_roberta(tokenizer, {pieces[0]: 100.0, "Ġcat": 50.0})  # favourites: a word piece, then "cat"
    out = augment(sentences().select([2]), method="mlm", mask_token=None, mlm_model=model, mlm_tokenizer=tokenizer,
                  probability=1.0, copies=2, mlm_top_k=2)  # fmt: skip
    for text in out["sentence"]:
        assert set(text.split()) == {"cat"}


def biased_roberta(tokenizer, favourites: dict[str, float]):
    """A tiny random RoBERTa masked LM whose output bias makes `favourites` its top predictions everywhere."""
    from transformers import RobertaConfig, RobertaForMaskedLM

    torch.manual_seed(0)
    config = RobertaConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=32, max_position_embeddings=64, pad_token_id=tokenizer.pad_token_id,
                           type_vocab_size=1)  # fmt: skip
    model = RobertaForMaskedLM(config).eval()
    with torch.no_grad():
        model.lm_head.bias.zero_()
        for token, bias in favourites.items():
            model.lm_head.bias[tokenizer.convert_tokens_to_ids(token)] = bias
    return model


def test_mlm_replacement_keeps_the_words_punctuation_and_capital():
    # "The cat sat on the mat." became "cat cat cat cat cat cat": each word masked whole, its "." and capital lost
    tokenizer = byte_level_tokenizer(300)
    model = biased_roberta(tokenizer, {"Ġcat": 50.0})
    rows = sentences().select([0]).map(lambda row: {"sentence": 'The cat sat on "the mat." ...'})
    out = augment(rows, method="mlm", mask_token=None, mlm_model=model, mlm_tokenizer=tokenizer, probability=1.0,
                  copies=1, mlm_top_k=1)  # fmt: skip
    assert out["sentence"] == ['Cat cat cat cat "cat cat." ...']  # "..." alone: nothing to mask


@pytest.mark.parametrize(("kwargs", "match"), [({"top_k": 0}, "top_k"), ({"batch_size": 0}, "batch_size")])
def test_embedding_neighbours_bad_numbers_raise(model, tokenizer, kwargs, match):
    with pytest.raises(ValueError, match=match):
        embedding_neighbours(model, tokenizer, **kwargs)


def test_embedding_neighbours_refuse_a_partitioned_matrix(tokenizer):
    with pytest.raises(ValueError, match=r"shape \(0,\).*whole"):
        embedding_neighbours(torch.empty(0), tokenizer)


def test_mlm_with_roberta_positions_fits_the_text_to_its_offset_position_table():
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast, RobertaConfig, RobertaForMaskedLM

    bpe = ByteLevelBPETokenizer()
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    bpe.train_from_iterator(SENTENCES * 20, vocab_size=300, min_frequency=1, special_tokens=specials)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer, bos_token="<s>", pad_token="<pad>", eos_token="</s>", mask_token="<mask>"
    )
    tokenizer.model_max_length = 10**6  # unset, as in many saved tokenizers: the position table decides
    torch.manual_seed(0)
    positions = 24  # pad id 1: position ids start at 2, so 22 tokens fit
    config = RobertaConfig(
        vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=positions, pad_token_id=tokenizer.pad_token_id, type_vocab_size=1,
    )  # fmt: skip
    model = RobertaForMaskedLM(config).eval()
    long_text = " ".join(SENTENCES * 3)  # far more than 22 tokens
    out = augment(
        sentences().select([0]).map(lambda row: {"sentence": long_text}),
        method="mlm", mask_token=None, mlm_model=model, mlm_tokenizer=tokenizer, probability=1.0, copies=1,
    )  # fmt: skip
    words = out["sentence"][0].split()
    assert len(words) == len(long_text.split())
    assert words[-5:] == long_text.split()[-5:]  # cut off by truncation: kept as they were


# ---- duplicates dropped (Tang et al., 2019) ----


def keys(dataset, columns=("sentence",)):
    return [tuple(" ".join(text.split()) for text in texts) for texts in zip(*(dataset[c] for c in columns))]


@pytest.mark.parametrize("method", ["mask", "ngram", "mask_ngram", "embedding"])
def test_copies_identical_to_their_row_or_to_one_another_are_dropped(method):
    # an ngram copy at p = 0.2 is its row 4 times in 5: each was a teacher pass over text the student already had,
    # counted as an augmented example
    options = dict(method=method, copies=8, probability=0.2, seed=3)
    if method == "embedding":
        options.update(mask_token=None, neighbours=NEIGHBOURS)
    every = augment(**options)
    kept = augment(**options, keep_duplicates=False)
    originals = keys(classified())
    per_row = [keys(every)[row * 8 : (row + 1) * 8] for row in range(len(SENTENCES))]
    expected = []
    for original, draws in zip(originals, per_row):
        seen = {original}
        for draw in draws:
            if draw not in seen:
                seen.add(draw)
                expected.append(draw)
    assert keys(kept) == expected  # the first of each new text, in order, row by row
    assert len(kept) < len(every)  # p = 0.2 leaves some copies whole here
    assert not set(keys(kept)) & set(originals)
    assert kept.features == every.features and set(kept["label"]) <= {-100}


def test_a_pair_copy_is_new_when_either_side_changed():
    every = augment(pairs(), text_columns=["sentence1", "sentence2"], copies=6, probability=0.3, seed=1)
    kept = augment(pairs(), text_columns=["sentence1", "sentence2"], copies=6, probability=0.3, seed=1,
                   keep_duplicates=False)  # fmt: skip
    columns = ("sentence1", "sentence2")
    originals = keys(pairs(), columns)
    assert not set(keys(kept, columns)) & set(originals)
    # a copy with one side unchanged and the other masked is kept
    one_side = [
        k for k in keys(kept, columns) if k[0] in {o[0] for o in originals} or k[1] in {o[1] for o in originals}
    ]
    assert one_side and len(kept) <= len(every)
    assert all(math.isnan(label) for label in kept["label"])


def test_probability_zero_makes_no_copy_and_whitespace_alone_is_no_change():
    assert len(augment(probability=0.0, keep_duplicates=False)) == 0
    spaced = Dataset.from_dict({"sentence": ["the  cat sat ", "a dog"], "label": [0, 1]})
    assert len(augment(spaced, method="ngram", probability=0.0, keep_duplicates=False)) == 0
