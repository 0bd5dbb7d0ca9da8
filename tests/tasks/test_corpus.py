"""hf_distill.tasks.corpus: the masked-LM script's corpus (Hub datasets by their text column, the held-out lines, the
blocks) and its fixed masks, on tiny text and a tiny tokenizer (no model)."""

from __future__ import annotations

from types import SimpleNamespace

import datasets
import pytest
import tiny
from transformers import DataCollatorForLanguageModeling

from hf_distill.tasks.corpus import HELD_OUT_SEED, fixed_masks, load_corpus, tokenize_corpus


def corpus_arguments(**values):
    defaults = dict(
        dataset_name=None, dataset_config_name=None, train_file=None, validation_file=None, text_column="text",
        file_encoding="utf-8", validation_split_size=None, max_train_samples=None, max_eval_samples=None,
    )  # fmt: skip
    return SimpleNamespace(**{**defaults, **values})


def hub_folder(tmp_path):
    """A dataset folder as `datasets.load_dataset` reads it (a Hub dataset's layout: train and validation splits)."""
    folder = tmp_path / "reviews"
    folder.mkdir()
    (folder / "train.csv").write_text("sentence,stars\n" + "".join(f"train line {i},5\n" for i in range(20)))
    (folder / "validation.csv").write_text("sentence,stars\nheld out one,4\nheld out two,3\n")
    return folder


def test_a_hub_dataset_is_read_from_the_text_column(tmp_path):
    # --text_column was ignored for --dataset_name: "text" was always read
    folder = hub_folder(tmp_path)
    raw = load_corpus(corpus_arguments(dataset_name=str(folder), text_column="sentence"))
    assert raw["train"]["text"][:2] == ["train line 0", "train line 1"]
    assert raw["validation"]["text"] == ["held out one", "held out two"]


def test_a_hub_dataset_without_the_text_column_is_refused_naming_its_columns(tmp_path):
    folder = hub_folder(tmp_path)
    message = (
        rf"The dataset '{folder}' has no column 'text' \(--text_column\) in its train split; its columns are "
        r"\['sentence', 'stars'\]\. Pass --text_column"
    )
    with pytest.raises(ValueError, match=message):
        load_corpus(corpus_arguments(dataset_name=str(folder)))


def test_held_out_lines_are_drawn_at_random_and_the_training_lines_keep_the_corpus_order(tmp_path):
    # the whole corpus was shuffled before the split, so blocks (which pack consecutive lines) strung together
    # unrelated sentences; --max_train_samples keeps the first N training lines, as its help says
    corpus = tmp_path / "corpus.txt"
    lines = [f"line {i}" for i in range(40)]
    corpus.write_text("\n".join(lines) + "\n")
    raw = load_corpus(corpus_arguments(train_file=str(corpus), validation_split_size=4))
    held_out = raw["validation"]["text"]
    assert len(held_out) == 4 and held_out != lines[:4] and held_out != sorted(held_out, key=lines.index)
    assert raw["train"]["text"] == [line for line in lines if line not in held_out]
    capped = load_corpus(corpus_arguments(train_file=str(corpus), validation_split_size=4, max_train_samples=5))
    assert capped["train"]["text"] == raw["train"]["text"][:5] and capped["validation"]["text"] == held_out
    assert HELD_OUT_SEED == 42  # the draw is seeded: the same lines every run


def test_shuffle_lines_draws_the_training_lines_of_a_corpus_stored_in_some_order(tmp_path):
    # tweets sorted by sentiment: the first N in corpus order were one kind only
    import random

    corpus = tmp_path / "corpus.txt"
    lines = [f"line {i}" for i in range(40)]
    corpus.write_text("\n".join(lines) + "\n")
    ordered = load_corpus(corpus_arguments(train_file=str(corpus), validation_split_size=4))
    shuffled = load_corpus(corpus_arguments(train_file=str(corpus), validation_split_size=4, shuffle_lines=True))
    assert shuffled["validation"]["text"] == ordered["validation"]["text"]  # the same held-out lines
    assert sorted(shuffled["train"]["text"]) == sorted(ordered["train"]["text"]) != shuffled["train"]["text"]
    order = list(range(40))
    random.Random(HELD_OUT_SEED).shuffle(order)
    assert shuffled["train"]["text"] == [lines[i] for i in order[4:]]  # the held-out draw's permutation
    given = load_corpus(corpus_arguments(train_file=str(corpus), validation_file=str(corpus), shuffle_lines=True))
    assert given["train"]["text"] == [lines[i] for i in order] != lines  # every line, shuffled alike
    assert given["validation"]["text"] == lines  # held-out lines as given


