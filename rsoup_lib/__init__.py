"""rsoup: alignment by weight interpolation (Rewarded Soups, WARP, AIHF, group-robust RLHF).

The library behind the book. One concept per module:

- ``profiles``  typed parameter sets (smoke, cpu, gpu) that papermill injects into notebooks
- ``book``      regeneration: jupytext -> papermill -> jupyter-book
- ``cache``     content-addressed cache of trained policies
- ``io``        atomic writes and checksums
- ``models``    loading policies (tiny random, the embedded tiny model, SmolLM2, any HF path)
- ``plots``     plotly helpers shared by the chapters
"""

__version__ = "0.1.0"
