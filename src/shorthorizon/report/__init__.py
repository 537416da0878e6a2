"""Figures and the reproduction report, from saved results only.

``document``: ``report.md`` (the claims table, then one section per experiment); ``claims``: the
claims and their verdicts; ``figures``: drawing helpers shared by the experiments' figures; one
module per experiment whose figures and section outgrow it (``estimators``, ``offline``, ``online``).
"""