def test_validation_split_size_holds_out_training_lines_of_a_hub_dataset_with_a_validation_split(tmp_path):
    folder = hub_folder(tmp_path)  # 20 train lines, a validation split of 2
    raw = load_corpus(corpus_arguments(dataset_name=str(folder), text_column="sentence", validation_split_size=5))
    held_out = raw["validation"]["text"]
    assert len(held_out) == 5 and all(line.startswith("train line") for line in held_out)
    assert str(raw["validation"].split) == "train" and len(raw["train"]) == 15


def test_max_eval_samples_keeps_the_first_of_the_held_out_lines_whatever_max_train_samples(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(f"line {i}\n" for i in range(40)))
    uncapped = load_corpus(corpus_arguments(train_file=str(corpus), validation_split_size=10))
    capped = load_corpus(corpus_arguments(train_file=str(corpus), validation_split_size=10, max_eval_samples=3))
    assert capped["validation"]["text"] == uncapped["validation"]["text"][:3]
    assert capped["train"]["text"] == uncapped["train"]["text"]  # 30 lines
    both = load_corpus(
        corpus_arguments(train_file=str(corpus), validation_split_size=10, max_eval_samples=3, max_train_samples=5)
    )
    assert both["validation"]["text"] == uncapped["validation"]["text"][:3]
    assert both["train"]["text"] == uncapped["train"]["text"][:5]


def test_a_hub_dataset_without_a_validation_split_holds_out_a_capped_share(tmp_path, monkeypatch):
    # 5% of bookcorpus is 3.7M lines, each masked in Python and scored twice: capped
    from hf_distill.tasks import corpus as module

    folder = tmp_path / "lines"
    folder.mkdir()
    (folder / "train.csv").write_text("text\n" + "".join(f"line {i}\n" for i in range(400)))
    assert len(load_corpus(corpus_arguments(dataset_name=str(folder)))["validation"]) == 20  # 5%
    monkeypatch.setattr(module, "DEFAULT_HELD_OUT_CAP", 7)
    assert len(load_corpus(corpus_arguments(dataset_name=str(folder)))["validation"]) == 7


def test_a_corpus_shorter_than_one_block_is_one_shorter_block(tmp_path):
    # the module docstring's account of padding: such a block is padded in its batch, and padding is never masked
    tokenizer = tiny.tokenizer(tmp_path / "tok")
    raw = datasets.DatasetDict({"validation": datasets.Dataset.from_dict({"text": ["the quick", "quick the"]})})
    blocks = tokenize_corpus(raw, tokenizer, max_seq_length=32, line_by_line=False)["validation"]
    ids = tokenizer("the quick", add_special_tokens=False)["input_ids"]
    other = tokenizer("quick the", add_special_tokens=False)["input_ids"]
    assert blocks["input_ids"] == [[2, *ids, 3, *other, 3]]  # the lines apart by [SEP], as BERT's sentences
    assert len(blocks[0]["input_ids"]) < 32


