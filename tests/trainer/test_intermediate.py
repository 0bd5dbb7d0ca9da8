"""Intermediate-layer terms in DistillationTrainer: hidden states over layer maps (with a learned projection for
narrower students), last-layer attention and value relations; against references, under accumulation, and refused
where they cannot work."""

from __future__ import annotations

import copy
import json
import types

import pytest
import tiny
import torch
from references import (
    reference_attention_kl,
    reference_attention_kl_from_scores,
    reference_hidden_mse,
    reference_value_relation_kl,
)
from safetensors.torch import load_file
from trainers import EXACT_UPDATES, make_args, make_trainer, state
from transformers import AutoModelForSequenceClassification

from hf_distill import DistillationTrainer, DistillationTrainingArguments, build_student
from hf_distill.trainer.intermediate import PROJECTION_NAME, LastLayerTap, layer_pairs


def models(student_hidden: int = 32):
    teacher = tiny.classifier(layers=4, seed=0, initializer_range=0.5)
    student = tiny.classifier(layers=2, seed=1, initializer_range=0.5, hidden_size=student_hidden)
    return teacher, student


def batch_of(data, n=8):
    return tiny.collate([data[i] for i in range(n)])


def fake_hub(monkeypatch, tmp_path) -> list[tuple[str, str | None, dict]]:
    """Replaces transformers.trainer's Hub client; returns its uploads as (folder, path in repo, the root's weights
    at that moment) and finishes each at once."""
    from concurrent.futures import Future

    import transformers.trainer

    uploads = []

    class Api:
        def create_repo(self, name, **kwargs):
            return types.SimpleNamespace(repo_id=name)

        def upload_folder(self, *, folder_path, path_in_repo=None, **kwargs):
            root = tmp_path / "out" / "model.safetensors"
            uploads.append((str(folder_path), path_in_repo, load_file(str(root)) if root.is_file() else {}))
            done = Future()
            done.set_result(None)
            return done

    monkeypatch.setattr(transformers.trainer, "hf_api", Api)
    return uploads


def term_difference(tmp_path, student, teacher, data, **term):
    """compute_loss with the term on minus with it off, on one batch in training mode."""
    base = dict(temperature=2.0, alpha_kd=0.5, alpha_task=0.5)
    with_term = make_trainer(tmp_path / "on", student, teacher, data, **base, **term)
    without = make_trainer(tmp_path / "off", student, teacher, data, **base)
    batch = batch_of(data)
    student.train()
    return with_term.compute_loss(student, batch).item() - without.compute_loss(student, batch).item(), batch


def test_layer_maps_uniform_init_and_explicit():
    teacher, student = models()
    assert layer_pairs("uniform", student, teacher) == [(0, 0), (1, 2), (2, 4)]
    built = build_student(teacher, layers=[0, 3])
    assert layer_pairs("init", built, teacher) == [(0, 0), (1, 1), (2, 4)]
    # an explicit map pairs the embedding outputs too, as the others and the docs say (it left them out)
    assert layer_pairs("0:1,1:3", student, teacher) == [(0, 0), (1, 2), (2, 4)]
    assert layer_pairs("1:3", student, teacher) == [(0, 0), (2, 4)]
    with pytest.raises(ValueError, match=r"pair 2:1 is out of range: the student has layers 0\.\.1"):
        layer_pairs("2:1", student, teacher)
    for pair in ("-1:1", "0:-1"):  # never Python's index from the end
        with pytest.raises(ValueError, match=rf"pair {pair} is out of range: the student has layers 0\.\.1 and the "
                                             r"teacher 0\.\.3"):  # fmt: skip
            layer_pairs(pair, student, teacher)
    with pytest.raises(ValueError, match="records none"):
        layer_pairs("init", student, teacher)
    # a student built from a deeper teacher records layers this teacher lacks: refused, never an index past its end
    deeper = build_student(tiny.classifier(layers=6, seed=0), layers=[0, 5])
    with pytest.raises(ValueError, match=r"built from a 6-layer teacher \(its layers \[0, 5\]\), but this teacher has "
                                         r"4 layers"):  # fmt: skip
        layer_pairs("init", deeper, teacher)
    distilled = build_student(tiny.classifier(layers=6, seed=0), layers=[0, 2], architecture="distilbert")
    with pytest.raises(ValueError, match=r"built from a 6-layer teacher \(its layers \[0, 2\]\), but this teacher has "
                                         r"4 layers"):  # fmt: skip
        layer_pairs("init", distilled, teacher)  # a DistilBERT student records its teacher's depth too
    del deeper.config.hf_distill_teacher_num_layers  # a student built before the depth was recorded
    with pytest.raises(ValueError, match=r"records teacher layers \[0, 5\], but this teacher has layers 0\.\.3"):
        layer_pairs("init", deeper, teacher)
    # its last layer one past this teacher's last (4 of 0..3): refused too, not an index error at the first step
    just_deeper = build_student(tiny.classifier(layers=5, seed=0), layers=[0, 4])
    del just_deeper.config.hf_distill_teacher_num_layers
    with pytest.raises(ValueError, match=r"records teacher layers \[0, 4\], but this teacher has layers 0\.\.3"):
        layer_pairs("init", just_deeper, teacher)
    # built from a 6-layer teacher with layers that a deeper one also has: they were paired with its other layers
    shallow = build_student(tiny.classifier(layers=3, seed=0), layers=[0, 2])
    with pytest.raises(ValueError, match=r"built from a 3-layer teacher .* but this teacher has 4 layers"):
        layer_pairs("init", shallow, teacher)
    with pytest.raises(ValueError, match="multiple of the student's 3"):
        layer_pairs("uniform", tiny.classifier(layers=3), teacher)
    with pytest.raises(ValueError, match="hidden_layer_map must be"):
        DistillationTrainingArguments(output_dir="x", alpha_hidden=1.0, hidden_layer_map="first")


