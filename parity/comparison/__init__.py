"""Old name of `comparison`, the layer that runs JAX and torch side by side.

It moved out of `parity` (the torch mirror) into a package of its own. Each module here is the
module of `comparison` with the same name (``parity.comparison.lecture is
comparison.lecture``), so old imports keep working; new code imports `comparison`.
"""
