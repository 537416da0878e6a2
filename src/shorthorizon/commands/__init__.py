"""Command-line commands that are not experiments (``shorthorizon unroll``)."""