def test_hidden_term_is_the_mean_over_mapped_pairs_of_the_reference_mse(tmp_path):
    teacher, student = models()
    data = tiny.class_rows(8, seed=4)
    difference, batch = term_difference(tmp_path, student, teacher, data, alpha_hidden=0.7)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        s = student(**inputs, output_hidden_states=True).hidden_states
        t = teacher(**inputs, output_hidden_states=True).hidden_states
    mask = batch["attention_mask"].bool()
    pairs = [(0, 0), (1, 2), (2, 4)]
    expected = sum(reference_hidden_mse(s[i].double(), t[j].double(), mask) for i, j in pairs) / len(pairs)
    assert expected > 1e-3
    assert difference == pytest.approx(0.7 * expected, rel=1e-5)


def tapped_and_eager_attention(model):
    """The last layer's attention as the tap recomputes it (the model run with SDPA, which returns no weights) and as
    the model's eager attention gives it, `(B, H, L, L)` each, and the counted keys."""
    eager = copy.deepcopy(model)
    eager.config._attn_implementation = "eager"
    tap = LastLayerTap(model)
    batch = batch_of(tiny.class_rows(8, seed=5))
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        model(**inputs)
        reference = eager(**inputs, output_attentions=True).attentions[-1]
    keys = batch["attention_mask"].bool()[:, None, None, :].expand_as(reference)
    return tap.attention_probabilities(batch["attention_mask"]), reference, keys


def test_recomputed_attention_equals_the_models_eager_attention():
    teacher, _ = models()
    recomputed, reference, keys = tapped_and_eager_attention(teacher)
    torch.testing.assert_close(recomputed[keys], reference[keys], rtol=1e-4, atol=1e-4)  # float32 op order
    assert recomputed[~keys].abs().max() == 0  # padded keys carry no mass


@pytest.mark.parametrize("cross_attention", [False, True])
def test_a_decoders_recomputed_attention_is_causal_and_taken_from_its_self_attention(cross_attention):
    # the tap put mass on future keys that a BertLMHeadModel never attends to (the term trained towards attention
    # neither model has); with add_cross_attention it hooked the cross-attention, which never runs without an
    # encoder, and the first step failed with KeyError: 'query'
    from transformers import BertLMHeadModel

    torch.manual_seed(0)
    config = tiny.bert_config(layers=2, is_decoder=True, add_cross_attention=cross_attention, initializer_range=0.5)
    recomputed, reference, keys = tapped_and_eager_attention(BertLMHeadModel(config).eval())
    assert reference.triu(1).abs().max() == 0  # the model's own: no future key
    torch.testing.assert_close(recomputed[keys], reference[keys], rtol=1e-4, atol=1e-4)
    assert recomputed.triu(1).abs().max() == 0


def test_an_explicit_layer_map_naming_a_student_layer_twice_is_refused():
    # '0:1,0:1' weighed the pair twice and the embeddings a third; '0:1,0:3' halved each teacher layer's weight
    teacher, student = models()
    for value, pairs in (("0:1,0:1", r"\(0:1 and 0:1\)"), ("0:1,1:3,0:3", r"\(0:1 and 0:3\)")):
        with pytest.raises(ValueError, match=rf"hidden_layer_map '{value}' names student layer 0 twice {pairs}: each "
                                             r"student layer matches one teacher layer"):  # fmt: skip
            layer_pairs(value, student, teacher)
    with pytest.raises(ValueError, match=r"names student layer 1 twice"):
        DistillationTrainingArguments(output_dir="x", alpha_hidden=1.0, hidden_layer_map="1:1,1:3")


def tapped_forward(student, teacher, data):
    """Both models' last-layer taps after one forward of a batch (the student in training mode), and its mask."""
    student_tap, teacher_tap = LastLayerTap(student), LastLayerTap(teacher)
    batch = batch_of(data)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    student.train()
    with torch.no_grad():
        student(**inputs)
        teacher(**inputs)
    return student_tap, teacher_tap, batch["attention_mask"].bool()


