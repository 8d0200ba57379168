"""``rsoup merge``: merge checkpoint folders in weight space, file to file.

The work is ``rsoup_lib.merge_files.merge_folders``; this module only turns flags into its
arguments. The method flags (--weights, --lam, --eta, --granularity) are built from the
parameters each method declares in ``rsoup_lib.merge.METHODS`` and checked there, so a flag
given to a method that does not take it is refused by the registry. Nothing heavy is imported
before ``run``: ``rsoup_lib.merge`` imports neither numpy nor torch at import time.
"""

from __future__ import annotations

from rsoup_lib.merge import LORA_MODES, METHODS

HELP = "merge checkpoints in weight space: lerp (rewarded soups), slerp of task vectors, liti"


def _methods_text() -> str:
    lines = []
    for m in METHODS.values():
        lines.append(f"  {m.name:<6} {m.summary}")
        lines += [f"         --{p.name.replace('_', '-')}: {p.help}" for p in m.params]
    return "\n".join(lines)


DESCRIPTION = f"""\
Merge Hugging Face model folders (safetensors) or peft LoRA adapter folders trained from the
same init, and write the result as a folder that transformers (or peft) loads directly.

methods:
{_methods_text()}

LoRA adapters: --lora-mode delta (default) merges the weight deltas s B A and writes a full model
(base from --init); --lora-mode ab averages A and B separately (lerp only) and writes an adapter.

Checkpoints with different tensor names or shapes are refused before anything is written.

examples:
  rsoup merge --method lerp --models runs/sentiment runs/concise --weights 0.3 0.7 --out runs/soup
  rsoup merge --method slerp --init runs/sft --models runs/a runs/b --lam 0.5 --out runs/slerp
  rsoup merge --method liti --init runs/sft --models runs/slerp --eta 0.3 --out runs/liti
  rsoup merge --method lerp --init base/ --models lora_a lora_b --weights 0.5 0.5 --out soup_model
  rsoup merge --method lerp --models lora_a lora_b --lora-mode ab --out soup_adapter
"""


def _method_params() -> dict:
    """``{parameter name: (Param, [methods that declare it])}``, in the registry's order."""
    params: dict = {}
    for m in METHODS.values():
        for param in m.params:
            params.setdefault(param.name, (param, []))[1].append(m.name)
    return params


def add_arguments(p) -> None:
    p.add_argument("--method", required=True, choices=list(METHODS))
    needs_init = ", ".join(m.name for m in METHODS.values() if m.needs_init)
    p.add_argument("--init", default=None, metavar="DIR", help=f"theta_init (required by {needs_init}, and LoRA delta mode: the base model)")
    p.add_argument("--models", required=True, nargs="+", metavar="DIR", help="the fine-tuned model or adapter folders")
    for name, (param, methods) in _method_params().items():
        flag_help = f"{', '.join(methods)}: {param.help}"
        p.add_argument(f"--{name.replace('_', '-')}", type=param.type, nargs=param.nargs, choices=param.choices, help=flag_help)
    p.add_argument("--lora-mode", choices=LORA_MODES, default="delta", help="adapters: merge B A deltas (default) or average A, B")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (written atomically)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")


def run(args) -> int:
    import time

    from rsoup_lib.merge_files import merge_folders

    t0 = time.perf_counter()
    given = {name: getattr(args, name) for name in _method_params()}
    summary = merge_folders(
        args.method,
        args.models,
        args.out,
        init=args.init,
        lora_mode=args.lora_mode,
        overwrite=args.overwrite,
        **{k: v for k, v in given.items() if v is not None},
    )
    print(
        f"wrote {summary['out']} ({summary['kind']}, {summary['tensors']} tensors, "
        f"{summary['bytes'] / 1e6:.1f} MB) in {time.perf_counter() - t0:.2f} s"
    )
    return 0
