"""Self-attention losses (MiniLM, MiniLMv2) against float64 references written from their formulas."""

from __future__ import annotations

import pytest
import torch
from references import (
    reference_attention_kl,
    reference_attention_kl_from_scores,
    reference_value_relation_kl,
    reference_value_relations,
)

from hf_distill import losses

MASK = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 1, 0, 0, 0]])  # 10 counted queries


def softmax_attentions(shape, *, generator, key_mask=None, dtype=torch.float64):
    """Real attention probabilities: a softmax over the keys of random logits, every key getting some mass unless
    `key_mask` sets the logits of the keys outside it to -inf (what transformers' additive mask does)."""
    logits = 2 * torch.randn(*shape, generator=generator, dtype=dtype)
    if key_mask is not None:
        logits = logits.masked_fill(~key_mask.bool()[:, None, None, :], float("-inf"))
    return logits.softmax(dim=-1)


# ---- attention KL (MiniLM's self-attention transfer) -----------------------------------------------------------


def test_attention_kl_matches_float64_and_float32_references():
    generator = torch.Generator().manual_seed(11)
    # no key mask at generation: every row puts some mass on the padded keys, which must not count
    student = softmax_attentions((3, 2, 5, 5), generator=generator)
    teacher = softmax_attentions((3, 2, 5, 5), generator=generator)
    expected = reference_attention_kl(student, teacher, MASK)
    got = losses.attention_kl(student_attentions=student, teacher_attentions=teacher, mask=MASK)
    assert got.dtype == torch.float64 and got.item() == pytest.approx(expected, abs=1e-10)
    got32 = losses.attention_kl(student_attentions=student.float(), teacher_attentions=teacher.float(), mask=MASK)
    assert got32.dtype == torch.float32 and got32.item() == pytest.approx(expected, abs=1e-6)
    summed = losses.attention_kl(student_attentions=student, teacher_attentions=teacher, mask=MASK, reduction="sum")
    assert summed.item() == pytest.approx(expected * 10, abs=1e-9)
    unmasked = losses.attention_kl(student_attentions=student, teacher_attentions=teacher)
    assert unmasked.item() == pytest.approx(reference_attention_kl(student, teacher, None), abs=1e-10)
    assert losses.attention_kl(student_attentions=teacher, teacher_attentions=teacher, mask=MASK).item() == (
        pytest.approx(0, abs=1e-12)
    )


def test_attention_kl_ignores_what_either_model_puts_on_padding():
    generator = torch.Generator().manual_seed(12)
    logits = 2 * torch.randn(3, 2, 5, 5, generator=generator, dtype=torch.float64)
    teacher = softmax_attentions((3, 2, 5, 5), generator=generator)
    expected = losses.attention_kl(student_attentions=logits.softmax(-1), teacher_attentions=teacher, mask=MASK)
    # the same logits with transformers' additive mask (exactly 0 on padded keys) give the same renormalised rows
    masked = logits.masked_fill(~MASK.bool()[:, None, None, :], float("-inf")).softmax(-1).requires_grad_(True)
    got = losses.attention_kl(student_attentions=masked, teacher_attentions=teacher, mask=MASK)
    assert got.item() == pytest.approx(expected.item(), abs=1e-12)
    (gradient,) = torch.autograd.grad(got, masked)
    assert torch.isfinite(gradient).all()
    # garbage on the padded keys and at the padded queries, in either model, changes nothing
    padded_keys = ~MASK.bool()[:, None, None, :].expand(3, 2, 5, 5)
    padded_queries = ~MASK.bool()[:, None, :, None].expand(3, 2, 5, 5)
    padding = padded_keys | padded_queries
    garbage = torch.rand(3, 2, 5, 5, generator=generator, dtype=torch.float64) * 50
    noisy_student = torch.where(padding, garbage, logits.softmax(-1))
    noisy_teacher = torch.where(padding, garbage.flip(0), teacher)
    noisy = losses.attention_kl(student_attentions=noisy_student, teacher_attentions=noisy_teacher, mask=MASK)
    assert noisy.item() == pytest.approx(expected.item(), abs=1e-12)
    # two models that agree on the counted keys and differ only on padding: 0
    same_on_counted = losses.attention_kl(student_attentions=masked.detach(), teacher_attentions=logits.softmax(-1))
    assert same_on_counted.item() > 0  # without the mask the padded keys count ...
    assert losses.attention_kl(
        student_attentions=masked.detach(), teacher_attentions=logits.softmax(-1), mask=MASK
    ).item() == pytest.approx(0, abs=1e-12)  # ... with it they do not


