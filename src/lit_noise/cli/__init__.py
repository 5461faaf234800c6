"""Hydra entry points: ``lit-noise-train``, ``lit-noise-eval``, ``lit-noise-report``.

The entry points only instantiate what the config names (``conf/``, shipped as
``lit_noise.conf``); the helpers here check the composed config before anything is built, keep
secrets out of what is logged, own each job's W&B run and write its ``results.json``. Importing
this package imports nothing optional: the console scripts (:mod:`lit_noise.cli.scripts`) check
the ``cli`` extra first and name it when it is missing. The task itself is
:func:`lit_noise.cli.train.run`.
"""
