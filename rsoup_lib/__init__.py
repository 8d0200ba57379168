"""rsoup: alignment by weight interpolation (Rewarded Soups, WARP, AIHF, group-robust RLHF).

The library behind the book. One concept per module:

RL and evaluation

- ``rl``            the KL-regularised RLOO trainer (SFT or EMA anchor, LoRA, exact resume)
- ``runs``          the run folder: config, metrics, checkpoints, snapshots, the final policy
- ``sampling``      seeded KV-cached decoding loop and ``sample_completions`` (teacher, generate, RL, eval)
- ``logprobs``      token log-probabilities without the full log-softmax
- ``rewards``       the proxy rewards (sentiment, readability, conciseness, specificity, tone_fidelity) and weighted sums
- ``text``          words and sentences: the one split every reward, detector and metric counts with
- ``evaluate``      held-out rewards with standard errors, KL to SFT, diversity, samples
- ``hacking``       reward-hacking detectors against the SFT policy
- ``stats``         estimates with standard errors: paired differences and bootstraps over prompts
- ``pareto``        Pareto sets, hypervolume, how far one front lies above another
- ``verdicts``      the verdict rule and the Verdict lines of the chapters

Weight space

- ``merge``         merges as pure functions of state dicts: lerp, slerp of task vectors, LITI
- ``checkpoints``   reading and writing checkpoints (safetensors without torch), for ``rsoup merge``,
  WARP and the chapters
- ``merge_files``   file-to-file merging of model or LoRA adapter folders (what ``rsoup merge`` runs)
- ``front``         a front of merges written in place into one live model
- ``warp``          WARP: EMA-anchored runs, SLERP, LITI, iterations

Models and data

- ``models``        loading policies (tiny random, the shipped ``tiny``, SmolLM2, any HF path)
- ``prompts``       the prompt set and its train/test split
- ``manifest``      ``data/`` (``DATA_DIR``) and the checksums of its artifacts
- ``databuild``     ``rsoup data build``: every artifact of ``data/`` from registry packages
- ``corpus``, ``teacher``, ``bpe``, ``lm_training``   the stages of that pipeline
- ``data_report``   ``rsoup data report``: the data card's measured figures

The book and the machinery

- ``chapter``       what a chapter calls besides the methods: set-up, shown source, samples, verdicts
- ``figures``       plotly figures with the book's layout
- ``book``          regeneration: jupytext -> papermill -> jupyter-book
- ``profiles``      typed parameter sets (smoke, cpu, gpu) and the one place torch threads are set
- ``cache``         content-addressed cache of trained policies
- ``io``            atomic writes and checksums
- ``errors``        errors the user can fix (one line, no traceback)
- ``cli``           the ``rsoup`` command line; one module per subcommand in ``commands/``
"""

__version__ = "0.1.0"
