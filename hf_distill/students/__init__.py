"""Building a student from a teacher.

- `build.py`: `build_student` (the entry point) and `build_bert_student`;
- `layers.py`: which teacher layers a student starts from;
- `distilbert.py`: the BERT -> DistilBERT weight mapping.
"""

from .build import build_bert_student, build_student
from .distilbert import build_distilbert_student
from .layers import select_layers, validate_layers

__all__ = ["build_bert_student", "build_distilbert_student", "build_student", "select_layers", "validate_layers"]