def test_packed_lines_are_separated_and_no_block_doubles_its_edges(tmp_path):
    # the lines' tokens were joined with nothing between them: one tweet's last word ran into the next one's first
    tokenizer = tiny.tokenizer(tmp_path / "tok")
    texts = [f"the quick {i}" for i in range(60)]
    raw = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": texts})})
    blocks = tokenize_corpus(raw, tokenizer, max_seq_length=9, line_by_line=False)["train"]["input_ids"]
    sep, cls = tokenizer.sep_token_id, tokenizer.cls_token_id
    assert len(blocks) > 10
    for block in blocks:
        assert block[0] == cls and block[-1] == sep and len(block) <= 9
        assert block[1] != sep and block[-2] != sep  # a boundary at a block's edge is the block's own [SEP]
        assert all(not (a == sep and b == sep) for a, b in zip(block, block[1:]))
    words = len(tokenizer("the quick 0", add_special_tokens=False)["input_ids"])
    inner = [token for block in blocks for token in block[1:-1]]
    assert inner.count(sep) >= len(inner) // (words + 1) - len(blocks)  # every line boundary inside a block marked
    one_word = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": ["quick"] * 12})})
    word = tokenizer("quick", add_special_tokens=False)["input_ids"]
    cut = tokenize_corpus(one_word, tokenizer, max_seq_length=7, line_by_line=False)["train"]["input_ids"]
    # bodies of 5: "q S q S q", then "S q S q S" loses both edges (two tokens fewer)
    assert cut[:2] == [[cls, *word, sep, *word, sep, *word, sep], [cls, *word, sep, *word, sep]]


def test_a_corpus_that_fills_its_last_block_exactly_keeps_that_block(tmp_path):
    tokenizer = tiny.tokenizer(tmp_path / "tok")
    (word,) = tokenizer("quick", add_special_tokens=False)["input_ids"]
    sep, cls = tokenizer.sep_token_id, tokenizer.cls_token_id
    # 8 one-word lines are 15 ids (7 [SEP] between them): three bodies of 5, the last one ending the corpus
    raw = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": ["quick"] * 8})})
    blocks = tokenize_corpus(raw, tokenizer, max_seq_length=7, line_by_line=False)["train"]["input_ids"]
    assert blocks == [
        [cls, word, sep, word, sep, word, sep],
        [cls, word, sep, word, sep],  # "S q S q S" lost both edges
        [cls, word, sep, word, sep, word, sep],
    ]
    assert sum(block.count(word) for block in blocks) == 8  # every word kept


def test_fixed_masks_refuse_a_held_out_set_with_no_masked_position(tmp_path):
    # scored, such masks gave both models loss 0 and perplexity 1: a perfect score on nothing
    tokenizer = tiny.tokenizer(tmp_path / "tok")
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15)
    one_word = datasets.Dataset.from_dict({"input_ids": [[2, 76, 3]], "special_tokens_mask": [[1, 0, 1]]})
    message = (
        r"The held-out set has no masked position \(1 block\(s\), 1 maskable token\(s\), --mlm_probability 0\.15, "
        r"mask seed 1\): .* a larger --validation_split_size or --max_eval_samples"
    )
    with pytest.raises(ValueError, match=message):
        fixed_masks(one_word, collator, seed=1)  # seed 1 masks nothing in it
    assert sum(label != -100 for label in fixed_masks(one_word, collator, seed=3)["labels"][0]) == 1
    nothing = datasets.Dataset.from_dict({"input_ids": []})
    with pytest.raises(ValueError, match=r"no masked position \(0 block\(s\), 0 maskable token\(s\)"):
        fixed_masks(nothing, collator, seed=1)


def test_a_text_corpus_is_split_at_line_ends_only(tmp_path):
    # str.splitlines also cut at a form feed, U+2028 and (read as latin-1) a cp1252 ellipsis, byte 0x85
    corpus = tmp_path / "corpus.txt"
    corpus.write_bytes(b"Wait\x85what happened\x0cnext\r\nsecond document\rthird\n")
    raw = load_corpus(corpus_arguments(train_file=str(corpus), validation_file=str(corpus), file_encoding="latin-1"))
    assert raw["train"]["text"] == ["Wait\x85what happened\x0cnext", "second document", "third"]
    separator = tmp_path / "separator.txt"
    separator.write_text("one\u2028document\nanother\n", encoding="utf-8")
    raw = load_corpus(corpus_arguments(train_file=str(separator), validation_file=str(separator)))
    assert raw["train"]["text"] == ["one\u2028document", "another"]


