"""hf_distill.cli.paths: `package:NAME/rest` specs name files inside the installed package, nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest

import hf_distill
from hf_distill.cli.paths import resolve_package_path


def test_a_package_spec_resolves_inside_the_package():
    package = Path(hf_distill.__file__).parent
    assert Path(resolve_package_path("package:hf_distill/losses")) == package / "losses"
    assert resolve_package_path("configs/offline/sst2.yaml") == "configs/offline/sst2.yaml"  # not a spec: unchanged


@pytest.mark.parametrize("rest", ["/etc", "../..", "losses/../../.."])
def test_a_package_spec_that_leaves_the_package_is_refused(rest):
    # "package:hf_distill//etc" joined to /etc, and ".." climbed out of the package
    with pytest.raises(ValueError, match=rf"'package:hf_distill/{rest}' leaves the package 'hf_distill'"):
        resolve_package_path(f"package:hf_distill/{rest}")


def test_a_missing_file_of_an_installed_package_is_named():
    with pytest.raises(ValueError, match=r"the package 'hf_distill' is installed but has no 'nothing_here'"):
        resolve_package_path("package:hf_distill/nothing_here")
