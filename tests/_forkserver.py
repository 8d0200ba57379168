"""A fork server for the kill and concurrency tests: it imports rsoup and its heavy dependencies
once, then forks a child per command, so a test can start (and ``kill -9``) dozens of ``rsoup``
processes without paying the interpreter's start and torch's import (seconds each) every time.

A child runs exactly what the ``rsoup`` script runs, ``rsoup_lib.cli.main(argv)``, in its own
process (own pid, own working folder, environment, stdout and stderr files), or a snippet of
Python (``code``). Nothing runs torch in the server before it forks (so no thread pool is
inherited half-made); each child sets one torch thread.

Protocol: one JSON object per line on stdin, one answer per line on stdout.

    {"op": "spawn", "argv": [...] | "code": "...", "cwd": DIR, "env": {...}, "out": FILE, "err": FILE}
        -> {"pid": PID}
    {"op": "wait", "pid": PID}   -> {"status": exit code, or -signal}
"""

from __future__ import annotations

import json
import os
import sys
import traceback

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")


def _preload() -> None:
    import accelerate  # noqa: F401
    import numpy  # noqa: F401
    import safetensors.torch  # noqa: F401
    import torch  # noqa: F401
    import tqdm.auto  # noqa: F401
    import yaml  # noqa: F401
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM  # noqa: F401
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer  # noqa: F401

    import rsoup_lib.cli as cli
    import rsoup_lib.databuild  # noqa: F401
    import rsoup_lib.evaluate  # noqa: F401
    import rsoup_lib.merge_files  # noqa: F401
    import rsoup_lib.rl  # noqa: F401
    import rsoup_lib.sampling  # noqa: F401
    import rsoup_lib.teacher  # noqa: F401
    import rsoup_lib.warp  # noqa: F401

    cli.build_parser()  # imports every command module


def _child(req: dict) -> int:
    os.chdir(req["cwd"])
    os.environ.update(req.get("env", {}))
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    for fd, path in ((1, req["out"]), (2, req["err"])):
        os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
    import torch

    torch.set_num_threads(1)
    try:
        if "code" in req:
            exec(compile(req["code"], "<forkserver child>", "exec"), {"__name__": "__main__"})
            return 0
        from rsoup_lib.cli import main

        return int(main(req["argv"]) or 0)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 1
    except BaseException:
        traceback.print_exc()
        return 1


def serve() -> None:
    _preload()
    print(json.dumps({"ready": os.getpid()}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        if req["op"] == "spawn":
            sys.stdout.flush()
            pid = os.fork()
            if pid == 0:
                status = 1
                try:
                    status = _child(req)
                finally:
                    sys.stdout.flush()
                    sys.stderr.flush()
                    os._exit(status)
            print(json.dumps({"pid": pid}), flush=True)
        elif req["op"] == "wait":
            _, status = os.waitpid(req["pid"], 0)
            code = os.waitstatus_to_exitcode(status)
            print(json.dumps({"status": code}), flush=True)
        else:
            print(json.dumps({"error": f"unknown op {req['op']!r}"}), flush=True)


if __name__ == "__main__":
    serve()
