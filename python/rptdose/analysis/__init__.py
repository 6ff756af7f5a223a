"""Analysis of dose maps: comparisons (difference maps, gamma index, DVH, per-region means,
Bland-Altman), DVHs and region statistics.

Modules (imported on use, so ``import rptdose`` stays light):

==========================  ====================================================================
module                      contents
==========================  ====================================================================
``analysis.compare``        :func:`compare` (public as ``rd.compare``) and :class:`Comparison`
``analysis.gamma``          :func:`gamma_index`: global / local 3-D gamma index
``analysis.dvh``            :func:`cumulative_dvh`, :func:`dvh_metrics`
``analysis.regions``        region masks in every accepted form -> ``{name: bool mask}``
``analysis.doseio``         dose maps from rptdose results, NIfTI / MetaImage, DICOM RT Dose
==========================  ====================================================================
"""
