"""The comparison layer: JAX (`functional_fit`) and torch (`parity`) side by side.

The third of the project's four layers: it sits on both sides, and nothing below it imports it
(``parity.compare`` is `compare.compare` under the name users know, loaded on first use).

- `lecture`  every step of the lecture in both frameworks (``functional-fit lecture``);
- `report`   the parity matrix, model x loss x optimizer x dtype (``functional-fit parity``);
- `figures`  the lecture's figure set, which runs fits and surfaces, drawn by
  `functional_fit.plot`;
- `background` one part of the comparison in a second process (the JAX side, and four of
  the figures) while torch's loops run in the first, where more than two cores make it pay;
- `handout`  the lecture as one self-contained HTML page: each step's torch and JAX code side
  by side, results and figures, and the lecture's torch model beside the jaxpr of its export
  (``functional-fit lecture --out DIR`` / ``--html FILE``), with code tabs and turning surfaces
  (its script ``handout.js``);
- `explorer` the page's optimizer explorer: six optimizers' paths in both frameworks, compared
  and packed as page data, and its section (its script ``explorer.js``);
- `browser`  headless Chromium, found, and the page printed to PDF
  (``functional-fit handout --print``);
- `compare`  `parity.compare`: your own torch module against your own JAX function, step by
  step, with the layer of the port to blame;
- `layers`   each layer's output, and the loss's gradient with respect to it, JAX's against
  torch's (what `compare` records layer by layer);
- `problems` the optimizer problems in both frameworks, which the atlas and the optimizer
  tests run.
- `testing`  ``parity.testing.assert_same_training``: `compare` as an assertion whose message
  is the report, for a project's own tests;
- `pytest_plugin` pytest's ``--parity-report DIR`` (the ``pytest11`` entry point): each failing
  comparison's table and plot, written to DIR;
- `exercises` the exercises' checker (`notebooks/exercises.py`): a student's function against
  torch and the toolkit, with the failing input, both values and a hint.

The command line (`functional_fit_cli`) is a thin layer over these and the two libraries.
"""