def test_the_held_out_split_names_where_its_lines_came_from(tmp_path):
    # the card said "validation" for lines held out of a Hub dataset's train split
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(f"line {i}\n" for i in range(10)))
    assert str(load_corpus(corpus_arguments(train_file=str(corpus), validation_split_size=2))["validation"].split) == (
        "train"
    )
    raw = load_corpus(corpus_arguments(train_file=str(corpus), validation_file=str(corpus)))
    assert str(raw["validation"].split) == "validation"
    assert str(load_corpus(corpus_arguments(dataset_name=str(hub_folder(tmp_path)), text_column="sentence"))[
        "validation"].split) == "validation"  # fmt: skip
    train_only = tmp_path / "train_only"
    train_only.mkdir()
    (train_only / "train.csv").write_text("text\n" + "".join(f"row {i}\n" for i in range(20)))
    raw = load_corpus(corpus_arguments(dataset_name=str(train_only)))
    assert str(raw["validation"].split) == "train" and len(raw["validation"]) == 1


def masking_collator(tokenizer, **options):
    return DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.5, **options)


def test_held_out_masks_never_target_a_token_training_never_masks(tmp_path):
    # the blocks' own special_tokens_mask marked [CLS]/[SEP] only; Trainer drops that column, so training never
    # masked [UNK] or a literal [MASK], while the held-out masks, made with the column, scored them
    tokenizer = tiny.tokenizer(tmp_path / "tok")
    texts = [f"the € quick [MASK] the {i} € quick" for i in range(40)]
    raw = datasets.DatasetDict({"validation": datasets.Dataset.from_dict({"text": texts})})
    for line_by_line in (False, True):
        blocks = tokenize_corpus(raw, tokenizer, max_seq_length=16, line_by_line=line_by_line)["validation"]
        assert "special_tokens_mask" not in blocks.column_names
        labels = [label for row in fixed_masks(blocks, masking_collator(tokenizer), seed=0)["labels"] for label in row]
        assert tokenizer.unk_token_id in blocks["input_ids"][0]
        assert set(labels) & set(tokenizer.all_special_ids) == set()
        assert sum(label != -100 for label in labels) > 20
    marked = blocks.add_column("special_tokens_mask", [[0] * len(ids) for ids in blocks["input_ids"]])
    labels = [label for row in fixed_masks(marked, masking_collator(tokenizer), seed=0)["labels"] for label in row]
    assert set(labels) & set(tokenizer.all_special_ids) == set()  # a row's own column is not read either


def test_fixed_masks_keep_each_rows_tokens_whatever_the_padding_side_and_multiple(tmp_path):
    tokenizer = tiny.tokenizer(tmp_path / "tok")
    texts = ["the quick" * (1 + i % 5) for i in range(30)]
    raw = datasets.DatasetDict({"validation": datasets.Dataset.from_dict({"text": texts})})
    blocks = tokenize_corpus(raw, tokenizer, max_seq_length=16, line_by_line=True)["validation"]
    right = fixed_masks(blocks, masking_collator(tokenizer), seed=5)
    # a bf16 run pads to a multiple of 8: the same seed drew other masks over the wider batch
    assert fixed_masks(blocks, masking_collator(tokenizer, pad_to_multiple_of=8), seed=5)["labels"] == right["labels"]
    tokenizer.padding_side = "left"  # the row was cut at its length from the left: padding kept, tokens lost
    left = fixed_masks(blocks, masking_collator(tokenizer), seed=5)
    for original, masked, labels in zip(blocks["input_ids"], left["input_ids"], left["labels"], strict=True):
        assert len(masked) == len(original)
        for token, kept, label in zip(original, masked, labels, strict=True):
            assert label == token if label != -100 else kept == token


