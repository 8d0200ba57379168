"""Kills and concurrency never break a user's work (issue #15, parts 2 and 3).

Kills: ``kill -9`` at seeded random moments during ``rsoup train``, ``rsoup merge``, ``rsoup warp``
and the teacher stage of ``rsoup data build``; then the same command again. The rerun must
finish, and its outputs must equal those of an uninterrupted run (one reference run per command,
shared by its kill points): weights and data files byte for byte, metrics except their timings,
and nothing left behind (no temporary folder, no half-written cache entry).

A kill point is either a delay after the start (uniform over the reference run's duration) or an
event plus a short delay (the n-th metrics line, a checkpoint, the n-th cache entry, the n-th
teacher row). The points come from ``random.Random(f"{SEED}-{command}")``; a failure prints the
seed and the point. Reproduce with ``RSOUP_KILL_SEED=<seed> pytest tests/test_kills.py``.

Concurrency: two processes asking the run cache for the same RL run at once (one trains, the
other waits and reuses; a watcher checks that the cache never shows a half-written entry), and
the same with the training process killed while the other waits (the waiter takes over and
resumes from the killed one's checkpoint).

The processes are children of a fork server (``tests/_forkserver.py``) that has imported rsoup,
torch and transformers once: each child runs ``rsoup_lib.cli.main(argv)`` (what the ``rsoup``
script runs) in its own process, and starting one costs milliseconds instead of the seconds of a
fresh interpreter. ``tests/test_rl.py::test_resume_after_sigkill_gives_the_same_weights`` kills a
fresh interpreter.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
SEED = int(os.environ.get("RSOUP_KILL_SEED", "15"))
TIMING_KEYS = {"seconds", "generate_seconds", "samples_per_s", "created"}


# ----------------------------------------------------------------------------- processes
class Child:
    def __init__(self, server: "ForkServer", pid: int, out: Path, err: Path):
        self.server, self.pid, self.out, self.err = server, pid, out, err
        self.started = time.monotonic()
        self.status: int | None = None

    def alive(self) -> bool:
        """Running (a finished child is a zombie until the server reaps it)."""
        if self.status is not None:
            return False
        try:
            state = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, IndexError):
            return False
        return state != "Z"

    def kill(self) -> bool:
        """SIGKILL; True when the process was still running."""
        landed = self.alive()
        os.kill(self.pid, signal.SIGKILL)
        self.wait()
        return landed

    def wait(self) -> int:
        if self.status is None:
            self.status = self.server.wait(self.pid)
        return self.status

    def stderr(self) -> str:
        return self.err.read_text() if self.err.exists() else ""  # the child creates it


class ForkServer:
    def __init__(self, logs: Path):
        self.logs = logs
        self.n = 0
        env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen([sys.executable, str(REPO / "tests" / "_forkserver.py")], cwd=REPO, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
        assert "ready" in self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the fork server died")
        return json.loads(line)

    def _ask(self, req: dict) -> dict:
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def spawn(self, argv=None, *, code=None, cwd: Path, env: dict) -> Child:
        self.n += 1
        out, err = self.logs / f"{self.n}.out", self.logs / f"{self.n}.err"
        req = {"op": "spawn", "cwd": str(cwd), "env": env, "out": str(out), "err": str(err)}
        req.update({"code": code} if code is not None else {"argv": [str(a) for a in argv]})
        return Child(self, self._ask(req)["pid"], out, err)

    def wait(self, pid: int) -> int:
        return self._ask({"op": "wait", "pid": pid})["status"]

    def run(self, argv=None, **kw) -> Child:
        child = self.spawn(argv, **kw)
        child.wait()
        child.seconds = time.monotonic() - child.started
        assert child.status == 0, f"{argv or kw.get('code')} failed ({child.status}):\n{child.stderr()[-3000:]}"
        return child

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = ForkServer(tmp_path_factory.mktemp("forkserver-logs"))
    yield s
    s.close()


def wait_for(predicate, child: Child, timeout: float = 120.0) -> bool:
    """Poll ``predicate`` until it holds (True) or the child has finished (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if not child.alive():
            return bool(predicate())
        time.sleep(0.005)
    raise TimeoutError("the kill point was never reached")


def kill_at(child: Child, point: tuple, events: dict) -> bool:
    """Wait for the kill point (("delay", s) or (event, n, extra delay)), then SIGKILL; returns
    whether the process was still running when killed."""
    if point[0] == "delay":
        time.sleep(point[1])
    else:
        wait_for(lambda: events[point[0]](point[1]), child)
        time.sleep(point[2])
    return child.kill()


def lines(path: Path) -> int:
    try:
        return path.read_text().count("\n")
    except FileNotFoundError:
        return 0


# ----------------------------------------------------------------------------- comparing outputs
def tree(root: Path) -> dict[str, Path]:
    return {str(p.relative_to(root)): p for p in sorted(root.rglob("*")) if p.is_file()}


def _no_timing(obj):
    if isinstance(obj, dict):
        return {k: _no_timing(v) for k, v in obj.items() if k not in TIMING_KEYS}
    if isinstance(obj, list):
        return [_no_timing(v) for v in obj]
    return obj


def comparable(path: Path, replace: dict[str, str]) -> object:
    """A file's content as compared: bytes, except JSON and JSONL (parsed, timings dropped, the
    folders in ``replace`` renamed)."""
    if path.suffix not in (".json", ".jsonl"):
        return path.read_bytes()
    text = path.read_text()
    for old, new in replace.items():
        text = text.replace(old, new)
    if path.suffix == ".jsonl":
        return [_no_timing(json.loads(l)) for l in text.splitlines()]
    return _no_timing(json.loads(text))


def assert_same_tree(ref: Path, got: Path, where: str, replace: dict[str, str] | None = None) -> None:
    a, b = tree(ref), tree(got)
    assert sorted(a) == sorted(b), f"{where}: files differ: only in the reference {sorted(set(a) - set(b))}, " \
                                   f"only in the rerun {sorted(set(b) - set(a))}"
    for rel in a:
        ra = comparable(a[rel], {str(ref): "<root>", **(replace or {}).get("ref", {})})
        rb = comparable(b[rel], {str(got): "<root>", **(replace or {}).get("got", {})})
        assert ra == rb, f"{where}: {rel} differs from the uninterrupted run"


def assert_no_debris(folder: Path, where: str, allowed=(".locks",)) -> None:
    debris = [p.name for p in folder.iterdir() if p.name.startswith(".") and p.name not in allowed]
    assert not debris, f"{where}: left behind {debris} in {folder}"


def _points(command: str, n: int, duration: float, events: list[tuple], extra: float = 0.2) -> list[tuple]:
    """``n`` kill points for ``command``: alternately a delay in (0.05, 0.75) x ``duration`` and one
    of the ``events`` (name, lowest n, highest n) with an extra delay of up to ``extra`` seconds."""
    rng = random.Random(f"{SEED}-{command}")
    points = []
    for i in range(n):
        if i % 2 == 0 or not events:
            points.append(("delay", round(rng.uniform(0.05, 0.75) * duration, 3)))
        else:
            name, lo, hi = rng.choice(events)
            points.append((name, rng.randint(lo, hi), round(rng.uniform(0.0, extra), 3)))
    return points


def _report(command: str, landed: list, points: list) -> None:
    print(f"[kills] {command}: seed {SEED}, {sum(landed)} of {len(landed)} kill points landed on a running process: "
          + ", ".join(f"{p}{'' if hit else ' (after the end)'}" for p, hit in zip(points, landed)))


# ----------------------------------------------------------------------------- rsoup train
TRAIN = ["train", "--policy", "tiny-random", "--reward", "sentiment:0.5,conciseness:0.5", "--steps", "10",
         "--batch-prompts", "2", "--k", "2", "--max-new-tokens", "6", "--anchor", "ema", "--checkpoint-every", "2",
         "--snapshot-every", "5", "--no-progress", "--out"]  # fmt: skip


@pytest.fixture(scope="module")
def train_reference(server, tmp_path_factory):
    root = tmp_path_factory.mktemp("train-ref")
    child = server.run(TRAIN + [root / "run"], cwd=root, env={"RSOUP_CACHE_DIR": str(root / "cache")})
    return root / "run", child.seconds


def test_train_survives_kill_9(server, train_reference, tmp_path):
    ref, seconds = train_reference
    events = [("metrics", 1, 8), ("checkpoint", 1, 4)]
    points = _points("train", 6, seconds, events, extra=0.05)
    landed = []
    for i, point in enumerate(points):
        out = tmp_path / f"k{i}" / "run"
        out.parent.mkdir()
        checks = {"metrics": lambda n: lines(out / "metrics.jsonl") >= n,
                  "checkpoint": lambda n: (out / "checkpoints" / f"step-{2 * n:06d}").is_dir()}  # fmt: skip
        where = f"seed {SEED}, rsoup train, kill point {i}: {point}"
        env = {"RSOUP_CACHE_DIR": str(tmp_path / "cache")}
        child = server.spawn(TRAIN + [out], cwd=out.parent, env=env)
        landed.append(kill_at(child, point, checks))
        again = server.spawn(TRAIN + [out], cwd=out.parent, env=env)
        assert again.wait() == 0, f"{where}: the rerun failed:\n{again.stderr()[-3000:]}"
        assert_same_tree(ref, out, where)
        assert_no_debris(out.parent, where)
    _report("train", landed, points)
    assert sum(landed) >= len(points) - 1, f"seed {SEED}: too few kills landed: {list(zip(points, landed))}"


# ----------------------------------------------------------------------------- rsoup merge
def _write_model(folder: Path, seed: int) -> None:
    """A sharded model folder big enough (12 x 8 MB) for a merge to take a moment."""
    import numpy as np

    from rsoup_lib.checkpoints import write_safetensors

    folder.mkdir(parents=True)
    g = np.random.default_rng(seed)
    shards = {f"model-0000{i + 1}-of-00002.safetensors": [f"layer{6 * i + j}.weight" for j in range(6)] for i in range(2)}
    weight_map = {}
    for shard, names in shards.items():
        write_safetensors(folder / shard, {n: g.standard_normal((1024, 2048)).astype(np.float32) for n in names}, {})
        weight_map.update({n: shard for n in names})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (folder / "config.json").write_text(json.dumps({"model_type": "toy"}))


@pytest.fixture(scope="module")
def merge_reference(server, tmp_path_factory):
    root = tmp_path_factory.mktemp("merge-ref")
    for name, seed in (("init", 0), ("a", 1), ("b", 2)):
        _write_model(root / name, seed)
    argv = ["merge", "--method", "slerp", "--init", root / "init", "--models", root / "a", root / "b",
            "--lam", "0.3", "--out"]  # fmt: skip
    server.run(argv + [root / "warm-up" / "out"], cwd=root, env={})  # the first run pays for cold files
    child = server.run(argv + [root / "ref" / "out"], cwd=root, env={})
    # The kill delays are fractions of this duration: the faster of two timed runs, so that one run
    # slowed by the machine (a CI run once measured over 0.53 s for a merge that then finished within
    # 0.32 s, and two kill points fell after the end) does not push the delays past the merge.
    again = server.run(argv + [root / "timing" / "out"], cwd=root, env={})
    return argv, root / "ref" / "out", min(child.seconds, again.seconds)


def test_merge_survives_kill_9(server, merge_reference, tmp_path):
    argv, ref, seconds = merge_reference
    # events: the output's temporary folder has appeared (the merge is writing)
    points = _points("merge", 5, seconds, [("writing", 1, 1)], extra=0.3 * seconds)
    landed = []
    for i, point in enumerate(points):
        out = tmp_path / f"k{i}" / "out"
        out.parent.mkdir()
        where = f"seed {SEED}, rsoup merge, kill point {i}: {point}"
        checks = {"writing": lambda n: any(out.parent.glob(".tmp-out-*"))}
        landed.append(kill_at(server.spawn(argv + [out], cwd=tmp_path, env={}), point, checks))
        again = server.spawn(argv + [out], cwd=tmp_path, env={})
        assert again.wait() == 0, f"{where}: the rerun failed:\n{again.stderr()[-3000:]}"
        assert_same_tree(ref, out, where)
        assert_no_debris(out.parent, where)
    _report("merge", landed, points)
    assert sum(landed) >= len(points) - 1, f"seed {SEED}: too few kills landed: {list(zip(points, landed))}"


# ----------------------------------------------------------------------------- rsoup warp
WARP_CONFIG = """\
m: 2
iterations: 2
eta: 0.3
front_etas: [0.0, 1.0]
eval_prompts: 4
eval_max_new_tokens: 4
rl:
  policy: tiny-random
  steps: 4
  batch_prompts: 2
  k: 2
  max_new_tokens: 4
  beta: 0.1
  checkpoint_every: 2
"""


@pytest.fixture(scope="module")
def warp_reference(server, tmp_path_factory):
    root = tmp_path_factory.mktemp("warp-ref")
    (root / "warp.yaml").write_text(WARP_CONFIG)
    argv = ["warp", "--config", root / "warp.yaml", "--out"]
    child = server.run(argv + [root / "out"], cwd=root, env={"RSOUP_CACHE_DIR": str(root / "cache")})
    return argv, root, child.seconds


def _cache_entries(cache: Path) -> int:
    return sum(1 for p in cache.glob("*/cache_entry.json")) if cache.is_dir() else 0


def test_warp_survives_kill_9(server, warp_reference, tmp_path):
    argv, ref_root, seconds = warp_reference
    points = _points("warp", 5, seconds, [("entries", 1, 5), ("partial-checkpoint", 1, 1)])
    landed = []
    for i, point in enumerate(points):
        root = tmp_path / f"k{i}"
        root.mkdir()
        cache = root / "cache"
        checks = {"entries": lambda n: _cache_entries(cache) >= n,
                  "partial-checkpoint": lambda n: any(cache.glob(".partial-*/checkpoints/step-*"))}  # fmt: skip
        where = f"seed {SEED}, rsoup warp, kill point {i}: {point}"
        env = {"RSOUP_CACHE_DIR": str(cache)}
        landed.append(kill_at(server.spawn(argv + [root / "out"], cwd=root, env=env), point, checks))
        again = server.spawn(argv + [root / "out"], cwd=root, env=env)
        assert again.wait() == 0, f"{where}: the rerun failed:\n{again.stderr()[-3000:]}"
        replace = {"ref": {str(ref_root / "cache"): "<cache>"}, "got": {str(cache): "<cache>"}}
        assert_same_tree(ref_root / "out", root / "out", where, replace)
        assert_same_tree(ref_root / "cache", cache, where + " (run cache)", replace)
        assert_no_debris(root, where)
        assert_no_debris(cache, where)
    _report("warp", landed, points)
    assert sum(landed) >= len(points) - 1, f"seed {SEED}: too few kills landed: {list(zip(points, landed))}"


# ----------------------------------------------------------------------------- rsoup data build (teacher)
TEACHER = ["data", "build", "--small", "--only", "teacher", "--out"]


@pytest.fixture(scope="module")
def teacher_reference(server, tmp_path_factory):
    """A data folder with the prompts only (the teacher's input), and the teacher run on a copy."""
    root = tmp_path_factory.mktemp("teacher-ref")
    server.run(["data", "build", "--small", "--only", "prompts", "--out", root / "prompts-only"], cwd=root, env={})
    shutil.copytree(root / "prompts-only", root / "ref")
    child = server.run(TEACHER + [root / "ref"], cwd=root, env={})
    return root, child.seconds


def test_teacher_stage_survives_kill_9(server, teacher_reference, tmp_path):
    root, seconds = teacher_reference
    points = _points("teacher", 5, seconds, [("heldout", 1, 16), ("train", 1, 16)], extra=0.03)
    landed = []
    for i, point in enumerate(points):
        data = tmp_path / f"k{i}" / "data"
        shutil.copytree(root / "prompts-only", data)
        checks = {"heldout": lambda n: lines(data / "teacher" / "heldout.jsonl") >= n,
                  "train": lambda n: lines(data / "teacher" / "train.jsonl") >= n}  # fmt: skip
        where = f"seed {SEED}, rsoup data build (teacher), kill point {i}: {point}"
        landed.append(kill_at(server.spawn(TEACHER + [data], cwd=data.parent, env={}), point, checks))
        again = server.spawn(TEACHER + [data], cwd=data.parent, env={})
        assert again.wait() == 0, f"{where}: the rerun failed:\n{again.stderr()[-3000:]}"
        assert_same_tree(root / "ref", data, where)
        assert_no_debris(data / "teacher", where)
    _report("teacher", landed, points)
    assert sum(landed) >= len(points) - 1, f"seed {SEED}: too few kills landed: {list(zip(points, landed))}"


# ----------------------------------------------------------------------------- concurrency: the run cache
CACHED_TRAIN = """
from rsoup_lib.rl import RLConfig, cached_train
cfg = RLConfig(policy="tiny-random", steps=8, batch_prompts=2, k=2, max_new_tokens=6, checkpoint_every=2)
print(cached_train(cfg, progress=False))
"""


def _watch_cache(cache: Path, children: list[Child]) -> int:
    """Until every child has finished, check that each visible cache entry is complete (a folder
    without its entry file would be a half-written entry); returns how many listings it took."""
    looks = 0
    while any(c.alive() for c in children):
        if cache.is_dir():
            for entry in cache.iterdir():
                if not entry.name.startswith("."):
                    assert (entry / "cache_entry.json").is_file(), f"half-written cache entry {entry.name}"
        looks += 1
        time.sleep(0.002)
    return looks


def test_two_processes_train_the_same_config_once(server, tmp_path):
    env = {"RSOUP_CACHE_DIR": str(tmp_path / "cache")}
    a = server.spawn(code=CACHED_TRAIN, cwd=tmp_path, env=env)
    b = server.spawn(code=CACHED_TRAIN, cwd=tmp_path, env=env)
    looks = _watch_cache(tmp_path / "cache", [a, b])
    assert a.wait() == 0 and b.wait() == 0, a.stderr()[-2000:] + b.stderr()[-2000:]
    paths = {a.out.read_text().strip(), b.out.read_text().strip()}
    assert len(paths) == 1 and looks > 10
    waited = ["waiting for it" in c.stderr() for c in (a, b)]
    assert sorted(waited) == [False, True], "exactly one process trains; the other waits for it"
    entry = Path(paths.pop())
    assert len((entry / "metrics.jsonl").read_text().splitlines()) == 8  # trained once
    assert_no_debris(tmp_path / "cache", "two cached_train processes")


def test_a_waiting_process_takes_over_from_a_killed_one(server, tmp_path):
    """kill -9 the process that trains while another waits for it: the waiter takes the lock,
    resumes from the killed one's last checkpoint and writes the entry an uninterrupted run
    writes."""
    env = {"RSOUP_CACHE_DIR": str(tmp_path / "cache")}
    code = CACHED_TRAIN.replace("steps=8", "steps=30")  # long enough to be killed after step 4
    ref = server.run(code=code, cwd=tmp_path, env={"RSOUP_CACHE_DIR": str(tmp_path / "ref-cache")})
    a = server.spawn(code=code, cwd=tmp_path, env=env)
    assert wait_for(lambda: any((tmp_path / "cache").glob(".partial-*/checkpoints/step-000004")), a)
    b = server.spawn(code=code, cwd=tmp_path, env=env)
    wait_for(lambda: "waiting for it" in b.stderr(), b)
    killed_rows = next((tmp_path / "cache").glob(".partial-*/metrics.jsonl")).read_text().splitlines()[:4]
    assert a.kill(), "the training process finished before it could be killed"
    assert b.wait() == 0, b.stderr()[-3000:]
    entry, ref_entry = Path(b.out.read_text().strip()), Path(ref.out.read_text().strip())
    assert entry.name == ref_entry.name
    # resumed, not restarted: the rows before the checkpoint are the killed process's, timings and all
    assert (entry / "metrics.jsonl").read_text().splitlines()[:4] == killed_rows
    assert_same_tree(ref_entry, entry, "waiter after the trainer was killed")
    assert_no_debris(tmp_path / "cache", "waiter after the trainer was killed")


# ----------------------------------------------------------------------------- rsoup book
BOOK = ["book", "--profile", "smoke", "--only", "00_setup", "--no-html", "--build-dir"]
# The cpu profile (the shipped tiny model; its teacher skipped and short samples, to be quick),
# built at the same time as the smoke profile.
OTHER_PROFILE = ["book", "--profile", "cpu", "--only", "00_setup", "--no-html", "-p", 'teacher=""',
                 "-p", "max_new_tokens=4", "-p", "threads=1", "--build-dir"]  # fmt: skip


def _notebook_shape(path: Path, executed: bool = True) -> list:
    """What a notebook of the build must share with the uninterrupted build's: every cell's
    source, and the kinds of its outputs (their values hold wall-clock timings and random plot
    ids, and cell ids are random)."""
    nb = json.loads(path.read_text())
    if executed:
        assert nb["metadata"]["papermill"]["exception"] in (None, False), f"{path} holds an error"
        status = {c["metadata"].get("papermill", {}).get("status") for c in nb["cells"]}
        assert status == {"completed"}, f"{path}: not every cell ran ({status})"
    return [(c["cell_type"], c["source"], [(o["output_type"], sorted(o.get("data", {}))) for o in c.get("outputs", [])])
            for c in nb["cells"]]  # fmt: skip


def _kernels_of(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (a build's Jupyter kernel)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                children.append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            pass
    return children


@pytest.fixture(scope="module")
def book_reference(server, tmp_path_factory):
    """The uninterrupted smoke build of 00_setup, built while another profile builds the same
    notebook (part 3: two builds of different profiles do not clobber each other)."""
    root = tmp_path_factory.mktemp("book-ref")
    env = {"RSOUP_CACHE_DIR": str(root / "cache")}
    ref = server.spawn(BOOK + [root / "ref"], cwd=REPO, env=env)
    other = server.spawn(OTHER_PROFILE + [root / "other"], cwd=REPO, env=env)
    assert other.wait() == 0, other.stderr()[-3000:]
    assert ref.wait() == 0, ref.stderr()[-3000:]
    return root, time.monotonic() - ref.started


def test_two_book_builds_of_different_profiles_at_once(book_reference):
    root, _ = book_reference
    notebook = "src/notebooks/00_setup.ipynb"
    for build, profile in (("ref", "smoke"), ("other", "cpu")):
        nb = json.loads((root / build / notebook).read_text())
        assert nb["metadata"]["papermill"]["parameters"]["profile"] == profile
        assert _notebook_shape(root / build / notebook)
    for folder in (REPO / "notebooks", root / "ref" / "src" / "notebooks", root / "other" / "src" / "notebooks"):
        assert_no_debris(folder, "two book builds")


def test_book_survives_kill_9(server, book_reference, tmp_path):
    root, seconds = book_reference
    points = [("delay", round(random.Random(f"{SEED}-book-{i}").uniform(0.1, 0.6) * seconds, 3)) for i in range(2)]
    landed = []
    for i, point in enumerate(points):
        build = tmp_path / f"k{i}"
        where = f"seed {SEED}, rsoup book, kill point {i}: {point}"
        env = {"RSOUP_CACHE_DIR": str(tmp_path / "cache")}
        child = server.spawn(BOOK + [build], cwd=REPO, env=env)
        time.sleep(point[1])
        kernels = _kernels_of(child.pid)
        landed.append(child.kill())
        deadline = time.monotonic() + 30  # a kernel notices its build is gone and exits
        while any(Path(f"/proc/{k}").exists() for k in kernels) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [k for k in kernels if Path(f"/proc/{k}").exists()], f"{where}: the kernel outlived its build"
        again = server.spawn(BOOK + [build], cwd=REPO, env=env)
        assert again.wait() == 0, f"{where}: the rerun failed:\n{again.stderr()[-3000:]}"
        ref_files, got_files = tree(root / "ref"), tree(build)
        assert sorted(ref_files) == sorted(got_files), f"{where}: files differ"
        for rel, path in ref_files.items():
            if rel.endswith(".ipynb"):
                executed = "00_setup" in rel
                assert _notebook_shape(path, executed) == _notebook_shape(got_files[rel], executed), \
                    f"{where}: {rel} differs"
            elif rel.endswith("notebook_seconds.json"):  # a timing record: the same notebooks, other times
                assert json.loads(path.read_text()).keys() == json.loads(got_files[rel].read_text()).keys(), \
                    f"{where}: {rel} records other notebooks"
            else:
                assert path.read_bytes() == got_files[rel].read_bytes(), f"{where}: {rel} differs"
        assert_no_debris(build / "src" / "notebooks", where)
        assert_no_debris(REPO / "notebooks", where)
    _report("book", landed, points)
    assert sum(landed) == len(points), f"seed {SEED}: a kill came after the build: {list(zip(points, landed))}"
