"""Report figures and pages scaled to what matters (rptdose.report, the registration check figure,
the course page): colour scale and DVH axis from the organs, not from a hot air voxel; contour
legend, mm scale bar; outputs as relative links; figures that fit the page."""

import datetime as dt
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from rptdose.report import figures as F
from rptdose.study import FOV_REGION

SPACING = (4.0, 4.0, 5.0)   # mm (x, y, z)
OUTLIER = (10, 1, 1)        # (z, y, x): an air voxel outside the body
OUTLIER_GY = 1.0e5


@pytest.fixture(scope="module")
def case():
    """A box-shaped body in air, a liver, a tumour, and a 'lesion' region whose contour spills into
    the air onto the 1e5 Gy voxel (the region with the highest mean dose)."""
    shape = (20, 24, 28)
    rng = np.random.default_rng(3)
    density = np.full(shape, 0.0012)
    body = np.zeros(shape, bool)
    body[:, 4:20, 4:24] = True
    density[body] = 1.0
    dose = np.where(body, rng.uniform(1.0, 3.0, shape), rng.uniform(0.0, 0.5, shape))
    liver = np.zeros(shape, bool)
    liver[5:15, 6:14, 6:14] = True
    dose[liver] = rng.uniform(5.0, 8.0, int(liver.sum()))
    tumour = np.zeros(shape, bool)
    tumour[8:11, 15:18, 16:19] = True
    dose[tumour] = 20.0
    lesion = np.zeros(shape, bool)
    lesion[9:12, 1:7, 1:7] = True          # partly outside the body: its corner holds the outlier
    dose[lesion & body] = 30.0
    dose[OUTLIER] = OUTLIER_GY
    regions = {"liver": liver, "tumour": tumour, "lesion": lesion, FOV_REGION: np.ones(shape, bool)}
    rows = [{"name": "liver", "mean_dose_gy": 6.5}, {"name": "tumour", "mean_dose_gy": 20.0},
            {"name": "lesion", "mean_dose_gy": 31.0}, {"name": FOV_REGION, "mean_dose_gy": 2.0}]
    return SimpleNamespace(density=density, body=body, dose=dose, regions=regions, rows=rows)


@pytest.fixture(scope="module")
def slices(case):
    return F.dose_slices_figure(case.density, case.dose, case.regions, case.rows, SPACING, body=case.body)


def _dose_images(fig):
    return [im for ax in fig.axes for im in ax.images if im.get_cmap().name == "jet"]


def test_colour_scale_is_the_documented_percentile_inside_the_body(case, slices):
    """The scale ends at the larger of the 99.5th percentile inside the body and the highest D2
    of a region inside the body: here the lesion's 30 Gy (its part in the body), not the 1e5 Gy
    air voxel its contour also holds."""
    pct = float(np.percentile(case.dose[case.body], 99.5))
    d2 = float(np.percentile(case.dose[case.regions["lesion"] & case.body], 98.0))
    expected = max(pct, d2)
    assert d2 == 30.0 and pct < d2
    cs = slices.rptdose_colour_scale
    assert cs["vmax_gy"] == pytest.approx(expected, rel=1e-12)
    assert cs["percentile_gy"] == pytest.approx(pct, rel=1e-12) and cs["region_d2_name"] == "lesion"
    assert expected < 100.0                       # not the outlier
    images = _dose_images(slices)
    assert len(images) == 3 and all(im.norm.vmax == pytest.approx(expected, rel=1e-12) for im in images)
    title = slices._suptitle.get_text()
    assert f"colour scale up to {expected:.3g} Gy" in title
    assert f"99.5th percentile inside the body ({pct:.3g} Gy)" in title
    assert f"highest region D2 ({d2:.3g} Gy, lesion)" in title
    z, y, x = OUTLIER
    assert f"max {OUTLIER_GY:.3g} Gy at voxel (x, y, z) = ({x}, {y}, {z}), outside the body" in title
    assert f"max inside the body {case.dose[case.body].max():.3g} Gy" in title
    labels = [ax.get_ylabel() for ax in slices.axes]
    assert any(f"scale up to {expected:.3g} Gy" in t and "99.5th percentile" in t for t in labels)


def test_colour_scale_without_regions_is_the_percentile(case):
    cs = F.colour_scale(case.dose, {FOV_REGION: case.regions[FOV_REGION]}, case.body)
    assert cs["vmax_gy"] == pytest.approx(float(np.percentile(case.dose[case.body], 99.5)), rel=1e-12)
    assert cs["region_d2_name"] is None


