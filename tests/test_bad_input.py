"""Every bad input raises InputError naming the argument and what was expected, before any work.

Also the CLI's contract: exit code 2 and a one-line message without a traceback for bad input.
"""

import numpy as np
import pytest

import rptdose as rd
from rptdose.cli import main
from rptdose.errors import BackendUnavailableError, InputError

SHAPE = (4, 5, 6)


@pytest.fixture(scope="module", autouse=True)
def table_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RPTDOSE_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="module")
def phantom():
    return rd.Phantom.water(shape=SHAPE, spacing_mm=(2.0, 2.0, 2.0))


@pytest.fixture(scope="module")
def source():
    return rd.Source("Lu-177", np.ones(SHAPE))


def ones(shape=SHAPE, dtype=float):
    return np.ones(shape, dtype=dtype)


# ---- Phantom -------------------------------------------------------------------------------

def _with(value, at=(0, 0, 0)):
    a = ones()
    a[at] = value
    return a


PHANTOM_CASES = {
    "2-D density": (dict(density_g_cm3=np.ones((5, 6))), ["density_g_cm3", "3-D"]),
    "shape mismatch": (dict(material_index=np.zeros((4, 5, 7), dtype=int)), ["material_index", "shape"]),
    "zero density": (dict(density_g_cm3=_with(0.0)), ["density_g_cm3", "> 0"]),
    "negative density": (dict(density_g_cm3=_with(-1.0)), ["density_g_cm3", "> 0"]),
    "NaN density": (dict(density_g_cm3=_with(np.nan)), ["density_g_cm3", "finite"]),
    "density in kg/m3": (dict(density_g_cm3=ones() * 1000.0), ["density_g_cm3", "kg/m3"]),
    "string density": (dict(density_g_cm3=np.full(SHAPE, "a")), ["density_g_cm3", "numeric"]),
    "index out of range": (dict(material_index=_with(1).astype(int)), ["material_index", "0..0"]),
    "negative index": (dict(material_index=_with(-1).astype(int)), ["material_index", "out of range"]),
    "float index": (dict(material_index=np.zeros(SHAPE)), ["material_index", "integer"]),
    "unknown material": (dict(materials=["unobtainium"]), ["materials[0]", "unobtainium", "water"]),
    "materials not a list": (dict(materials="water"), ["materials", "list"]),
    "empty materials": (dict(materials=[]), ["materials", "at least one"]),
    "negative spacing": (dict(spacing_mm=(-1.0, 1.0, 1.0)), ["spacing_mm", "[0.001, 1000]"]),
    "absurd spacing": (dict(spacing_mm=(1.0, 1.0, 1e5)), ["spacing_mm", "z spacing"]),
    "tiny spacing": (dict(spacing_mm=(1e-6, 1.0, 1.0)), ["spacing_mm", "x spacing"]),
    "2 spacings": (dict(spacing_mm=(1.0, 1.0)), ["spacing_mm", "3 numbers"]),
    "NaN origin": (dict(origin_mm=(0.0, np.nan, 0.0)), ["origin_mm", "finite"]),
    "skew direction": (dict(direction=(1, 0, 0, 1, 1, 0, 0, 0, 1)), ["direction", "orthonormal"]),
}


@pytest.mark.parametrize("case", PHANTOM_CASES, ids=list(PHANTOM_CASES))
def test_phantom_from_arrays(case):
    changes, words = PHANTOM_CASES[case]
    kw = dict(density_g_cm3=ones(), material_index=np.zeros(SHAPE, dtype=np.int32), materials=["water"],
              spacing_mm=(1.0, 1.0, 1.0))
    kw.update(changes)
    with pytest.raises(InputError) as info:
        rd.Phantom.from_arrays(**kw)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


@pytest.mark.parametrize("shape, spacing, words", [
    ((4, 4), (1.0, 1.0, 1.0), ["shape", "(nz, ny, nx)"]),
    ((4, 0, 4), (1.0, 1.0, 1.0), ["shape", "positive"]),
    ((4, 4, 4.5), (1.0, 1.0, 1.0), ["shape", "integers"]),
    ((4, 4, 4), (0.0, 1.0, 1.0), ["spacing_mm"]),
    ((4, 4, 4), "2 mm", ["spacing_mm", "3 numbers"]),
])
def test_phantom_water(shape, spacing, words):
    with pytest.raises(InputError) as info:
        rd.Phantom.water(shape=shape, spacing_mm=spacing)
    for word in words:
        assert word in str(info.value)


def test_phantom_from_ct_missing_path(tmp_path):
    missing = tmp_path / "no_such_ct"
    with pytest.raises(InputError, match="no_such_ct.*does not exist"):
        rd.Phantom.from_ct(missing)
    with pytest.raises(InputError, match="ct 42"):
        rd.Phantom.from_ct(42)


# ---- Source --------------------------------------------------------------------------------

SOURCE_CASES = {
    "negative decays": (_with(-1.0), ["decays", "negative", ">= 0"]),
    "NaN decays": (_with(np.nan), ["decays", "NaN"]),
    "infinite decays": (_with(np.inf), ["decays", "infinite"]),
    "zero activity": (np.zeros(SHAPE), ["decays", "total 0"]),
    "2-D decays": (np.ones((5, 6)), ["decays", "3-D"]),
    "complex decays": (ones(dtype=complex), ["decays", "complex"]),
    "no decays": (None, ["decays", "missing"]),
}


