"""The data a student is trained and scored on.

- `glue.py`: the GLUE task table, TSV and Hub loading, tokenisation;
- `files.py`: your own CSV/TSV/JSON lines files;
- `loading.py`: a script's data step (task or files, held-out rows);
- `metrics.py`: GLUE metrics computed locally (scikit-learn/SciPy).
"""