def test_attention_kl_with_nothing_counted_is_zero_with_finite_gradients():
    generator = torch.Generator().manual_seed(13)
    student = softmax_attentions((3, 2, 5, 5), generator=generator).requires_grad_(True)
    teacher = softmax_attentions((3, 2, 5, 5), generator=generator).requires_grad_(True)
    for reduction in ("mean", "sum"):
        empty = losses.attention_kl(
            student_attentions=student, teacher_attentions=teacher, mask=torch.zeros(3, 5), reduction=reduction
        )
        assert empty.item() == 0.0
        for gradient in torch.autograd.grad(empty, (student, teacher)):
            assert torch.isfinite(gradient).all() and (gradient == 0).all()
    # one example with no counted position among others: it adds nothing, and the gradients stay finite
    mask = MASK.clone()
    mask[1] = 0
    got = losses.attention_kl(student_attentions=student, teacher_attentions=teacher, mask=mask)
    assert got.item() == pytest.approx(reference_attention_kl(student.detach(), teacher.detach(), mask), abs=1e-10)
    assert all(torch.isfinite(gradient).all() for gradient in torch.autograd.grad(got, (student, teacher)))


def test_a_nan_attention_on_a_counted_key_gives_nan_and_one_on_padding_changes_nothing():
    # A NaN probability failed `p > 0` and was read as a key without mass: the row was renormalised over the others
    # and the loss stayed finite, hiding a teacher that overflowed. At a counted key it is NaN now; padding still
    # changes nothing.
    generator = torch.Generator().manual_seed(15)
    student = softmax_attentions((3, 2, 5, 5), generator=generator)
    teacher = softmax_attentions((3, 2, 5, 5), generator=generator)
    expected = losses.attention_kl(student_attentions=student, teacher_attentions=teacher, mask=MASK)
    for log_space in (False, True):
        inputs = {"student_attentions": student, "teacher_attentions": teacher}
        if log_space:
            inputs = {name: values.log() for name, values in inputs.items()}
        for name in inputs:
            at_counted, at_padding = inputs[name].clone(), inputs[name].clone()
            at_counted[0, 1, 2, 1] = float("nan")  # example 0 counts keys 0..2 and query 2
            at_padding[0, 1, 2, 4] = float("nan")  # key 4 of example 0 is padding
            got = losses.attention_kl(**{**inputs, name: at_counted}, mask=MASK, log_space=log_space)
            assert torch.isnan(got), (name, log_space)
            got = losses.attention_kl(**{**inputs, name: at_padding}, mask=MASK, log_space=log_space)
            assert got.item() == pytest.approx(expected.item(), abs=1e-10), (name, log_space)
    # an entry <= 0 carries no mass, as documented (the NaN rule made a tiny negative one NaN): as an entry of 0
    both = {"student_attentions": student, "teacher_attentions": teacher}
    for name in both:
        negative = both[name].clone()
        negative[0, 1, 2, 1] = -1e-9
        got = losses.attention_kl(**{**both, name: negative}, mask=MASK)
        as_zero = losses.attention_kl(**{**both, name: negative.clamp(min=0)}, mask=MASK)
        assert not torch.isnan(got) and got.item() == as_zero.item(), name  # a student's: inf (teacher has mass)


def test_attention_kl_gradcheck_with_padding():
    generator = torch.Generator().manual_seed(14)
    student = softmax_attentions((2, 2, 3, 3), generator=generator).requires_grad_(True)
    teacher = softmax_attentions((2, 2, 3, 3), generator=generator).requires_grad_(True)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert torch.autograd.gradcheck(
        lambda s, t: losses.attention_kl(student_attentions=s, teacher_attentions=t, mask=mask), (student, teacher)
    )


