"""hf_distill.cli.mlm_models (and the GLUE script's models.py, which shares its dtype rule): which teachers are taken,
and the student built from them, on tiny random BERTs saved to tmp (no training)."""

from __future__ import annotations

import json
import shutil

import pytest
import tiny
import torch
from transformers import BertForPreTraining, BertModel

from hf_distill.cli.arguments import parse_arguments
from hf_distill.cli.mlm_arguments import MlmDataArguments
from hf_distill.cli.mlm_models import load_mlm_models, ready_mlm_models
from hf_distill.cli.models import load_models, ready_models


def arguments(tmp_path, teacher, *extra):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the quick fox\n" * 8)
    argv = [
        "--teacher_model_name_or_path", str(teacher), "--train_file", str(corpus), "--validation_split_size", "2",
        "--output_dir", str(tmp_path / "out"), "--use_cpu", "true", "--report_to", "none", *extra,
    ]  # fmt: skip
    model_args, _, training_args, _ = parse_arguments(argv, data_class=MlmDataArguments)
    return model_args, training_args


def save(model, folder):
    model.save_pretrained(folder)
    tiny.tokenizer(folder / "tok").save_pretrained(folder)
    shutil.rmtree(folder / "tok")
    return folder


def built_student(tmp_path, teacher, *flags):
    model_args, training_args = arguments(tmp_path, teacher, "--student_num_layers", "1", *flags)
    models = load_mlm_models(model_args, training_args, max_seq_length=32)
    return ready_mlm_models(models, None, None, model_args, training_args)


def assert_same_weights(first, second):
    first, second = first.state_dict(), second.state_dict()
    assert first.keys() == second.keys()
    for name, tensor in first.items():
        assert tensor.dtype == second[name].dtype == torch.float32, name
        assert torch.equal(tensor, second[name]), name


def test_a_bf16_run_builds_the_student_from_the_float32_teacher(tmp_path):
    # Built from a teacher loaded in bf16, the student started from bf16-rounded weights (up to ~2e-4 off here).
    teacher = save(tiny.masked_lm(layers=2, seed=0, initializer_range=0.5), tmp_path / "teacher")
    fp32 = built_student(tmp_path, teacher)
    bf16 = built_student(tmp_path, teacher, "--bf16", "true")
    assert_same_weights(bf16.student, fp32.student)
    assert next(bf16.teacher.parameters()).dtype == torch.bfloat16  # still stored in the dtype it runs in


def test_a_bf16_glue_run_builds_the_student_from_the_float32_teacher(tmp_path):
    teacher = save(tiny.classifier(layers=2, num_labels=2, seed=0, initializer_range=0.5), tmp_path / "teacher")
    students = []
    for flags in ([], ["--bf16", "true"]):
        model_args, training_args = arguments(tmp_path, teacher, "--student_num_layers", "1", *flags)
        models = load_models(model_args, training_args, 2, None, max_seq_length=32)
        students.append(ready_models(models, None, None, model_args, training_args))
    assert_same_weights(students[1].student, students[0].student)
    assert next(students[1].teacher.parameters()).dtype == torch.bfloat16


def test_a_pretraining_checkpoint_is_taken_with_its_masked_lm_head(tmp_path):
    # BertForPreTraining holds the whole masked-LM head (cls.predictions), which BertForMaskedLM loads as it is.
    torch.manual_seed(0)
    pretraining = BertForPreTraining(tiny.bert_config(layers=2))
    teacher = save(pretraining, tmp_path / "teacher")
    models = built_student(tmp_path, teacher)
    head = models.teacher.cls.predictions.transform.dense.weight
    assert torch.equal(head, pretraining.cls.predictions.transform.dense.weight)


def test_a_checkpoint_without_the_head_weights_is_refused_whatever_its_config_names(tmp_path):
    torch.manual_seed(0)
    folder = save(BertModel(tiny.bert_config(layers=2)), tmp_path / "teacher")
    config = folder / "config.json"
    config.write_text(config.read_text().replace('"BertModel"', '"BertForMaskedLM"'))  # names a head it lacks
    model_args, training_args = arguments(tmp_path, folder, "--student_num_layers", "1")
    with pytest.raises(ValueError, match=r"has no masked-LM head \(6 of its weights are not in the checkpoint"):
        load_mlm_models(model_args, training_args, max_seq_length=32)


