"""The comparison layer: JAX (`functional_fit`) and torch (`parity`) side by side.

It sits on top of both sides, and nothing below it imports it:

- `lecture`  every step of the lecture in both frameworks (``functional-fit lecture``);
- `report`   the parity matrix, model x loss x optimizer x dtype (``functional-fit parity``);
- `figures`  the lecture's figure set, which runs fits and surfaces, drawn by
  `functional_fit.plot`;
- `background` one part of the comparison in a second process (the JAX side, and four of
  the figures) while torch's loops run in the first, where more than two cores make it pay;
- `handout`  the lecture as one self-contained HTML page: each step's torch and JAX code side
  by side, results and figures (``functional-fit lecture --out DIR`` / ``--html FILE``).

The command line (`functional_fit_cli`) is a thin layer over these and the two libraries.
"""