@pytest.mark.parametrize("case", SOURCE_CASES, ids=list(SOURCE_CASES))
def test_source_decays(case):
    decays, words = SOURCE_CASES[case]
    with pytest.raises(InputError) as info:
        rd.Source("Lu-177", decays)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


@pytest.mark.parametrize("nuclide, words", [
    ("Xx-999", ["nuclide", "Xx-999"]),
    ("Lutetium", ["nuclide", "Lutetium"]),
    (177, ["nuclide", "Lu-177"]),
])
def test_source_unknown_nuclide(nuclide, words):
    with pytest.raises(InputError) as info:
        rd.Source(nuclide, ones())
    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize("kind, energy, words", [
    ("neutron", 1.0, ["kind", "photon"]),
    ("photon", 5.0, ["energy_mev", "3"]),
    ("electron", -0.1, ["energy_mev"]),
    ("photon", float("nan"), ["energy_mev", "finite"]),
    ("photon", "0.2", ["energy_mev", "number"]),
])
def test_source_monoenergetic(kind, energy, words):
    with pytest.raises(InputError) as info:
        rd.Source.monoenergetic(kind, energy, ones())
    for word in words:
        assert word in str(info.value)


# ---- simulate ------------------------------------------------------------------------------

SIMULATE_CASES = {
    "histories < batches": (dict(histories=5), ["histories", "batches"]),
    "histories not integer": (dict(histories=1000.5), ["histories", "integer"]),
    "histories string": (dict(histories="1e4"), ["histories", "integer"]),
    "histories zero": (dict(histories=0), ["histories", ">= 1"]),
    "histories beyond capacity": (dict(histories=10**15), ["histories", "tally capacity", "at most"]),
    "batches < 10": (dict(batches=5), ["batches", ">= 10"]),
    "batches float": (dict(batches=10.5), ["batches", "integer"]),
    "negative seed": (dict(seed=-1), ["seed", ">= 0"]),
    "seed beyond uint64": (dict(seed=2**64), ["seed", "<= 18446744073709551615"]),
    "bool seed": (dict(seed=True), ["seed", "integer"]),
    "zero threads": (dict(threads=0), ["threads", ">= 1"]),
    "bad backend": (dict(backend="gpu"), ["backend", "'gpu'", "cuda", "cpu"]),
    "electron_transport string": (dict(electron_transport="yes"), ["electron_transport", "True or False"]),
    "progress string": (dict(progress="yes"), ["progress", "callable"]),
    "regions wrong shape": (dict(regions={"liver": np.ones((2, 2, 2), bool)}), ["regions['liver']", "shape"]),
    "regions empty mask": (dict(regions={"liver": np.zeros(SHAPE, bool)}), ["regions['liver']", "empty"]),
    "regions float labels": (dict(regions=np.ones(SHAPE)), ["regions", "integer label map"]),
    "regions negative label": (dict(regions=-np.ones(SHAPE, int)), ["regions", "labels >= 0"]),
    "regions background only": (dict(regions=np.zeros(SHAPE, int)), ["regions", "label > 0"]),
}


@pytest.mark.parametrize("case", SIMULATE_CASES, ids=list(SIMULATE_CASES))
def test_simulate_arguments(case, phantom, source):
    changes, words = SIMULATE_CASES[case]
    kw = dict(histories=1000, progress=False)
    kw.update(changes)
    with pytest.raises(InputError) as info:
        rd.simulate(phantom, source, **kw)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_simulate_source_shape_mismatch(phantom):
    src = rd.Source("Lu-177", np.ones((4, 5, 7)))
    with pytest.raises(InputError, match=r"source decays shape \(4, 5, 7\).*\(4, 5, 6\)"):
        rd.simulate(phantom, src, histories=1000)


def test_simulate_wrong_types(phantom, source):
    with pytest.raises(InputError, match="phantom .*rptdose.Phantom"):
        rd.simulate(np.ones(SHAPE), source)
    with pytest.raises(InputError, match="source .*rptdose.Source"):
        rd.simulate(phantom, np.ones(SHAPE))


def test_unavailable_backend_names_why(phantom, source):
    unavailable = [n for n, e in rd.backends().items() if not e["available"]]
    if not unavailable:
        pytest.skip("every backend is available on this machine")
    name = unavailable[0]
    with pytest.raises(BackendUnavailableError) as info:
        rd.simulate(phantom, source, histories=1000, backend=name)
    assert name in str(info.value) and rd.backends()[name]["reason"] in str(info.value)


# ---- CLI -----------------------------------------------------------------------------------

def _one_line_error(capsys):
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_cli_bad_backend_exit_2(tmp_path, capsys):
    assert main(["example", "-o", str(tmp_path / "out"), "--backend", "gpu"]) == 2
    line = _one_line_error(capsys)
    assert "backend" in line and "'gpu'" in line
    assert not (tmp_path / "out").exists()  # validated before anything is written


def test_cli_output_is_a_file_exit_2(tmp_path, capsys):
    f = tmp_path / "a_file"
    f.write_text("x")
    assert main(["example", "-o", str(f)]) == 2
    assert "a_file" in _one_line_error(capsys)


def test_cli_too_few_histories_exit_2(tmp_path, capsys):
    assert main(["example", "-o", str(tmp_path), "--histories", "3"]) == 2
    assert "histories" in _one_line_error(capsys)


def test_cli_no_command_exit_2(capsys):
    assert main([]) == 2
