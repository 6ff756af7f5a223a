"""Shared pytest options and fixtures: `--update-regression` rewrites the stored regression
results; `source_layout` runs a test with each layout of the core's source draw."""
import pytest


def pytest_addoption(parser):
    parser.addoption("--update-regression", action="store_true", default=False,
                     help="rewrite tests/regression/<case>/results_true.json from this build")


@pytest.fixture(params=["voxels", "blocks"])
def source_layout(request):
    """The source draw's two layouts (csrc/physics/params.hpp SourceView): the alias table over
    voxels (the default for test-sized grids), and over blocks of 32 voxels (what grids whose
    voxel table would exceed 256 MiB get), forced through the core's test hook."""
    _core = pytest.importorskip("rptdose._core")
    old = _core._set_voxel_alias_max_bytes(0.0 if request.param == "blocks" else 256.0 * 2**20)
    yield request.param
    _core._set_voxel_alias_max_bytes(old)