@pytest.mark.parametrize("script", ["glue", "mlm"])
@pytest.mark.parametrize(
    ("teacher", "flags", "match"),
    [
        ("eps", ("--student_architecture", "distilbert"), "layer_norm_eps is 1e-05"),
        ("roberta", (), "BERT"),
    ],
)
def test_a_teacher_no_student_can_be_built_from_is_refused_when_loaded(tmp_path, script, teacher, flags, match):
    # Both were refused only by build_student, after --finetune_teacher had trained and saved the teacher.
    from transformers import RobertaConfig, RobertaForMaskedLM, RobertaForSequenceClassification

    torch.manual_seed(0)
    if teacher == "eps":
        model = tiny.masked_lm(layers=2, seed=0, layer_norm_eps=1e-5)
        if script == "glue":
            model = tiny.classifier(layers=2, seed=0, num_labels=2, layer_norm_eps=1e-5)
    else:
        sizes = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, num_labels=2)
        config = RobertaConfig(vocab_size=tiny.bert_config().vocab_size, max_position_embeddings=64, **sizes)
        model = (RobertaForMaskedLM if script == "mlm" else RobertaForSequenceClassification)(config)
    folder = save(model, tmp_path / "teacher")
    model_args, training_args = arguments(tmp_path, folder, "--student_num_layers", "1", *flags)
    with pytest.raises(ValueError, match=match):
        if script == "mlm":
            load_mlm_models(model_args, training_args, max_seq_length=32)
        else:
            load_models(model_args, training_args, 2, None, max_seq_length=32)


def test_each_rank_masks_with_its_own_seed_and_the_global_rng_is_left_to_trainer(tmp_path):
    # Trainer seeds every rank alike and the collator masked from the global RNG: every rank masked the same
    # positions. Reseeding the global RNG per rank instead split the ranks' samplers (rows seen twice, others never).
    from types import SimpleNamespace

    from transformers import DataCollatorForLanguageModeling

    from hf_distill.cli.mlm_models import rank_mask_seed

    def args(world_size, process_index):
        return SimpleNamespace(seed=42, world_size=world_size, process_index=process_index)

    assert rank_mask_seed(args(1, 0)) is None  # one process: the global RNG, as before
    seeds = [rank_mask_seed(args(4, rank)) for rank in range(4)]
    # the collator seeds its DataLoader workers seed + worker id: no rank's worker takes another rank's seed
    assert len({seed + worker for seed in seeds for worker in range(64)}) == 4 * 64
    rows = [{"input_ids": list(range(5, 45))} for _ in range(8)]
    masks = []
    for seed in seeds[:2]:
        torch.manual_seed(42)  # what Trainer did on every rank
        collator = DataCollatorForLanguageModeling(tiny.tokenizer(tmp_path / "tok"), mlm_probability=0.3, seed=seed)
        masks.append(collator(rows)["labels"].ne(-100))
        assert torch.equal(torch.random.get_rng_state(), torch.manual_seed(42).get_state())  # sampler's RNG untouched
    assert not torch.equal(masks[0], masks[1])


def test_a_block_is_padded_to_bf16s_multiple_only_where_the_position_table_holds_it(tmp_path):
    from types import SimpleNamespace

    from hf_distill.cli.mlm_models import fitting_multiple

    def models(positions, model_type="bert", pad=0):
        config = SimpleNamespace(max_position_embeddings=positions, model_type=model_type, pad_token_id=pad)
        return SimpleNamespace(teacher=SimpleNamespace(config=config), student=None)

    assert fitting_multiple(8, 30, models(64)) == 8
    assert fitting_multiple(8, 30, models(30)) is None  # 32 > 30
    assert fitting_multiple(8, 32, models(34, "roberta", pad=1)) == 8  # 32 of roberta's 34 - 2
    assert fitting_multiple(8, 30, models(33, "roberta", pad=1)) is None  # 31 usable
    assert fitting_multiple(None, 30, models(30)) is None


