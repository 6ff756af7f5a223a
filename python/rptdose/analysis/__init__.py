"""Analysis of dose maps: comparisons (difference maps, gamma index, DVH, per-region means,
Bland-Altman), DVHs and region statistics, radiobiology (BED, EQD2) and courses of cycles.

Modules (imported on use, so ``import rptdose`` stays light):

==========================  ====================================================================
module                      contents
==========================  ====================================================================
``analysis.compare``        :func:`compare` (public as ``rd.compare``) and :class:`Comparison`
``analysis.gamma``          :func:`gamma_index`: global / local 3-D gamma index
``analysis.dvh``            :func:`cumulative_dvh`, :func:`dvh_metrics`
``analysis.regions``        region masks in every accepted form -> ``{name: bool mask}``
``analysis.doseio``         dose maps from rptdose results, NIfTI / MetaImage, DICOM RT Dose
``analysis.radiobiology``   BED with incomplete repair (:func:`bed`, public as ``rd.bed``), EQD2,
                            the G factor, the tissue parameter table
``analysis.course``         cycles' ``regions.json``, cumulative dose and BED against organ limits,
                            next-cycle activity planning
``analysis.course_report``  ``course.html``, ``course.json`` and the tables of a course / plan
==========================  ====================================================================
"""