def test_attention_kl_in_log_space_matches_the_reference_from_scores_and_ignores_padding():
    generator = torch.Generator().manual_seed(16)
    student_scores = 3 * torch.randn(3, 2, 5, 5, generator=generator, dtype=torch.float64)
    teacher_scores = 3 * torch.randn(3, 2, 5, 5, generator=generator, dtype=torch.float64)
    expected = reference_attention_kl_from_scores(student_scores, teacher_scores, MASK)
    student = student_scores.log_softmax(-1).requires_grad_(True)  # over every key: renormalised over the counted
    got = losses.attention_kl(student_attentions=student, teacher_attentions=teacher_scores.log_softmax(-1),
                              mask=MASK, log_space=True)  # fmt: skip
    assert got.item() == pytest.approx(expected, abs=1e-10)
    # transformers' additive mask (-inf on padded keys) gives the same rows
    masked = student_scores.masked_fill(~MASK.bool()[:, None, None, :], float("-inf")).log_softmax(-1)
    same = losses.attention_kl(student_attentions=masked, teacher_attentions=teacher_scores.log_softmax(-1),
                               mask=MASK, log_space=True)  # fmt: skip
    assert same.item() == pytest.approx(expected, abs=1e-10)
    assert torch.isfinite(torch.autograd.grad(got, student)[0]).all()
    nothing = losses.attention_kl(student_attentions=student, teacher_attentions=masked, mask=torch.zeros(3, 5),
                                  log_space=True)  # fmt: skip
    assert nothing.item() == 0.0 and (torch.autograd.grad(nothing, student)[0] == 0).all()
    small = (student_scores[:2, :, :3, :3].log_softmax(-1).detach().requires_grad_(True),
             teacher_scores[:2, :, :3, :3].log_softmax(-1).detach().requires_grad_(True))  # fmt: skip
    assert torch.autograd.gradcheck(
        lambda s, t: losses.attention_kl(student_attentions=s, teacher_attentions=t, mask=torch.tensor(
            [[1, 1, 0], [1, 0, 0]]), log_space=True), small)  # fmt: skip


def test_a_peaked_student_gives_a_finite_kl_in_log_space_where_probabilities_underflow():
    # float32 rounds exp(-110) to 0: the student's probability of key 1 is 0 where the teacher's is exp(-5)
    student_scores = torch.tensor([[[[0.0, -110.0], [0.0, -110.0]]]])
    teacher_scores = torch.tensor([[[[0.0, -5.0], [0.0, -5.0]]]])
    expected = reference_attention_kl_from_scores(student_scores.double(), teacher_scores.double(), None)
    assert expected == pytest.approx(0.6960, abs=1e-4)
    probabilities = losses.attention_kl(student_attentions=student_scores.softmax(-1),
                                        teacher_attentions=teacher_scores.softmax(-1))  # fmt: skip
    assert probabilities.item() == float("inf")  # why the trainer passes log-probabilities
    got = losses.attention_kl(student_attentions=student_scores.log_softmax(-1),
                              teacher_attentions=teacher_scores.log_softmax(-1), log_space=True)  # fmt: skip
    assert got.dtype == torch.float32 and got.item() == pytest.approx(expected, rel=1e-5)


def test_attention_kl_half_precision_gives_float32():
    generator = torch.Generator().manual_seed(15)
    student = softmax_attentions((3, 2, 5, 5), generator=generator, dtype=torch.float32)
    teacher = softmax_attentions((3, 2, 5, 5), generator=generator, dtype=torch.float32)
    full = losses.attention_kl(student_attentions=student, teacher_attentions=teacher, mask=MASK).item()
    for dtype in (torch.float16, torch.bfloat16):
        s, t = student.to(dtype), teacher.to(dtype)
        got = losses.attention_kl(student_attentions=s, teacher_attentions=t, mask=MASK)
        assert got.dtype == torch.float32
        rounded = losses.attention_kl(student_attentions=s.float(), teacher_attentions=t.float(), mask=MASK)
        assert got.item() == pytest.approx(rounded.item(), abs=1e-6)
        assert got.item() == pytest.approx(full, rel=1e-2)


