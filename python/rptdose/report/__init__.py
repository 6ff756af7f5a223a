"""The run report: figures (DVH, dose on CT slices) and one self-contained HTML page.

==========================  ====================================================================
module                      contents
==========================  ====================================================================
``report.figures``          :func:`dvh_figure`, :func:`dose_slices_figure` (matplotlib, Agg canvas)
``report.html``             :func:`render_report`: inputs, region table, figures (base64 PNG),
                            time-activity fits, warnings and provenance on one page
==========================  ====================================================================
"""
