"""The plumbing the `scripts/distill_*.py` entry points share.

- `arguments.py`: model and data argument dataclasses, YAML files and flag overrides;
- `checks.py`: refusals that cost nothing, before any data or model is loaded;
- `models.py`: loading the teacher and student, fine-tuning the teacher;
- `entry.py`: running a script's `main` with one clear line on bad input and a clean distributed exit;
- `distributed.py`: `end_distributed()`, the last call on every rank.
"""