@pytest.mark.parametrize("bf16", [False, True])
def test_half_precision_checkpoints_load_as_a_float32_student_and_a_teacher_in_the_runs_dtype(tmp_path, bf16):
    # transformers 5 loads a checkpoint in the dtype it was stored in: without the scripts' dtype= an fp16 student
    # trained in fp16 (no float32 master weights) and an fp16 teacher ran in fp16 under an fp32 or bf16 run
    flags = ["--bf16", "true"] if bf16 else []
    teacher_dtype = torch.bfloat16 if bf16 else torch.float32
    mlm_teacher = save(tiny.masked_lm(layers=2, seed=0).half(), tmp_path / "mlm_teacher")
    mlm_student = save(tiny.masked_lm(layers=1, seed=1).half(), tmp_path / "mlm_student")
    model_args, training_args = arguments(tmp_path, mlm_teacher, "--student_model_name_or_path", str(mlm_student),
                                          *flags)  # fmt: skip
    models = ready_mlm_models(load_mlm_models(model_args, training_args, max_seq_length=32), None, None, model_args,
                              training_args)  # fmt: skip
    glue_teacher = save(tiny.classifier(layers=2, num_labels=2, seed=0).half(), tmp_path / "glue_teacher")
    glue_student = save(tiny.classifier(layers=1, num_labels=2, seed=1).half(), tmp_path / "glue_student")
    model_args, training_args = arguments(tmp_path, glue_teacher, "--student_model_name_or_path", str(glue_student),
                                          *flags)  # fmt: skip
    glue = load_models(model_args, training_args, 2, ["a", "b"], max_seq_length=32)
    glue = ready_models(glue, None, None, model_args, training_args)
    for loaded in (models, glue):
        assert {p.dtype for p in loaded.student.parameters()} == {torch.float32}
        assert {p.dtype for p in loaded.teacher.parameters()} == {teacher_dtype}


def test_a_teachers_remote_code_is_never_run_without_trust_remote_code(tmp_path):
    # config.json's auto_map names a Python file in the folder: loaded with trust_remote_code=True, transformers
    # imports it (here it would leave a marker file). Without the flag the folder's own model_type (bert) is loaded.
    teacher = save(tiny.classifier(layers=2, num_labels=2), tmp_path / "teacher")
    marker = tmp_path / "remote_code_ran"
    config = json.loads((teacher / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "configuration_evil.EvilConfig"}
    (teacher / "config.json").write_text(json.dumps(config))
    (teacher / "configuration_evil.py").write_text(
        f"from transformers import BertConfig\nopen({str(marker)!r}, 'w').write('ran')\n"
        "class EvilConfig(BertConfig):\n    model_type = 'bert'\n"
    )
    model_args, training_args = arguments(tmp_path, teacher, "--student_num_layers", "1")
    assert model_args.trust_remote_code is False
    try:
        models = load_models(model_args, training_args, 2, None, max_seq_length=32)
    finally:  # checked even where the load fails (loaded as remote code, EvilConfig maps to no classifier)
        assert not marker.exists(), "the teacher folder's Python file was executed"
    assert type(models.teacher.config).__name__ == "BertConfig"  # auto_map ignored: loaded as the BERT it is


def test_a_pinned_model_revision_reaches_every_from_pretrained_without_remote_code(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from hf_distill.cli import models

    teacher = save(tiny.classifier(layers=2, num_labels=2, seed=0), tmp_path / "teacher")
    student = save(tiny.classifier(layers=1, num_labels=2, seed=1), tmp_path / "student")
    calls = []

    def recording(role, auto_class):
        def from_pretrained(name_or_path, *args, **kwargs):
            calls.append((role, name_or_path, kwargs.get("revision", "<absent>"), kwargs.get("trust_remote_code")))
            return auto_class.from_pretrained(name_or_path, *args, **kwargs)

        return SimpleNamespace(from_pretrained=from_pretrained)

    # the names models.py calls (transformers' own inner from_pretrained calls are not recorded)
    for name, role in (("AutoConfig", "config"), ("AutoTokenizer", "tokenizer"),
                       ("AutoModelForSequenceClassification", "model")):  # fmt: skip
        monkeypatch.setattr(models, name, recording(role, getattr(models, name)))
    model_args, training_args = arguments(
        tmp_path, teacher, "--student_model_name_or_path", str(student), "--model_revision", "v1.0"
    )
    load_models(model_args, training_args, 2, ["a", "b"], max_seq_length=32)
    assert sorted((role, path) for role, path, _, _ in calls) == [
        (role, str(folder)) for role in ("config", "model", "tokenizer") for folder in (student, teacher)
    ]
    for role, path, revision, trust_remote_code in calls:
        assert (revision, trust_remote_code) == ("v1.0", False), (role, path)
