"""Non-finite values at uncounted positions, and labels passed as a mask."""

from __future__ import annotations

import pytest
import torch

from hf_distill import losses

MASK = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=torch.bool)


def _grad(loss_fn, student, teacher):
    student = student.clone().requires_grad_(True)
    value = loss_fn(student, teacher)
    value.backward()
    return value.detach(), student.grad


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize(
    "loss_fn",
    [
        lambda s, t: losses.hidden_state_mse(student_hidden=s, teacher_hidden=t, mask=MASK),
        lambda s, t: losses.hidden_state_cosine(student_hidden=s, teacher_hidden=t, mask=MASK),
        lambda s, t: losses.value_relation_kl(student_values=s, teacher_values=t, mask=MASK, num_relation_heads=2),
    ],
    ids=["mse", "cosine", "value_relation"],
)
def test_non_finite_states_at_padding_reach_neither_the_value_nor_the_gradient(loss_fn, bad):
    generator = torch.Generator().manual_seed(7)
    student = torch.randn(3, 5, 8, generator=generator)
    teacher = torch.randn(3, 5, 8, generator=generator)
    clean_value, clean_grad = _grad(loss_fn, student, teacher)
    dirty_student, dirty_teacher = student.clone(), teacher.clone()
    dirty_student[~MASK], dirty_teacher[~MASK] = bad, bad
    value, grad = _grad(loss_fn, dirty_student, dirty_teacher)
    assert value.item() == pytest.approx(clean_value.item(), rel=1e-6)
    assert torch.isfinite(grad).all()
    torch.testing.assert_close(grad, clean_grad)  # 0 at padding, the clean gradient elsewhere


@pytest.mark.parametrize("log_space", [False, True])
def test_attention_kl_ignores_non_finite_rows_of_padded_queries(log_space):
    generator = torch.Generator().manual_seed(8)
    keys = MASK[:, None, None, :]

    def attentions():
        raw = (2 * torch.randn(3, 2, 5, 5, generator=generator)).masked_fill(~keys, float("-inf"))
        return raw.log_softmax(-1) if log_space else raw.softmax(-1)

    def loss_fn(student, teacher):
        return losses.attention_kl(
            student_attentions=student, teacher_attentions=teacher, mask=MASK, log_space=log_space
        )

    student, teacher = attentions(), attentions()
    clean_value, clean_grad = _grad(loss_fn, student, teacher)
    padded_queries = (~MASK)[:, None, :, None].expand_as(student)  # (B, H, L, L): the rows of uncounted queries
    dirty_student, dirty_teacher = student.masked_fill(padded_queries, float("nan")), teacher.clone()
    dirty_teacher[padded_queries] = float("inf")
    value, grad = _grad(loss_fn, dirty_student, dirty_teacher)
    assert value.item() == pytest.approx(clean_value.item(), rel=1e-6)
    torch.testing.assert_close(grad, clean_grad)


def test_topk_kl_with_no_teacher_rest_and_no_student_mass_outside_is_finite():
    teacher = torch.tensor([[[5.0, 4.0, 3.0, float("-inf"), float("-inf"), float("-inf")]]])
    student = torch.tensor([[[1.0, 2.0, 0.5, float("-inf"), float("-inf"), float("-inf")]]], requires_grad=True)
    log_probs, indices = teacher.log_softmax(-1).topk(3, dim=-1)
    value = losses.token_topk_kl_divergence(
        student_logits=student,
        teacher_topk_log_probs=log_probs,
        teacher_topk_indices=indices,
        mask=None,
        temperature=1.0,
    )
    value.backward()
    full = losses.token_kl_divergence(
        student_logits=student.detach(), teacher_logits=teacher, mask=None, temperature=1.0
    )
    assert value.item() == pytest.approx(full.item(), rel=1e-6)  # the teacher has no mass outside its top 3
    assert torch.isfinite(student.grad).all()


@pytest.mark.parametrize(
    "call",
    [
        lambda m: losses.token_kl_divergence(
            student_logits=torch.randn(2, 3, 4), teacher_logits=torch.randn(2, 3, 4), mask=m, temperature=1.0
        ),
        lambda m: losses.hidden_state_mse(
            student_hidden=torch.randn(2, 3, 4), teacher_hidden=torch.randn(2, 3, 4), mask=m
        ),
        lambda m: losses.attention_kl(
            student_attentions=torch.rand(2, 1, 3, 3), teacher_attentions=torch.rand(2, 1, 3, 3), mask=m
        ),
    ],
    ids=["token_kl", "hidden_mse", "attention_kl"],
)
def test_labels_passed_as_the_mask_are_refused_with_the_fix(call):
    labels = torch.tensor([[-100, 5, 7], [3, -100, -100]])
    with pytest.raises(ValueError, match=r"mask must hold 0/1 or booleans.*-100.*labels != -100"):
        call(labels)
    call(labels != -100)  # the fix works
    call((labels != -100).long())  # and 0/1 integers stay accepted


def test_cosine_with_different_widths_names_the_hidden_size():
    with pytest.raises(ValueError, match=r"hidden size 8 differs from the teacher's 16"):
        losses.hidden_state_cosine(student_hidden=torch.randn(2, 5, 8), teacher_hidden=torch.randn(2, 5, 16))


def test_regression_predictions_of_different_shapes_say_to_reshape():
    with pytest.raises(ValueError, match=r"\(4, 1\).*\(4,\).*same shape"):
        losses.regression_mse(student_predictions=torch.randn(4, 1), teacher_predictions=torch.randn(4))


def test_a_causal_lms_next_token_positions_leave_out_left_padding():
    # position i predicts token i + 1: counted where both are attended; a left pad before the first real token
    # predicts it, and was counted when the mask dropped the attention mask
    attention = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 0, 0]])
    counted = losses.token_mask(None, attention, attention.shape, attention.device, next_token=True)
    assert counted.int().tolist() == [[0, 0, 1, 1, 0], [1, 1, 0, 0, 0]]
    labels = torch.tensor([[-100, -100, 7, 8, 9], [4, 5, 6, -100, -100]])
    counted = losses.token_mask(labels, attention, attention.shape, attention.device, next_token=True)
    assert counted.int().tolist() == [[0, 0, 1, 1, 0], [1, 1, 0, 0, 0]]