def test_attention_and_value_relation_terms_match_their_references(tmp_path):
    teacher, student = models()
    data = tiny.class_rows(8, seed=6)
    student_tap, teacher_tap, mask = tapped_forward(student, teacher, data)
    attention = reference_attention_kl(
        student_tap.attention_probabilities(mask).double(), teacher_tap.attention_probabilities(mask).double(), mask
    )
    values = reference_value_relation_kl(student_tap.values().double(), teacher_tap.values().double(), mask, 4)
    assert attention > 1e-4 and values > 1e-4
    difference, _ = term_difference(tmp_path, student, teacher, data, alpha_attention=0.3)
    assert difference == pytest.approx(0.3 * attention, rel=1e-4)
    difference, _ = term_difference(tmp_path, student, teacher, data, alpha_value_relation=0.4)
    assert difference == pytest.approx(0.4 * values, rel=1e-4)
    # the relation heads default to the teacher's attention heads (4), whatever the student's (2)
    two_heads = tiny.classifier(layers=2, seed=1, initializer_range=0.5, num_attention_heads=2)
    student_tap, teacher_tap, mask = tapped_forward(two_heads, teacher, data)
    values = reference_value_relation_kl(student_tap.values().double(), teacher_tap.values().double(), mask, 4)
    difference, _ = term_difference(tmp_path / "two", two_heads, teacher, data, alpha_value_relation=0.4)
    assert difference == pytest.approx(0.4 * values, rel=1e-4)


