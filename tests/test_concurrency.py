"""Two book builds at once (issue #15, part 3): reading a notebook's parameters must not go
through a file that another build writes or deletes at the same moment. (Two processes sharing
the run cache, and two whole builds, are in tests/test_kills.py, which runs real processes.)"""

from concurrent.futures import ThreadPoolExecutor

from rsoup_lib.book import REPO_ROOT, declared_parameters, notebook_parameters
from rsoup_lib.profiles import PROFILES


def test_parameters_of_two_profiles_read_at_once():
    notebook = REPO_ROOT / "notebooks" / "00_setup.py"
    before = sorted(p.name for p in notebook.parent.iterdir())
    expected = {name: notebook_parameters(notebook, PROFILES[name]) for name in ("smoke", "cpu")}
    jobs = [("smoke", "cpu")[i % 2] for i in range(8)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        got = list(pool.map(lambda name: (name, notebook_parameters(notebook, PROFILES[name])), jobs))
        declared = list(pool.map(lambda _: declared_parameters(notebook), range(4)))
    assert all(params == expected[name] for name, params in got)
    assert expected["smoke"]["profile"] == "smoke" and expected["cpu"]["profile"] == "cpu"
    assert all(d == declared[0] for d in declared)
    assert sorted(p.name for p in notebook.parent.iterdir()) == before  # no temporary file left there
