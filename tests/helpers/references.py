"""Independent references for every loss, written straight from the formulas in plain Python (float64 math, no
torch), sharing no code with `hf_distill.losses`."""

from __future__ import annotations

import math


def reference_task_loss(kind: str, logits, labels, smoothing: float = 0.0) -> float:
    """The supervised loss from the definitions: the mean over labelled rows (class id, -100: none; regression target,
    NaN: none) or counted positions (token ids, -100: not counted) of the cross-entropy (with label smoothing) or the
    squared error. `logits` `(B, C)` or `(B, L, V)`, `labels` `(B,)` or `(B, L)`: anything `.tolist()` reads."""
    logits, labels = logits.tolist(), labels.tolist()
    if kind == "token":
        pairs = [(row, label) for rows, row_labels in zip(logits, labels) for row, label in zip(rows, row_labels)]
    else:
        pairs = list(zip(logits, labels))
    total, count = 0.0, 0
    for row, label in pairs:
        if kind == "regression":
            label = label[0] if isinstance(label, list) else label
            if math.isnan(label):
                continue
            total += (row[0] - label) ** 2
        else:
            if label == -100:
                continue
            top = max(row)
            log_normaliser = top + math.log(sum(math.exp(x - top) for x in row))
            log_probs = [x - log_normaliser for x in row]
            total += -(1 - smoothing) * log_probs[int(label)] - smoothing * sum(log_probs) / len(log_probs)
        count += 1
    return total / count


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


def _nested(values):
    """A tensor as nested Python lists (a list stays a list): the references below index plain lists only."""
    return values.tolist() if hasattr(values, "tolist") else values


def reference_hidden_mse(student, teacher, mask):
    """Mean over counted positions of (1 / D) sum_d (s_d - t_d)**2 (TinyBERT), written from the definition."""
    student, teacher = _nested(student), _nested(teacher)
    mask = None if mask is None else _nested(mask)
    total, count = 0.0, 0
    for b in range(len(student)):
        for position in range(len(student[b])):
            if mask is None or mask[b][position]:
                s, t = student[b][position], teacher[b][position]
                total += sum((x - y) ** 2 for x, y in zip(s, t)) / len(s)
                count += 1
    return total / count if count else 0.0


def _mean_over_counted_queries(student, teacher, mask, row_kl):
    """`row_kl(student_row, teacher_row)` over the counted keys, averaged over heads, then over counted queries."""
    student, teacher = _nested(student), _nested(teacher)
    batch, heads, length = len(student), len(student[0]), len(student[0][0])
    mask = [[1] * length for _ in range(batch)] if mask is None else _nested(mask)
    total, count = 0.0, 0
    for b in range(batch):
        keys = [j for j in range(length) if mask[b][j]]
        for i in range(length):
            if not mask[b][i]:
                continue
            rows = [([student[b][h][i][j] for j in keys], [teacher[b][h][i][j] for j in keys]) for h in range(heads)]
            total += sum(row_kl(q, p) for q, p in rows) / heads
            count += 1
    return total / count if count else 0.0


def reference_attention_kl(student, teacher, mask):
    """MiniLM's attention KL: per head and counted query, KL(teacher row || student row) over the counted keys,
    each row renormalised over those keys; mean over heads, then mean over counted queries."""

    def row_kl(q, p):
        p, q = [x / sum(p) for x in p], [x / sum(q) for x in q]
        return sum(pj * math.log(pj / qj) for pj, qj in zip(p, q) if pj > 0)

    return _mean_over_counted_queries(student, teacher, mask, row_kl)


def reference_attention_kl_from_scores(student, teacher, mask):
    """MiniLM's attention KL from the pre-softmax scores `(B, H, L, L)`: each row's log-softmax over the counted keys
    taken here in float64 (log p_j = s_j - log sum_k exp s_k), so no probability underflows to 0 before its log."""

    def log_softmax(row):
        top = max(row)
        total = top + math.log(sum(math.exp(x - top) for x in row))
        return [x - total for x in row]

    def row_kl(q, p):
        log_p, log_q = log_softmax(p), log_softmax(q)
        return sum(math.exp(lp) * (lp - lq) for lp, lq in zip(log_p, log_q))

    return _mean_over_counted_queries(student, teacher, mask, row_kl)


def reference_value_relations(values, mask, num_relation_heads):
    """Relation matrices softmax(V_r V_r^T / sqrt(d)) `(B, R, L, L)` as nested lists, the softmax over the
    counted keys only (0 elsewhere; a row of an example with no counted key is all 0)."""
    values = _nested(values)
    batch, length, width = len(values), len(values[0]), len(values[0][0])
    mask = [[1] * length for _ in range(batch)] if mask is None else _nested(mask)
    size = width // num_relation_heads
    relations = []
    for b in range(batch):
        per_head = []
        for r in range(num_relation_heads):
            rows = []
            for i in range(length):
                scores = {}
                for j in range(length):
                    if mask[b][j]:
                        dot = sum(values[b][i][r * size + k] * values[b][j][r * size + k] for k in range(size))
                        scores[j] = dot / math.sqrt(size)
                top = max(scores.values(), default=0.0)
                normaliser = sum(math.exp(x - top) for x in scores.values())
                rows.append([math.exp(scores[j] - top) / normaliser if j in scores else 0.0 for j in range(length)])
            per_head.append(rows)
        relations.append(per_head)
    return relations


def reference_value_relation_kl(student, teacher, mask, num_relation_heads):
    """MiniLM(v2)'s value-relation KL: the attention KL between the two models' relation matrices."""
    return reference_attention_kl(
        reference_value_relations(student, mask, num_relation_heads),
        reference_value_relations(teacher, mask, num_relation_heads),
        mask,
    )
