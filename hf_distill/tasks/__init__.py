"""The data a student is trained and scored on.

- `glue.py`: the GLUE task table, TSV and Hub loading, tokenisation;
- `files.py`: your own CSV/TSV/JSON lines files;
- `loading.py`: a script's data step (task or files, held-out rows);
- `metrics.py`: GLUE metrics computed locally (scikit-learn/SciPy);
- `transfer.py`, `augment.py`: transfer sets (unlabelled rows, augmented copies of the labelled ones);
- `corpus.py`, `mlm_metrics.py`: a masked-LM corpus, its fixed masks and scores;
- `positions.py`: how many tokens a model reads.
"""
