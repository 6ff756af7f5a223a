"""The shipped data (data/, installed as rptdose/data): the accessor, the README, provenance."""

import shutil

import pytest
from _shared import ROOT, data_maker, shared_path

from rptdose._data import data_dir, data_path
from rptdose.errors import DataError

DATA = ROOT / "data"
NOT_INSTALLED = {"make_reference_tables.py", "make_progeny_table.py"}


def _repo_files():
    return sorted(p.relative_to(DATA).as_posix() for p in DATA.rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts and p.name not in NOT_INSTALLED)


def test_every_shipped_file_is_found_and_named_in_the_readme():
    readme = (DATA / "README.md").read_text()
    names = _repo_files()
    assert "organ_limits.toml" in names and "reference/nist_xcom_mu_rho.csv" in names
    for name in names:
        assert data_path(name).read_bytes() == (DATA / name).read_bytes(), name
        if name != "README.md":
            assert f"`{name}`" in readme, f"data/README.md does not describe data/{name}"
    assert data_dir().is_dir()


def test_data_path_refuses_missing_and_outside_names():
    with pytest.raises(DataError, match="no_such_table.csv.*not found"):
        data_path("no_such_table.csv")
    for bad in ("../pyproject.toml", "", "reference/../../x"):
        with pytest.raises(DataError, match="invalid"):
            data_path(bad)


def test_readers_use_the_shipped_tables():
    from rptdose.analysis import course, radiobiology
    from rptdose.physics.materials import HUCalibration

    tissues = radiobiology.load_tissues()
    assert tissues.path == str(data_path("radiobiology_tissues.toml"))
    assert course.load_limits(None, tissues).path == str(data_path("organ_limits.toml"))
    assert course.DEFAULT_LIMITS == data_path("organ_limits.toml")
    assert len(HUCalibration.schneider2000().bin_materials) == 26


def test_curated_tables_are_the_checked_ones():
    """data/make_reference_tables.py's check: the SHA-256 recorded in data/provenance.csv, and,
    where the project's shared/reference is present, every number against it."""
    mrt = data_maker()
    assert mrt.check(shared_path("reference")) == []


def test_check_sees_an_edited_table(tmp_path, monkeypatch):
    mrt = data_maker()
    copy = tmp_path / "data"
    shutil.copytree(DATA, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(mrt, "DATA", copy)
    assert mrt.check(None) == []
    f = copy / "reference" / "nist_xcom_mu_rho.csv"
    f.write_text(f.read_text().replace("water,100,0.1707,0.02546", "water,100,0.1708,0.02546"))
    assert any("nist_xcom_mu_rho.csv changed since it was checked" in b for b in mrt.check(None))


def test_makers_and_comparers(tmp_path, monkeypatch):
    """The number-by-number comparison, on a stand-in for shared/reference made from data/ (the
    curated XCOM table holds the source's rows verbatim under a longer header)."""
    mrt = data_maker()
    ref = tmp_path / "reference"
    ref.mkdir()
    xcom = ref / "nist_xcom_mu_rho.csv"
    shutil.copy(DATA / "reference" / "nist_xcom_mu_rho.csv", xcom)
    assert mrt.make_xcom(ref) == (DATA / "reference" / "nist_xcom_mu_rho.csv").read_text()
    assert mrt.compare_water_mu_en(ref) == []
    xcom.write_text(xcom.read_text().replace("water,150,0.1505,0.02764", "water,150,0.1505,0.02765"))
    assert mrt.make_xcom(ref) != (DATA / "reference" / "nist_xcom_mu_rho.csv").read_text()
    assert mrt.compare_water_mu_en(ref) == [
        "ref_nist_water_mu_en.csv: 150 keV 0.02764 != 0.02765 (nist_xcom_mu_rho.csv)"]
