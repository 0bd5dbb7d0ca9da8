"""hf_distill.cli.transfer: the transfer-set step loads nothing it will not use."""

from __future__ import annotations

from types import SimpleNamespace

from hf_distill.cli.transfer import check_mlm_augmenter


def test_augment_mlm_with_no_copies_loads_no_masked_lm(tmp_path):
    # the masked LM was loaded (and moved to the run's device) to fill in no words
    data_args = SimpleNamespace(augment="mlm", augment_copies=0, augment_mlm_model=str(tmp_path / "never_read"))
    model_args = SimpleNamespace(trust_remote_code=False, cache_dir=None, model_revision="main")
    assert check_mlm_augmenter(data_args, model_args, teacher_tokenizer=None) == (None, None)


def test_transfer_rows_that_repeat_evaluation_rows_are_counted_in_a_warning(caplog):
    # an unlabelled corpus holding the dev sentences (the task's own dev file, a scrape) trained the student on the
    # teacher's soft targets for exactly the rows it is scored on, and nothing said so
    from datasets import Dataset, DatasetDict

    from hf_distill.cli.transfer import warn_of_evaluation_rows

    pairs = ("sentence1", "sentence2")
    # ("e", "v") is a row of both splits: counted in each split, once in the rows that repeat
    raw = DatasetDict(
        validation=Dataset.from_dict({"sentence1": ["a", "b", "c", "e"], "sentence2": ["x", "y", "z", "v"]}),
        hp_validation=Dataset.from_dict({"sentence1": ["d", "e"], "sentence2": ["w", "v"]}),
    )
    transfer = Dataset.from_dict({"sentence1": ["a", "b", "d", "c", "e"], "sentence2": ["x", "other", "w", "z", "v"]})
    with caplog.at_level("WARNING"):
        warn_of_evaluation_rows(transfer, raw, ["validation"], pairs)
    assert "4 of the 5 transfer rows repeat the text of a row it is evaluated or searched on" in caplog.text
    assert "validation: 3, hp_validation: 2" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        warn_of_evaluation_rows(transfer.select([1]), raw, ["validation"], pairs)
    assert caplog.text == ""  # a pair repeats only with both sides alike


def test_augment_settings_without_an_augmentation_are_said_to_make_no_copies(caplog):
    # --augment_copies 8 alone trained on the labelled rows with no copies, and nothing said so
    from datasets import Dataset

    from hf_distill.cli.data_arguments import DataArguments
    from hf_distill.cli.transfer import build_transfer_set

    rows = Dataset.from_dict({"sentence": ["a b", "c d", "e f"], "label": [0, 1, 0]})
    for extra, said in [
        ({"augment_copies": 8}, "--augment_copies 8 sets how augmented copies are made, but --augment is 'none'"),
        ({"augment_copies": 8, "augment_probability": 0.5}, "--augment_copies 8 and --augment_probability 0.5 set "),
        ({}, None),
        ({"augment": "mask", "augment_copies": 1}, None),
        ({"augment_copies": 8, "student_training": "labels_only"}, "--augment_copies 8 sets how augmented copies"),
        ({"augment_keep_duplicates": True}, "--augment_keep_duplicates True sets how augmented copies are made, but "),
    ]:
        data_args = DataArguments(
            train_file="/nowhere/train.csv", text_column=["sentence"], validation_split_size=1, **extra
        )
        caplog.clear()
        with caplog.at_level("WARNING", logger="hf_distill.cli.transfer"):
            build_transfer_set(rows, data_args, ["sentence"], regression=False, seed=0, mask_token="[MASK]")
        if said is None:
            assert "no copies are made" not in caplog.text
        else:
            assert said in caplog.text and "Pass --augment mask_ngram" in caplog.text


def test_the_masked_lm_that_fills_in_words_pads_on_the_right(tmp_path):
    # its own tokenizer padded on the left: a BERT-like masked LM read each short row at shifted positions, and other
    # words were filled in (top-5 ids changed)
    import json

    import tiny
    from transformers import AutoTokenizer

    from hf_distill.cli.data_arguments import DataArguments

    folder = tmp_path / "mlm"
    tiny.masked_lm(layers=1).save_pretrained(folder)
    tiny.tokenizer(tmp_path / "tok").save_pretrained(folder)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps({**config, "padding_side": "left"}))
    data_args = DataArguments(task_name="sst2", data_dir="/nowhere/glue", augment="mlm", augment_copies=1,
                              augment_mlm_model=str(folder))  # fmt: skip
    model_args = SimpleNamespace(trust_remote_code=False, cache_dir=None, model_revision="main")
    teacher_tokenizer = AutoTokenizer.from_pretrained(folder)
    _, tokenizer = check_mlm_augmenter(data_args, model_args, teacher_tokenizer)
    assert tokenizer.padding_side == "right"


def _transfer(seed, **options):
    from datasets import Dataset

    from hf_distill.cli.data_arguments import DataArguments
    from hf_distill.cli.transfer import build_transfer_set

    rows = Dataset.from_dict({"sentence": [f"w{i} x{i} y{i} z{i}" for i in range(6)], "label": [0, 1] * 3})
    args = DataArguments(task_name="sst2", student_training="distill", **options)
    return build_transfer_set(rows, args, ["sentence"], regression=False, seed=seed, mask_token="[MASK]")


def test_the_augmentation_follows_the_runs_seed():
    # build_transfer_set's own seed reaching the augmentation was tested only by calling augment_dataset itself
    options = dict(augment="mask", augment_copies=3, augment_probability=0.5)
    first, again, other = (_transfer(seed, **options)[1].rows["sentence"] for seed in (1, 1, 2))
    assert first == again and first != other


def test_the_augmented_count_is_the_copies_kept_after_duplicates_are_dropped():
    # a 1..5-gram of a 4-word row is often the row itself or another copy: dropped, and not counted
    transfer = _transfer(1, augment="ngram", augment_copies=3, augment_probability=0.3)[1]
    assert transfer.augmented == len(transfer.rows) < 6 * 3


def test_unlabeled_train_rows_are_the_rows_after_the_labelled_ones():
    # only their number was checked: rows 0..N (the labelled rows again) passed
    labelled, transfer = _transfer(0, max_train_samples=3, unlabeled_train_rows=3)
    assert labelled["sentence"] == [f"w{i} x{i} y{i} z{i}" for i in range(3)]
    assert transfer.rows["sentence"] == [f"w{i} x{i} y{i} z{i}" for i in range(3, 6)]


def test_unlabeled_file_rows_are_its_first_max_unlabeled_samples_counted_with_the_train_rows(tmp_path):
    # --max_unlabeled_samples was not applied (all 10 file rows transferred), and the unlabelled count reported in
    # all_results counted the file's rows alone when --unlabeled_train_rows added more
    path = tmp_path / "unlabelled.csv"
    path.write_text("sentence\n" + "".join(f"file row {i}\n" for i in range(10)))
    options = dict(max_train_samples=4, unlabeled_train_rows=2, unlabeled_file=str(path), max_unlabeled_samples=3)
    labelled, transfer = _transfer(0, **options)
    assert len(labelled) == 4
    assert transfer.rows["sentence"] == ["w4 x4 y4 z4", "w5 x5 y5 z5", "file row 0", "file row 1", "file row 2"]
    assert (transfer.from_train, transfer.from_file) == (2, 3)
    assert transfer.unlabeled == 5 == len(transfer.rows)