def test_colour_scale_without_body_uses_the_regions(case):
    cs = F.colour_scale(case.dose, case.regions, None)
    union = case.regions["liver"] | case.regions["tumour"] | case.regions["lesion"]
    d2 = max(float(np.percentile(case.dose[m], 98.0)) for m in (case.regions["liver"], case.regions["tumour"],
                                                                  case.regions["lesion"]))
    assert cs["percentile_gy"] == pytest.approx(float(np.percentile(case.dose[union], 99.5)))
    assert cs["vmax_gy"] == pytest.approx(max(cs["percentile_gy"], d2))
    assert cs["domain"] == "inside the delineated regions"
    assert cs["max_index"] == OUTLIER and cs["max_in_domain"]     # the lesion's contour holds it


def test_body_mask_falls_back_to_density():
    density = np.array([[[0.001, 0.3, 1.0, 1.9]]])
    study = SimpleNamespace(phantom=SimpleNamespace(density=density))
    assert F.body_mask(study).tolist() == [[[False, False, True, True]]]
    study.body = np.array([[[True, True, True, False]]])
    assert F.body_mask(study).tolist() == [[[True, True, True, False]]]


def test_slices_go_through_the_hottest_region_inside_the_body(case, slices):
    name, (z, y, x) = F.hottest_point(case.dose, case.regions, case.rows, case.body)
    assert name == "lesion" and case.body[z, y, x] and case.regions["lesion"][z, y, x]
    assert case.dose[z, y, x] == 30.0
    # without the body the air voxel of the contour would be picked
    assert F.hottest_point(case.dose, case.regions, case.rows)[1] == OUTLIER
    titles = [ax.get_title() for ax in slices.axes[:3]]
    assert titles == [f"axial (z = {z})", f"coronal (y = {y})", f"sagittal (x = {x})"]


def test_contour_legend_scale_bar_and_no_ticks(case, slices):
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    assert len(slices.legends) == 1
    legend = slices.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == ["liver", "tumour", "lesion"]   # no field of view
    colours = [h.get_color() for h in legend.legend_handles]
    assert colours == [F.region_styles(case.regions)[n][0] for n in ("liver", "tumour", "lesion")]
    horizontal_mm = (SPACING[0], SPACING[0], SPACING[1])          # axial, coronal: x; sagittal: y
    for ax, sh in zip(slices.axes[:3], horizontal_mm):
        assert len(ax.get_xticks()) == 0 and len(ax.get_yticks()) == 0
        bars = [a for a in ax.artists if isinstance(a, AnchoredSizeBar)]
        assert len(bars) == 1
        label = bars[0].txt_label.get_text()
        mm = float(re.fullmatch(r"(\d+) mm", label).group(1))
        rect = bars[0].size_bar.get_children()[0]
        assert rect.get_width() * sh == pytest.approx(mm)


def test_overlay_is_transparent_in_air(case, slices):
    axial = _dose_images(slices)[0].get_array()
    cs = slices.rptdose_colour_scale
    z = int(re.search(r"z = (\d+)", slices.axes[0].get_title()).group(1))
    air = case.density[z] < F.AIR_DENSITY_G_CM3
    assert np.all(np.ma.getmaskarray(axial)[air])
    assert cs["clipped"]


def test_dvh_axis_from_the_organs(case):
    from rptdose.pipeline import _dvh_table

    bins, curves, _ = _dvh_table(case.dose, case.regions)
    assert bins[-1] == OUTLIER_GY                 # the lesion's contour holds the outlier
    fig = F.dvh_figure(bins, curves, dose_gy=case.dose, regions=case.regions)
    ax = fig.axes[0]
    d1 = max(float(np.percentile(case.dose[m], 99.0)) for n, m in case.regions.items() if n != FOV_REGION)
    assert ax.get_xlim()[1] == pytest.approx(1.1 * d1)
    assert ax.get_xlim()[1] < 40.0
    assert "1.1 x the highest region D1" in ax.get_title() and "region maxima up to 1e+05 Gy" in ax.get_title()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["liver", "tumour", "lesion"]
    line = ax.get_lines()[0]                       # liver: recomputed on fine bins up to the axis end
    assert line.get_xdata()[-1] == pytest.approx(1.1 * d1) and len(line.get_xdata()) == 400


def test_dvh_axis_from_the_curves_alone(case):
    from rptdose.pipeline import _dvh_table

    regions = {k: m for k, m in case.regions.items() if k != "lesion"}
    bins, curves, _ = _dvh_table(case.dose, regions)
    ax = F.dvh_figure(bins, curves).axes[0]
    assert 20.0 <= ax.get_xlim()[1] <= 1.1 * bins[-1] + 1e-9


def _png(path: Path) -> Path:
    from rptdose.quant.outputs import write_figure
    from rptdose.quant.plots import _figure

    path.parent.mkdir(parents=True, exist_ok=True)
    return write_figure(path, _figure(1.0, 1.0))