def test_attention_kl_refusals():
    attentions = torch.rand(2, 4, 3, 3).softmax(-1)
    with pytest.raises(ValueError, match=r"same number of heads.*H=4.*H=2.*value_relation_kl"):
        losses.attention_kl(student_attentions=attentions, teacher_attentions=torch.rand(2, 2, 3, 3).softmax(-1))
    with pytest.raises(ValueError, match="same batch and sequence length"):
        losses.attention_kl(student_attentions=attentions, teacher_attentions=torch.rand(2, 4, 5, 5).softmax(-1))
    with pytest.raises(ValueError, match="same batch and sequence length"):
        losses.attention_kl(student_attentions=attentions, teacher_attentions=torch.rand(3, 4, 3, 3).softmax(-1))
    with pytest.raises(ValueError, match=r"student_attentions must have shape \(B, H, L, L\)"):
        losses.attention_kl(student_attentions=torch.rand(2, 3, 3), teacher_attentions=attentions)
    with pytest.raises(ValueError, match=r"teacher_attentions must have shape \(B, H, L, L\).*attentions\[-1\]"):
        losses.attention_kl(student_attentions=attentions, teacher_attentions=torch.rand(2, 4, 3, 5))
    with pytest.raises(ValueError, match=r"got tuple"):
        losses.attention_kl(student_attentions=attentions, teacher_attentions=(attentions, attentions))
    with pytest.raises(ValueError, match=r"mask must have shape \(B, L\) = \(2, 3\)"):
        losses.attention_kl(student_attentions=attentions, teacher_attentions=attentions, mask=torch.ones(2, 4))
    with pytest.raises(ValueError, match="reduction must be 'mean' or 'sum'"):
        losses.attention_kl(student_attentions=attentions, teacher_attentions=attentions, reduction="batchmean")


# ---- value-relation KL (MiniLM's value relation, MiniLMv2's relation heads) ------------------------------------


def test_value_relation_kl_matches_references_with_different_widths():
    generator = torch.Generator().manual_seed(21)
    student = torch.randn(3, 5, 8, generator=generator, dtype=torch.float64)
    teacher = torch.randn(3, 5, 12, generator=generator, dtype=torch.float64)
    expected = reference_value_relation_kl(student, teacher, MASK, 4)
    got = losses.value_relation_kl(student_values=student, teacher_values=teacher, mask=MASK, num_relation_heads=4)
    assert got.dtype == torch.float64 and got.item() == pytest.approx(expected, abs=1e-10)
    got32 = losses.value_relation_kl(
        student_values=student.float(), teacher_values=teacher.float(), mask=MASK, num_relation_heads=4
    )
    assert got32.dtype == torch.float32 and got32.item() == pytest.approx(expected, abs=1e-6)
    summed = losses.value_relation_kl(
        student_values=student, teacher_values=teacher, mask=MASK, num_relation_heads=4, reduction="sum"
    )
    assert summed.item() == pytest.approx(expected * 10, abs=1e-9)
    unmasked = losses.value_relation_kl(student_values=student, teacher_values=teacher, num_relation_heads=2)
    assert unmasked.item() == pytest.approx(reference_value_relation_kl(student, teacher, None, 2), abs=1e-10)
    # it is the attention KL of the two relation matrices, computed by hand
    relations_student = torch.tensor(reference_value_relations(student, MASK, 4), dtype=torch.float64)
    relations_teacher = torch.tensor(reference_value_relations(teacher, MASK, 4), dtype=torch.float64)
    assert relations_student.shape == relations_teacher.shape == (3, 4, 5, 5)
    by_hand = losses.attention_kl(
        student_attentions=relations_student, teacher_attentions=relations_teacher, mask=MASK
    )
    assert got.item() == pytest.approx(by_hand.item(), abs=1e-10)
    same = losses.value_relation_kl(student_values=teacher, teacher_values=teacher, mask=MASK, num_relation_heads=3)
    assert same.item() == pytest.approx(0, abs=1e-12)