def test_a_repeated_line_is_held_out_or_trained_on_never_both(tmp_path):
    # 8 of the demo corpus's 300 held-out tweets were also in its training lines (retweets)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(f"line {i % 10}\n" for i in range(60)))  # each line six times
    raw = load_corpus(corpus_arguments(train_file=str(corpus), validation_split_size=3))
    held_out = set(raw["validation"]["text"])
    assert len(raw["validation"]) == 3 and not held_out & set(raw["train"]["text"])
    assert len(raw["train"]) == 60 - 6 * len(held_out)  # every copy of a held-out line left train
    corpus.write_text("same\n" * 10)
    with pytest.raises(ValueError, match="every other line of the corpus repeats a held-out one"):
        load_corpus(corpus_arguments(train_file=str(corpus), validation_split_size=1))


def test_a_text_column_for_a_plain_text_corpus_is_refused(tmp_path):
    # it was never read: every line was taken whole
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("one\ntwo\n")
    with pytest.raises(ValueError, match=r"--text_column 'review' with 'corpus.txt', a plain-text corpus"):
        load_corpus(corpus_arguments(train_file=str(corpus), validation_file=str(corpus), text_column="review"))


def test_a_hub_text_column_that_holds_no_text_is_refused_naming_it(tmp_path):
    # the numbers reached str.strip: an AttributeError traceback
    folder = hub_folder(tmp_path)
    with pytest.raises(ValueError, match=r"column 'stars' \(--text_column\) holds Value\('int64'\), not text"):
        load_corpus(corpus_arguments(dataset_name=str(folder), text_column="stars"))


def test_a_hub_corpus_line_repeated_with_other_spaces_is_held_out_or_trained_on_never_both(tmp_path):
    folder = tmp_path / "spaced"
    folder.mkdir()
    lines = [f"line {i}" for i in range(30)] + ["repeated line"] * 10 + [" repeated line "] * 10
    (folder / "train.csv").write_text("text\n" + "".join(f'"{line}"\n' for line in lines))
    raw = load_corpus(corpus_arguments(dataset_name=str(folder), validation_split_size=9))
    held, trained = set(raw["validation"]["text"]), set(raw["train"]["text"])
    assert "repeated line" in held | trained and not held & trained
    assert all(line == line.strip() for line in held | trained)


def test_a_missing_local_dataset_is_one_line_naming_it(tmp_path):
    with pytest.raises(ValueError, match=r"--dataset_name '.*no_such_corpus' could not be loaded .* --train_file"):
        load_corpus(corpus_arguments(dataset_name=str(tmp_path / "no_such_corpus")))


def test_literal_special_token_text_in_the_corpus_stays_text(tmp_path):
    # "[MASK]" in a line became the real [MASK] id (never a label: the model saw a mask with no target), and "[SEP]"
    # a false sentence boundary
    tokenizer = tiny.tokenizer(tmp_path / "tok")
    raw = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": ["see [MASK] and [SEP] here"] * 3})})
    for line_by_line in (False, True):
        ids = tokenize_corpus(raw, tokenizer, max_seq_length=64, line_by_line=line_by_line)["train"]["input_ids"]
        assert tokenizer.mask_token_id not in ids[0]
        # [SEP]s only where the packing or the tokenizer put them: the block's end, and between lines
        assert ids[0].count(tokenizer.sep_token_id) == (1 if line_by_line else 3)


def test_line_by_line_says_how_much_text_it_cut(tmp_path, caplog):
    tokenizer = tiny.tokenizer(tmp_path / "tok")
    texts = ["the quick " * 20, "the quick", "quick " * 30]
    raw = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": texts})})
    with caplog.at_level("WARNING", logger="hf_distill.tasks.corpus"):
        blocks = tokenize_corpus(raw, tokenizer, max_seq_length=16, line_by_line=True)["train"]
    assert "_tokens_cut" not in blocks.column_names
    assert [len(ids) for ids in blocks["input_ids"]] == [16, 4, 16]
    cut = (40 + 2 - 16) + (30 + 2 - 16)
    assert f"2 of the 3 train lines are longer than --max_seq_length 16 tokens and were cut ({cut} tokens" in (
        caplog.text
    )
    caplog.clear()
    with caplog.at_level("WARNING", logger="hf_distill.tasks.corpus"):
        tokenize_corpus(raw, tokenizer, max_seq_length=64, line_by_line=True)
    assert "were cut" not in caplog.text