def _report(tmp_path):
    from rptdose.report.html import render_report

    out = tmp_path / "results"
    tp = [SimpleNamespace(label="4h", time_h=4.0), SimpleNamespace(label="24h", time_h=24.0)]
    study = SimpleNamespace(
        name="synthetic", path=tmp_path / "study.toml", nuclide="Lu-177", administered_activity_bq=7.4e9,
        administration_time=dt.datetime(2026, 3, 2, 9), timepoints=tp,
        phantom=SimpleNamespace(shape=(20, 24, 28), spacing_mm=SPACING), region_names=["liver", "my organ"],
        quant_report=[{"label": "4h", "time_h": 4.0, "registration": "reference", "registration_metric": float("nan")},
                      {"label": "24h", "time_h": 24.0, "registration": "rigid", "registration_metric": -1.355}])
    dose = SimpleNamespace(method="mc", histories=1000, seed=1, backend="cpu", energy_balance={}, provenance={})
    prov = {"rptdose_version": "0", "created": "now", "study_file_text": "", "timings_s": {},
            "study": {"input_sha256": {}, "versions": {}, "settings": {}},
            "dose": {"dose_rate_integration": False, "electron_transport": True, "provenance": {}}}
    written = {"rtdose": out / "dose.dcm", "regions_csv": out / "regions.csv",
               "slices_png": _png(out / "dose_slices.png"), "dvh_png": _png(out / "dvh.png"),
               "tia/tac_liver": _png(out / "tia/plots/tac_liver.png"),
               "tia/tac_my organ": _png(out / "tia/plots/tac_my organ.png"),
               "tia/check_tp2": _png(out / "tia/registration/tp2_check.png"),
               "elsewhere": tmp_path / "other" / "x.csv"}
    rows = [{"name": "liver", "kind": "organ", "mean_dose_gy": 3.0}]
    return render_report(study, dose, rows, [], prov, written, out)


def test_report_lists_outputs_as_relative_links(tmp_path):
    html = _report(tmp_path)
    outputs = html.split("<h2>Outputs</h2>")[1].split("<h2>")[0]
    for rel in ("dose.dcm", "regions.csv", "dose_slices.png", "dvh.png", "tia/plots/tac_liver.png",
                "tia/registration/tp2_check.png", "report.html"):
        assert f'<a href="{rel}">{rel}</a>' in outputs
    assert '<a href="tia/plots/tac_my%20organ.png">tia/plots/tac_my organ.png</a>' in outputs
    assert "x.csv</li>" in outputs and 'href="/' not in outputs     # outside the folder: text, no link
    assert "<script" not in html and 'src="http' not in html


def test_report_layout_and_metric_label(tmp_path):
    html = _report(tmp_path)
    assert "img{max-width:100%" in html
    tacs = html.split("<h2>Time-activity fits</h2>")[1].split("<h2>")[0]
    assert tacs.startswith('<div class="gallery">') and tacs.count("<img") == 2
    assert "registration metric (Mattes MI, lower = better)" in html and "-1.355" in html
    assert "99.5th percentile of the dose inside the body and the highest D2 of the regions" in html


def test_registration_figure_names_its_metric():
    from rptdose.quant.plots import registration_figure

    s = {}
    for view in ("axial", "coronal", "sagittal"):
        s[f"ct_ref_{view}"] = np.zeros((8, 8))
        s[f"ct_reg_{view}"] = np.zeros((8, 8))
        s[f"spect_{view}"] = np.ones((8, 8))
        s[f"aspect_{view}"] = 1.0
    fig = registration_figure(s, "time point 2 (24h) registered to time point 1 (rigid; metric -1.355)", metric=-1.355)
    texts = " ".join(t.get_text() for t in fig.texts)
    assert "metric -1.355: the final Mattes mutual information" in texts and "lower = better aligned" in texts
    plain = " ".join(t.get_text() for t in registration_figure(s, "t").texts)
    assert "metric: the final Mattes mutual information" in plain


def test_course_figure_fits_the_page(tmp_path):
    from _course_fixtures import cycle_doc, region, write_cycle

    from rptdose.analysis import course as co
    from rptdose.analysis.course_report import FIGURE_MAX_WIDTH_IN, course_figure, course_html, provenance

    regs = [region(f"organ_{i}", "organ", 1.0 + i, 40.0) for i in range(14)]
    regs += [region("kidney_left", "kidney", 4.0, 50.0), region("tumour_1", "tumour", 25.0, 90.0)]
    paths = [write_cycle(tmp_path / "c1", cycle_doc("2026-03-02T09:00:00", regions=regs)),
             write_cycle(tmp_path / "c2", cycle_doc("2026-04-27T09:00:00", regions=regs))]
    course = co.course_from_paths(paths)
    fig = course_figure(course)
    assert fig.get_size_inches()[0] <= FIGURE_MAX_WIDTH_IN
    page = course_html(course, None, provenance(course, []), "AAAA")
    assert "img{max-width:100%" in page and "pre{white-space:pre-wrap" in page