def test_value_relation_kl_ignores_padding_and_is_zero_with_nothing_counted():
    generator = torch.Generator().manual_seed(22)
    student = torch.randn(3, 5, 8, generator=generator, dtype=torch.float64)
    teacher = torch.randn(3, 5, 12, generator=generator, dtype=torch.float64)
    expected = losses.value_relation_kl(
        student_values=student, teacher_values=teacher, mask=MASK, num_relation_heads=4
    )
    padded = ~MASK.bool()[:, :, None]
    noisy_student = torch.where(padded, 1e3 * torch.randn(3, 5, 8, generator=generator, dtype=torch.float64), student)
    noisy_teacher = torch.where(padded, -1e3 * torch.ones(3, 5, 12, dtype=torch.float64), teacher)
    noisy = losses.value_relation_kl(
        student_values=noisy_student, teacher_values=noisy_teacher, mask=MASK, num_relation_heads=4
    )
    assert noisy.item() == pytest.approx(expected.item(), abs=1e-12)
    student_leaf, teacher_leaf = student.clone().requires_grad_(True), teacher.clone().requires_grad_(True)
    for reduction in ("mean", "sum"):
        empty = losses.value_relation_kl(
            student_values=student_leaf,
            teacher_values=teacher_leaf,
            mask=torch.zeros(3, 5),
            num_relation_heads=4,
            reduction=reduction,
        )
        assert empty.item() == 0.0
        for gradient in torch.autograd.grad(empty, (student_leaf, teacher_leaf)):
            assert torch.isfinite(gradient).all() and (gradient == 0).all()
    mask = MASK.clone()
    mask[1] = 0
    got = losses.value_relation_kl(
        student_values=student_leaf, teacher_values=teacher_leaf, mask=mask, num_relation_heads=4
    )
    assert got.item() == pytest.approx(reference_value_relation_kl(student, teacher, mask, 4), abs=1e-10)
    assert all(torch.isfinite(gradient).all() for gradient in torch.autograd.grad(got, (student_leaf, teacher_leaf)))


def test_value_relation_kl_gradcheck_with_padding_and_different_widths():
    generator = torch.Generator().manual_seed(23)
    student = torch.randn(2, 3, 4, generator=generator, dtype=torch.float64, requires_grad=True)
    teacher = torch.randn(2, 3, 6, generator=generator, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert torch.autograd.gradcheck(
        lambda s, t: losses.value_relation_kl(student_values=s, teacher_values=t, mask=mask, num_relation_heads=2),
        (student, teacher),
    )


def test_value_relation_kl_half_precision_gives_float32():
    generator = torch.Generator().manual_seed(24)
    student = torch.randn(3, 5, 8, generator=generator)
    teacher = torch.randn(3, 5, 12, generator=generator)
    full = losses.value_relation_kl(
        student_values=student, teacher_values=teacher, mask=MASK, num_relation_heads=4
    ).item()
    for dtype in (torch.float16, torch.bfloat16):
        s, t = student.to(dtype), teacher.to(dtype)
        got = losses.value_relation_kl(student_values=s, teacher_values=t, mask=MASK, num_relation_heads=4)
        assert got.dtype == torch.float32
        rounded = losses.value_relation_kl(
            student_values=s.float(), teacher_values=t.float(), mask=MASK, num_relation_heads=4
        )
        assert got.item() == pytest.approx(rounded.item(), abs=1e-6)
        assert got.item() == pytest.approx(full, rel=1e-2)


def test_value_relation_kl_refusals():
    student, teacher = torch.randn(2, 3, 8), torch.randn(2, 3, 12)
    with pytest.raises(ValueError, match=r"num_relation_heads=3 must divide.*D=8.*D=12.*\[1, 2, 4\]"):
        losses.value_relation_kl(student_values=student, teacher_values=teacher, num_relation_heads=3)
    with pytest.raises(ValueError, match=r"num_relation_heads=8 must divide.*D=8.*D=12"):
        losses.value_relation_kl(student_values=student, teacher_values=teacher, num_relation_heads=8)
    for bad in (0, -2, 2.0, None):
        with pytest.raises(ValueError, match="num_relation_heads must be an integer >= 1"):
            losses.value_relation_kl(student_values=student, teacher_values=teacher, num_relation_heads=bad)
    with pytest.raises(ValueError, match="same batch and sequence length"):
        losses.value_relation_kl(student_values=student, teacher_values=torch.randn(2, 4, 12), num_relation_heads=4)
    with pytest.raises(ValueError, match=r"student_values must have shape \(B, L, D\)"):
        losses.value_relation_kl(student_values=torch.randn(2, 2, 3, 4), teacher_values=teacher, num_relation_heads=4)
    with pytest.raises(ValueError, match=r"mask must have shape \(B, L\) = \(2, 3\)"):
        losses.value_relation_kl(
            student_values=student, teacher_values=teacher, mask=torch.ones(3, 2), num_relation_heads=4
        )
    with pytest.raises(ValueError, match="reduction must be 'mean' or 'sum'"):
        losses.value_relation_kl(
            student_values=student, teacher_values=teacher, num_relation_heads=4, reduction="none"
        )