def _scores(tap, heads):
    """The last layer's pre-softmax attention scores `(B, H, L, L)` in float64, from the tapped projections."""
    query, key = tap.outputs["query"].double(), tap.outputs["key"].double()
    batch, length, width = query.shape
    query = query.view(batch, length, heads, width // heads).transpose(1, 2)
    key = key.view(batch, length, heads, width // heads).transpose(1, 2)
    return query @ key.transpose(-1, -2) / (width // heads) ** 0.5


def test_attention_term_is_finite_and_exact_when_the_students_attention_underflows(tmp_path):
    # a peaked student (a key's float32 probability rounds to 0 where the teacher's is not 0) made the term inf: the
    # KL was taken from log(softmax) instead of log_softmax
    teacher, student = models()
    with torch.no_grad():
        for name, parameter in student.named_parameters():
            if "layer.1.attention.self.query" in name:
                parameter.mul_(300.0)
    data = tiny.class_rows(8, seed=6)
    student_tap, teacher_tap, mask = tapped_forward(student, teacher, data)
    assert (
        student_tap.attention_probabilities(mask)[mask[:, None, None, :].expand(-1, 4, mask.shape[1], -1)] == 0
    ).any()
    expected = reference_attention_kl_from_scores(_scores(student_tap, 4), _scores(teacher_tap, 4), mask)
    assert 0 < expected < float("inf")
    difference, _ = term_difference(tmp_path, student, teacher, data, alpha_attention=0.3)
    assert difference == pytest.approx(0.3 * expected, rel=1e-4)


def test_every_term_is_exact_under_gradient_accumulation_and_logged(tmp_path):
    teacher, student = models()
    data = tiny.class_rows(16, seed=7)
    terms = dict(alpha_cos=0.2, alpha_hidden=0.3, alpha_attention=0.2, alpha_value_relation=0.2)
    finals, logs = {}, {}
    for name, batch, accumulation in (("1x8", 8, 1), ("2x4", 4, 2)):
        copy_ = copy.deepcopy(student)
        args = make_args(tmp_path / name, per_device_train_batch_size=batch, gradient_accumulation_steps=accumulation,
                         **EXACT_UPDATES, **terms)  # fmt: skip
        trainer = DistillationTrainer(
            model=copy_, teacher_model=teacher, args=args, train_dataset=data, data_collator=tiny.collate
        )
        trainer.train()
        finals[name], logs[name] = state(copy_), trainer.state.log_history
    for key, value in finals["1x8"].items():
        torch.testing.assert_close(finals["2x4"][key], value, rtol=1e-4, atol=1e-4, msg=f"{key} differs")
    entry = next(e for e in logs["1x8"] if "loss" in e)
    for name in ("kd", "task", "cos", "hidden", "attention", "value_relation"):
        assert entry[f"loss_{name}"] > 0, name


def test_a_narrower_student_gets_a_projection_that_trains_and_stays_out_of_the_saved_model(tmp_path):
    teacher, student = models(student_hidden=16)
    trainer = make_trainer(tmp_path, student, teacher, tiny.class_rows(16, seed=8), alpha_hidden=1.0,
                           save_strategy="steps", save_steps=2)  # fmt: skip
    projection = getattr(student, PROJECTION_NAME)
    assert tuple(projection.weight.shape) == (32, 16)
    before = projection.weight.detach().clone()
    trainer.train()
    assert not torch.equal(before, getattr(trainer.model, PROJECTION_NAME).weight)  # it is trained
    checkpoint = load_file(str(tmp_path / "out" / "checkpoint-2" / "model.safetensors"))
    assert any(key.startswith(PROJECTION_NAME) for key in checkpoint)  # resume restores it
    trainer.save_model(str(tmp_path / "final"))
    saved = load_file(str(tmp_path / "final" / "model.safetensors"))
    assert not any(key.startswith(PROJECTION_NAME) for key in saved)
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "final")
    assert not hasattr(loaded, PROJECTION_NAME)
    assert hasattr(trainer.model, PROJECTION_NAME)  # still training-ready after the save
    assert json.loads((tmp_path / "final" / "config.json").read_text())["hidden_size"] == 16


def test_equal_widths_get_no_projection(tmp_path):
    teacher, student = models()
    make_trainer(tmp_path, student, teacher, tiny.class_rows(4), alpha_hidden=1.0)
    assert not hasattr(student, PROJECTION_NAME)


def test_the_projections_first_weights_follow_the_seed_not_the_callers_random_stream(tmp_path):
    teacher = tiny.classifier(layers=4, seed=0)

    def projection(seed, draws):
        student = tiny.classifier(layers=2, seed=1, hidden_size=16)
        torch.randn(draws)  # the caller's stream elsewhere (a dataset shuffled, a dropout run)
        make_trainer(tmp_path, student, teacher, tiny.class_rows(4), alpha_hidden=1.0, seed=seed)
        return getattr(student, PROJECTION_NAME).weight.detach().clone()

    torch.testing.assert_close(projection(1, draws=10), projection(1, draws=20), rtol=0, atol=0)
    assert not torch.equal(projection(1, draws=10), projection(2, draws=10))


@pytest.mark.parametrize("weight", ["alpha_hidden", "alpha_attention", "alpha_value_relation"])
def test_intermediate_terms_refuse_the_logit_cache(tmp_path, weight):
    with pytest.raises(ValueError, match=rf"{weight}=1\.0 needs the teacher's internals every step.*cache_teacher"):
        make_args(tmp_path, **{weight: 1.0}, cache_teacher_logits=True)


def test_refuses_mismatched_heads_and_relation_heads(tmp_path):
    teacher, _ = models()
    other_heads = tiny.classifier(layers=2, seed=1, num_attention_heads=2)
    with pytest.raises(ValueError, match="student has 2 heads and the teacher 4"):
        make_trainer(tmp_path, other_heads, teacher, tiny.class_rows(4), alpha_attention=1.0)
    narrow = tiny.classifier(layers=2, seed=1, hidden_size=16, num_attention_heads=4)
    with pytest.raises(ValueError, match=r"value_relation_heads=3 must divide both widths \(student 16, teacher 32\)"):
        make_trainer(tmp_path, narrow, teacher, tiny.class_rows(4), alpha_value_relation=1.0, value_relation_heads=3)
    # any widths work when R divides both
    make_trainer(tmp_path, narrow, teacher, tiny.class_rows(4), alpha_value_relation=1.0, value_relation_heads=4)
    # R dividing the teacher's width alone is refused when the trainer is built too, not at the first step
    twenty = tiny.classifier(layers=1, seed=1, hidden_size=20, num_attention_heads=4, intermediate_size=40)
    with pytest.raises(ValueError, match=r"value_relation_heads=8 must divide both widths \(student 20, teacher 32\)"):
        make_trainer(tmp_path, twenty, teacher, tiny.class_rows(4), alpha_value_relation=1.0, value_relation_heads=8)


def test_value_relation_heads_default_to_the_teachers_where_the_students_would_not_divide_both_widths(tmp_path):
    # the teacher's 4 heads divide 24 and 32; the student's own 3 would not divide the teacher's 32
    teacher = tiny.classifier(layers=2, seed=0)
    student = tiny.classifier(layers=1, seed=1, hidden_size=24, num_attention_heads=3, intermediate_size=40)
    trainer = make_trainer(tmp_path, student, teacher, tiny.class_rows(8), alpha_value_relation=1.0, max_steps=1)
    trainer.train()
    assert trainer._intermediate_context(student)["value_relation_heads"] == 4


def teacher_and_student(model_class, config_class, **extra):
    """A tiny 2-layer teacher and 1-layer student of one family, 3 labels."""
    shape = dict(vocab_size=tiny.VOCAB_SIZE, hidden_size=32, num_attention_heads=4, intermediate_size=48,
                 max_position_embeddings=64, num_labels=3, **extra)  # fmt: skip
    torch.manual_seed(0)
    return model_class(config_class(num_hidden_layers=2, **shape)), model_class(
        config_class(num_hidden_layers=1, **shape)
    )


def test_attention_term_refuses_models_whose_scores_hold_more_than_query_times_key(tmp_path):
    # the tap recomputes softmax(q k^T / sqrt(d)) from the projections: for a rotary RoFormer it was up to 0.998 away
    # from the attention the layer computed, and the term compared attentions neither model had
    from transformers import RoFormerConfig, RoFormerForSequenceClassification

    roformer, student = teacher_and_student(RoFormerForSequenceClassification, RoFormerConfig, embedding_size=32)
    shape = dict(vocab_size=tiny.VOCAB_SIZE, hidden_size=32, embedding_size=32, num_attention_heads=4,
                 intermediate_size=48, max_position_embeddings=64, num_labels=3)  # fmt: skip
    with pytest.raises(ValueError, match=r"the student \(RoFormerForSequenceClassification\) has rotary position "
                                         r"embeddings.* Set alpha_attention=0"):  # fmt: skip
        make_trainer(tmp_path, student, roformer, tiny.class_rows(4), alpha_attention=1.0)
    make_trainer(tmp_path, student, roformer, tiny.class_rows(4), alpha_value_relation=1.0)  # values are not turned
    turned = RoFormerForSequenceClassification(RoFormerConfig(num_hidden_layers=1, rotary_value=True, **shape))
    with pytest.raises(ValueError, match=r"turns its values by rotary embeddings .*rotary_value=True"):
        make_trainer(tmp_path, turned, roformer, tiny.class_rows(4), alpha_value_relation=1.0)
    teacher, _ = models()
    # transformers 5's BERT ignores position_embedding_type (its attention stays plain): refused only where the model
    # built the modules those positions need
    relative = tiny.classifier(layers=1, seed=1, position_embedding_type="relative_key")
    make_trainer(tmp_path, relative, teacher, tiny.class_rows(4), alpha_attention=1.0)
    relative.bert.encoder.layer[0].attention.self.distance_embedding = torch.nn.Embedding(3, 8)
    with pytest.raises(ValueError, match=r"has position_embedding_type='relative_key'"):
        make_trainer(tmp_path, relative, teacher, tiny.class_rows(4), alpha_attention=1.0)


def test_a_model_without_query_key_value_projections_is_refused_the_taps_when_the_trainer_is_built(tmp_path):
    # DeBERTa-v2's attention has none: alpha_value_relation was refused at the first step, after a teacher fine-tune
    from transformers import DebertaV2Config, DebertaV2ForSequenceClassification

    teacher, student = teacher_and_student(DebertaV2ForSequenceClassification, DebertaV2Config)
    with pytest.raises(ValueError, match=r"need a BERT-like model whose attention has query/key/value .*"
                                         r"DebertaV2ForSequenceClassification has none"):  # fmt: skip
        make_trainer(tmp_path, student, teacher, tiny.class_rows(4), alpha_value_relation=1.0)


def test_a_masked_lm_matches_hidden_states_and_attention_at_every_token_not_only_the_masked_ones(tmp_path):
    # DistilBERT's cosine, TinyBERT's hidden MSE and MiniLM's attention transfer match every attended token; the KD
    # counts a masked LM's masked positions only. Over the masked positions alone, a row with one masked token would
    # give an attention KL of exactly 0, whatever the two models attend to.
    teacher = tiny.masked_lm(layers=4, seed=0, initializer_range=0.5)
    student = tiny.masked_lm(layers=2, seed=1, initializer_range=0.5)
    data = tiny.mlm_rows(8, seed=8, probability=0.0)  # one masked position per row: the first
    student_tap, teacher_tap = LastLayerTap(student), LastLayerTap(teacher)
    batch = batch_of(data)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    student.train()
    with torch.no_grad():
        s = student(**inputs, output_hidden_states=True).hidden_states
        t = teacher(**inputs, output_hidden_states=True).hidden_states
    mask = batch["attention_mask"].bool()
    assert int(batch["labels"].ne(-100).sum()) == 8 < int(mask.sum())
    attention = reference_attention_kl(
        student_tap.attention_probabilities(mask).double(), teacher_tap.attention_probabilities(mask).double(), mask
    )
    values = reference_value_relation_kl(student_tap.values().double(), teacher_tap.values().double(), mask, 4)
    hidden = sum(reference_hidden_mse(s[i].double(), t[j].double(), mask) for i, j in [(0, 0), (1, 2), (2, 4)]) / 3
    assert min(attention, values, hidden) > 1e-4
    for term, expected in (("alpha_attention", attention), ("alpha_value_relation", values), ("alpha_hidden", hidden)):
        difference, _ = term_difference(tmp_path / term, student, teacher, data, **{term: 0.5})
        assert difference == pytest.approx(0.5 * expected, rel=1e-4), term


def test_masked_lm_intermediate_terms_are_exact_under_gradient_accumulation(tmp_path):
    # their divisor (the attended tokens) is counted over the whole accumulated batch, never per micro-batch; which
    # count it is, the test above checks against references
    teacher = tiny.masked_lm(layers=4, seed=0, initializer_range=0.5)
    student = tiny.masked_lm(layers=2, seed=1, initializer_range=0.5, attention_probs_dropout_prob=0.0)
    data = tiny.mlm_rows(16, seed=9)
    terms = dict(alpha_cos=0.2, alpha_hidden=0.3, alpha_attention=0.2, alpha_value_relation=0.2)
    finals = {}
    for name, batch, accumulation in (("1x8", 8, 1), ("2x4", 4, 2)):
        copy_ = copy.deepcopy(student)
        args = make_args(tmp_path / name, per_device_train_batch_size=batch, gradient_accumulation_steps=accumulation,
                         **EXACT_UPDATES, **terms)  # fmt: skip
        DistillationTrainer(
            model=copy_, teacher_model=teacher, args=args, train_dataset=data, data_collator=tiny.collate
        ).train()
        finals[name] = state(copy_)
    for key, value in finals["1x8"].items():
        torch.testing.assert_close(finals["2x4"][key], value, rtol=1e-4, atol=1e-4, msg=f"{key} differs")


def test_a_search_trial_that_turns_the_hidden_term_on_gets_its_projection(tmp_path):
    # Trainer builds a trial's student (model_init) before it applies the trial's values to args: the student was
    # checked, and its projection attached, with the previous arguments (here alpha_hidden=0: no projection, and
    # the first step failed asking for one).
    pytest.importorskip("optuna")
    teacher, student = models(student_hidden=16)
    trainer = DistillationTrainer(
        model_init=lambda: copy.deepcopy(student), teacher_model=teacher, args=make_args(tmp_path, max_steps=2),
        train_dataset=tiny.class_rows(8), eval_dataset=tiny.class_rows(8, seed=9), data_collator=tiny.collate,
    )  # fmt: skip
    assert not hasattr(trainer.model, PROJECTION_NAME)
    trained = []

    def objective(metrics):  # called in the trial, after its training and evaluation
        trained.append((hasattr(trainer.model, PROJECTION_NAME), trainer.args.alpha_hidden, trainer.state.global_step))
        return metrics["eval_loss"]

    trainer.hyperparameter_search(
        hp_space=lambda trial: {"alpha_hidden": trial.suggest_categorical("alpha_hidden", [1.0])},
        backend="optuna", n_trials=1, compute_objective=objective,
    )  # fmt: skip
    assert trained == [(True, 1.0, 2)]


@pytest.mark.parametrize("term", [{"alpha_attention": 1.0}, {"alpha_value_relation": 1.0}])
def test_reentrant_activation_checkpointing_is_refused_for_the_last_layer_terms(tmp_path, term):
    # Reentrant checkpointing runs the layers under no_grad: the tapped query/key/value carry no graph, so these
    # terms sent the student no gradient (or backward failed with them alone).
    teacher, student = models()
    trainer = make_trainer(tmp_path, student, teacher, tiny.class_rows(8), alpha_kd=0.5, alpha_task=0.5, **term)
    student.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": True})
    student.train()
    with pytest.raises(ValueError, match=r"ran without gradients .*use_reentrant.*'use_reentrant': False"):
        trainer.compute_loss(student, batch_of(tiny.class_rows(8)))
    student.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    loss = trainer.compute_loss(student, batch_of(tiny.class_rows(8)))
    loss.backward()  # transformers' default: the hooks fire again in the recomputation, with the graph
    assert loss.requires_grad


def test_one_process_over_several_gpus_is_refused_for_the_hooked_terms(tmp_path, monkeypatch):
    # torch.nn.DataParallel's replicas share the forward hooks, which then see a part of the batch each.
    teacher, student = models()
    monkeypatch.setattr(DistillationTrainingArguments, "n_gpu", property(lambda self: 1))  # no DataParallel: built
    make_trainer(tmp_path, copy.deepcopy(student), teacher, tiny.class_rows(8), alpha_attention=1.0)
    monkeypatch.setattr(DistillationTrainingArguments, "n_gpu", property(lambda self: 2))
    with pytest.raises(ValueError, match=r"drives 2 GPUs .*hooks of attention: launch one process per GPU"):
        make_trainer(tmp_path, student, teacher, tiny.class_rows(8), alpha_attention=1.0)
    with pytest.raises(ValueError, match=r"hooks of token heads' counted positions"):
        make_trainer(tmp_path, tiny.masked_lm(layers=1, seed=1), tiny.masked_lm(seed=0), tiny.mlm_rows(8))
    # with the teacher's logits cached, no hook on its head runs in training: built
    make_trainer(tmp_path, tiny.masked_lm(layers=1, seed=1), tiny.masked_lm(seed=0), tiny.mlm_rows(8),
                 cache_teacher_logits=True)  # fmt: skip
    # turned on after the trainer was built: by hand, or by a search trial (the check ran in __init__ alone)
    trainer = make_trainer(tmp_path, copy.deepcopy(student), teacher, tiny.class_rows(8))
    trainer.args.alpha_attention = 1.0
    with pytest.raises(ValueError, match=r"drives 2 GPUs .*hooks of attention"):
        trainer.train()
    pytest.importorskip("optuna")
    trainer = DistillationTrainer(
        model_init=lambda: copy.deepcopy(student), teacher_model=teacher, args=make_args(tmp_path),
        train_dataset=tiny.class_rows(8), eval_dataset=tiny.class_rows(4), data_collator=tiny.collate,
    )  # fmt: skip
    with pytest.raises(ValueError, match=r"drives 2 GPUs .*hooks of attention"):
        trainer.hyperparameter_search(
            hp_space=lambda trial: {"alpha_attention": trial.suggest_float("alpha_attention", 1.0, 1.0)},
            backend="optuna", n_trials=1, direction="minimize", compute_objective=lambda metrics: 0.0,
        )  # fmt: skip


def test_a_projection_the_arguments_ask_for_after_a_first_train_is_trained_by_the_next(tmp_path):
    # alpha_hidden turned on between two train() calls attached the projection, but the first call's optimizer
    # (kept by Trainer) did not hold it: the hidden-state term ran through random, untrained weights
    teacher, student = models(student_hidden=16)
    trainer = make_trainer(tmp_path, student, teacher, tiny.class_rows(8), max_steps=2)
    trainer.train()
    assert not hasattr(student, PROJECTION_NAME)
    trainer.args.alpha_hidden = 1.0
    trainer.train()
    projection = getattr(student, PROJECTION_NAME)
    held = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert all(id(p) in held for p in projection.parameters())
    start = attach_projection_weights(tmp_path, teacher)
    assert not torch.equal(projection.weight, start)  # it trained
    # a student an engine already wrapped (DDP, FSDP, DeepSpeed; stood in for here) would leave it out: refused
    _, student = models(student_hidden=16)
    wrapped = make_trainer(tmp_path / "wrapped", student, teacher, tiny.class_rows(8), max_steps=1)
    wrapped.train()
    wrapped.model_wrapped = torch.nn.ModuleList([student])
    wrapped.args.alpha_hidden = 1.0
    with pytest.raises(ValueError, match=r"ModuleList already wraps the student .* Build a new DistillationTrainer"):
        wrapped.train()


def attach_projection_weights(tmp_path, teacher) -> torch.Tensor:
    """The projection's starting weights (attach_projection seeds it from args.seed)."""
    fresh = tiny.classifier(layers=2, seed=1, initializer_range=0.5, hidden_size=16)
    make_trainer(tmp_path / "fresh", fresh, teacher, tiny.class_rows(8), alpha_hidden=1.0)
    return getattr(fresh, PROJECTION_NAME).weight.detach().clone()


def test_trainers_push_to_hub_uploads_the_student_without_its_projection(tmp_path, monkeypatch):
    # Trainer.push_to_hub saves with _internal_call=True, which (for checkpoints) keeps the projection.
    uploads = fake_hub(monkeypatch, tmp_path)
    teacher, student = models(student_hidden=16)
    trainer = make_trainer(tmp_path, student, teacher, tiny.class_rows(8), alpha_hidden=1.0, hub_model_id="me/s")
    trainer.train()
    trainer.push_to_hub()
    uploaded = [weights for _, _, weights in uploads]
    assert len(uploaded) == 1 and uploaded[0] and not any(key.startswith(PROJECTION_NAME) for key in uploaded[0])
    assert hasattr(trainer.model, PROJECTION_NAME)  # still training-ready


def test_checkpoint_pushes_upload_the_student_without_its_projection(tmp_path, monkeypatch):
    # push_to_hub=True (hub_strategy every_save) copied each checkpoint's weights, projection included, into the repo
    uploads = fake_hub(monkeypatch, tmp_path)
    teacher, student = models(student_hidden=16)
    trainer = make_trainer(tmp_path, student, teacher, tiny.class_rows(8), alpha_hidden=1.0, hub_model_id="me/s",
                           push_to_hub=True, save_strategy="steps", save_steps=1, max_steps=2)  # fmt: skip
    trainer.train()
    uploaded = [weights for folder, _, weights in uploads if folder == str(tmp_path / "out")]
    assert len(uploaded) >= 2 and all(not any(k.startswith(PROJECTION_NAME) for k in state) for state in uploaded)
    assert all(state.keys() == uploaded[0].keys() and len(state) > 10 for state in uploaded)
    checkpoint = load_file(str(tmp_path / "out" / "checkpoint-1" / "model.safetensors"))
    assert any(key.startswith(PROJECTION_NAME) for key in checkpoint)  # the checkpoint keeps it, for resume
    # another rank returns before reading a file rank 0 may still be writing, as Trainer's own does
    (tmp_path / "out" / "checkpoint-1" / "model.safetensors").write_bytes(b"half written")
    monkeypatch.setattr(type(trainer), "is_world_process_zero", lambda self: False)
    trainer._push_from_checkpoint(str(tmp_path / "out" / "checkpoint-1"))


def test_hub_strategy_checkpoint_uploads_the_checkpoint_folder_itself(tmp_path, monkeypatch):
    # the override handed Trainer a temporary folder, deleted before the background upload of "the checkpoint" read it
    uploads = fake_hub(monkeypatch, tmp_path)
    teacher, student = models(student_hidden=16)
    trainer = make_trainer(tmp_path, student, teacher, tiny.class_rows(8), alpha_hidden=1.0, hub_model_id="me/s",
                           push_to_hub=True, hub_strategy="all_checkpoints", save_strategy="steps", save_steps=1,
                           max_steps=1)  # fmt: skip
    trainer.train()
    pushed = [(folder, where) for folder, where, _ in uploads if where is not None]
    assert pushed == [(str(tmp_path / "out" / "checkpoint-1"), "checkpoint-1")]


@pytest.mark.parametrize("term", ["alpha_attention", "alpha_value_relation"])
def test_a_new_trials_student_is_tapped_for_the_last_layer_terms(tmp_path, term):
    # the last layer's taps stayed on the first student model_init built: the next trial's terms were read from the
    # old student's attention, left from its last forward
    teacher, _ = models()
    seeds = iter([1, 2])
    trainer = DistillationTrainer(
        model_init=lambda: tiny.classifier(layers=2, seed=next(seeds), initializer_range=0.5),
        teacher_model=teacher, args=make_args(tmp_path, alpha_kd=0.0, alpha_task=0.0, **{term: 1.0}),
        train_dataset=tiny.class_rows(8), data_collator=tiny.collate,
    )  # fmt: skip
    batch = batch_of(tiny.class_rows(8))
    with torch.no_grad():
        first = trainer.compute_loss(trainer.model, batch).item()
        trainer.model = second = trainer.call_model_init()
        found = trainer.compute_loss(second, batch).item()
        fresh = make_trainer(tmp_path / "fresh", copy.deepcopy(second), teacher, tiny.class_rows(8), alpha_kd=0.0,
                             alpha_task=0.0, **{term: 1.0})  # fmt: skip
        expected = fresh.compute_loss(fresh.model, batch).item()
    assert found == pytest.approx(expected, rel=1e-6) and abs(found - first) > 1e-3


@pytest.mark.parametrize("order", ["student_first", "values_first"])
def test_a_trials_student_is_checked_with_the_trials_values_whichever_order_trainer_takes(tmp_path, order):
    # transformers 5.25 builds the trial's student, then applies the trial's values; earlier releases the reverse,
    # which checked the last trial's student and gave the new one no projection
    import optuna
    from transformers.trainer_utils import HPSearchBackend

    teacher, _ = models()
    trainer = DistillationTrainer(
        model_init=lambda: tiny.classifier(layers=2, seed=1, hidden_size=16),
        teacher_model=teacher,
        args=make_args(tmp_path),
        train_dataset=tiny.class_rows(4),
        data_collator=tiny.collate,
    )
    trainer.hp_search_backend = HPSearchBackend.OPTUNA
    trainer.hp_space = lambda trial: {"alpha_hidden": trial.suggest_float("alpha_hidden", 0.5, 1.0)}
    for value in (0.5, 1.0):  # two trials, the first leaving its student in trainer.model
        trial = optuna.trial.FixedTrial({"alpha_hidden": value})
        if order == "student_first":
            trainer.model = student = trainer.call_model_init(trial)
            trainer._hp_search_setup(trial)
        else:
            trainer._hp_search_setup(trial)
            trainer.model = student = trainer.call_model_init(trial)
        assert trainer.args.alpha_hidden == value and hasattr(student, PROJECTION_NAME)


class _EngineLike(torch.nn.Module):
    """What DeepSpeed's `prepare_teacher` returns: an engine whose `.module` is the teacher and whose own `.config`
    is DeepSpeed's dict, hiding the model's."""

    def __init__(self, teacher):
        super().__init__()
        self.module = teacher
        self.config = {"zero_optimization": {"stage": 3}}

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)


def test_intermediate_terms_read_the_teachers_layers_and_heads_through_an_engine(tmp_path):
    # under DeepSpeed every intermediate term died at its first step: the layer and head counts were read from the
    # engine's `.config` (a dict) instead of the teacher's
    teacher = tiny.classifier(layers=2, seed=0, initializer_range=0.5)
    student = tiny.classifier(layers=1, seed=1, initializer_range=0.5)
    data = tiny.class_rows(8, seed=2)
    trainer = make_trainer(tmp_path, student, teacher, data, alpha_hidden=1.0, alpha_attention=1.0,
                           alpha_value_relation=1.0)  # fmt: skip
    expected = trainer._intermediate_context(student)
    trainer._teacher_module = _EngineLike(trainer._teacher_module)
    trainer._hidden_pairs = None
    trainer._teacher_tap = None
    found = trainer._intermediate_context(student)
    assert found["hidden_pairs"] == expected["hidden_pairs"]
    assert found["value_relation_heads"] == expected["value_relation_heads"] == teacher.config.num_attention_heads
