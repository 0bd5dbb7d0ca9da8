"""hf_distill.cli.transfer: the transfer-set step loads nothing it will not use."""

from __future__ import annotations

from types import SimpleNamespace

from hf_distill.cli.transfer import check_mlm_augmenter


def test_augment_mlm_with_no_copies_loads_no_masked_lm(tmp_path):
    # the masked LM was loaded (and moved to the run's device) to fill in no words
    data_args = SimpleNamespace(augment="mlm", augment_copies=0, augment_mlm_model=str(tmp_path / "never_read"))
    model_args = SimpleNamespace(trust_remote_code=False, cache_dir=None, model_revision="main")
    assert check_mlm_augmenter(data_args, model_args, teacher_tokenizer=None) == (None, None)
