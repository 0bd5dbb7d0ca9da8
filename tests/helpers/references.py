"""Independent references for every loss, written straight from the formulas in plain Python (float64 math, no
torch), sharing no code with `hf_distill.losses`."""

from __future__ import annotations

import math


def reference_kl(student_row: list[float], teacher_row: list[float], temperature: float) -> float:
    """KL(softmax(t / T) || softmax(s / T)) for one row, straight from the definition."""

    def softmax(row):
        top = max(row)
        exps = [math.exp((x - top) / temperature) for x in row]
        total = sum(exps)
        return [e / total for e in exps]

    p, q = softmax(teacher_row), softmax(student_row)
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q) if pi > 0)


def reference_class_loss(student, teacher, temperature):
    rows = [reference_kl(s, t, temperature) for s, t in zip(student.tolist(), teacher.tolist())]
    return temperature**2 * sum(rows) / len(rows)


def reference_token_loss(student, teacher, mask, temperature):
    total, count = 0.0, 0
    for b in range(student.shape[0]):
        for position in range(student.shape[1]):
            if mask[b, position]:
                total += reference_kl(student[b, position].tolist(), teacher[b, position].tolist(), temperature)
                count += 1
    return temperature**2 * total / count if count else 0.0


def reference_cosine_loss(student, teacher, mask):
    """Mean over counted positions of 1 - <s, t> / (|s| |t|), written from the definition."""
    total, count = 0.0, 0
    for b in range(student.shape[0]):
        for position in range(student.shape[1]):
            if mask[b, position]:
                s, t = student[b, position].tolist(), teacher[b, position].tolist()
                dot = sum(x * y for x, y in zip(s, t))
                norms = math.sqrt(sum(x * x for x in s)) * math.sqrt(sum(y * y for y in t))
                total += 1 - dot / norms
                count += 1
    return total / count if count else 0.0


def reference_topk_kl(student_row: list[float], top_log_probs: list[float], top_indices: list[int], temperature):
    """KL between teacher and student coarse-grained to the top-k set S plus one rest bucket, in plain Python."""
    scaled = [s / temperature for s in student_row]
    top = max(scaled)
    normaliser = sum(math.exp(x - top) for x in scaled)
    q = [math.exp(x - top) / normaliser for x in scaled]
    p = [math.exp(value) for value in top_log_probs]
    total = sum(pi * (math.log(pi) - math.log(q[i])) for pi, i in zip(p, top_indices) if pi > 0)
    rest_teacher = max(1.0 - sum(p), 0.0)
    rest_student = 1.0 - sum(q[i] for i in top_indices)
    if rest_teacher > 0:
        total += rest_teacher * (math.log(rest_teacher) - math.log(rest_student))
    return total


def reference_topk_loss(student, top_log_probs, top_indices, mask, temperature):
    total, count = 0.0, 0
    for b in range(student.shape[0]):
        for position in range(student.shape[1]):
            if mask[b, position]:
                total += reference_topk_kl(
                    student[b, position].tolist(),
                    top_log_probs[b, position].tolist(),
                    top_indices[b, position].tolist(),
                    temperature,
                )
                count += 1
    return temperature**2 * total / count if count else 0.0