def test_the_held_out_masks_leave_the_callers_cuda_generators_alone(tmp_path, monkeypatch):
    # torch.manual_seed also reseeds every CUDA generator: a caller's GPU random state changed under it
    import torch

    tokenizer = tiny.tokenizer(tmp_path / "tok")
    raw = datasets.DatasetDict({"validation": datasets.Dataset.from_dict({"text": ["the quick fox"] * 8})})
    blocks = tokenize_corpus(raw, tokenizer, max_seq_length=16, line_by_line=True)["validation"]
    reseeded = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: reseeded.append(seed))
    before = torch.random.get_rng_state()
    first = fixed_masks(blocks, masking_collator(tokenizer), seed=4)["labels"]
    assert reseeded == [] and torch.equal(torch.random.get_rng_state(), before)
    assert fixed_masks(blocks, masking_collator(tokenizer), seed=4)["labels"] == first


def test_a_seeded_masking_collator_works_in_a_spawned_process(tmp_path, monkeypatch):
    # transformers refuses a seeded collator in a process not named MainProcess outside a DataLoader worker:
    # notebook_launcher's and torch.multiprocessing.spawn's processes ("SpawnProcess-N") failed at their first batch
    import multiprocessing

    from hf_distill.tasks.corpus import MaskingCollator

    tokenizer = tiny.tokenizer(tmp_path / "tok")
    rows = [{"input_ids": tokenizer("the quick fox the quick fox")["input_ids"]} for _ in range(4)]
    in_main = MaskingCollator(tokenizer, mlm_probability=0.5, seed=11)(rows)
    monkeypatch.setattr(multiprocessing.current_process(), "name", "SpawnProcess-1")
    with pytest.raises(ValueError, match="Worker process information is not available for seeding"):
        masking_collator(tokenizer, seed=11)(rows)  # transformers' own
    spawned = MaskingCollator(tokenizer, mlm_probability=0.5, seed=11)(rows)
    assert spawned["labels"].tolist() == in_main["labels"].tolist()  # the same seed, the same masks
    other = MaskingCollator(tokenizer, mlm_probability=0.5, seed=12)(rows)
    assert other["labels"].tolist() != in_main["labels"].tolist()


def test_a_corpus_file_without_the_text_column_names_the_option_the_script_has(tmp_path):
    # it said "Pass the right text_columns / label_column": distill_mlm.py has --text_column, and no label column
    (tmp_path / "own.csv").write_text("sentence,stars\na line,5\n")
    with pytest.raises(ValueError, match=r"own\.csv: missing column\(s\) \['text'\].*Pass the file's text column "
                                         r"\(--text_column\), or rename it in the file"):  # fmt: skip
        load_corpus(corpus_arguments(train_file=str(tmp_path / "own.csv"), validation_split_size=1))


def test_each_dataloader_worker_masks_with_the_seed_plus_its_id(tmp_path):
    # seeded alike, the workers of one DataLoader masked their rows alike: every worker's batch repeated the others'
    import torch

    from hf_distill.tasks.corpus import MaskingCollator

    tokenizer = tiny.tokenizer(tmp_path / "tok")
    rows = [{"input_ids": tokenizer("the quick fox " * 8)["input_ids"]}] * 2  # one row for each worker
    collator = MaskingCollator(tokenizer, mlm_probability=0.5, seed=7)
    loader = torch.utils.data.DataLoader(rows, batch_size=1, num_workers=2, collate_fn=collator)
    worker_0, worker_1 = (batch["labels"] for batch in loader)  # a batch each, in worker order
    assert not torch.equal(worker_0, worker_1)
    assert torch.equal(worker_0, MaskingCollator(tokenizer, mlm_probability=0.5, seed=7)(rows[:1])["labels"])
    assert torch.equal(worker_1, MaskingCollator(tokenizer, mlm_probability=0.5, seed=8)(rows[:1])["labels"])
