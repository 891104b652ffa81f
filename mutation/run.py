"""Mutation testing of the modules whose tests must pin exact behaviour, one module at a time.

Why a wrapper: mutmut (3.x) reads one ``[tool.mutmut]`` table from the ``pyproject.toml`` of the
directory it runs in, and runs one test selection for everything it mutates. Each module here has
its own test subset (mutating the codec and running the guard tests only costs time), so this
script lays out a work directory per module under ``mutation/work/<name>/`` (symlinks to the
sources and tests, and a pyproject.toml holding only that module's mutmut settings) and runs
mutmut there: the modules' results never mix, and a module can be run again on its own.

    python mutation/run.py --list            # the modules and their test subsets
    python mutation/run.py limits            # mutate router/limits.py, run its tests per mutant
    python mutation/run.py limits --results  # survivors of the last run (mutmut results)
    python mutation/run.py limits --show NAME  # the diff of one mutant
    python mutation/run.py limits --fresh    # run every mutant again (after adding tests)
    python mutation/run.py limits --survivors  # run the last run's survivors not judged equivalent again
    python mutation/run.py repair --quick    # a first pass without the module's slow property tests
    python mutation/run.py limits --report   # killed, survived, judged equivalent, the score over the rest
    python mutation/run.py limits --draft    # the unjudged survivors, as entries to judge

Survivors that no test can tell from the original (equivalent mutants) are judged by hand in
``mutation/equivalent/<module>.md``, each with the line the mutant has and a one-line reason; the
report computes the score over the other mutants, lists every survivor not judged, and flags a
judgement whose mutant no longer has the recorded line (the code moved: judge it again).

One worker (``--max-children 1``) by default: the suite's own tests bind ephemeral ports and the
machine is shared. Not part of CI (a module takes minutes to tens of minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "mutation" / "work"
EQUIVALENT = ROOT / "mutation" / "equivalent"

# name -> (files to mutate, the tests that must catch the mutants)
MODULES: dict[str, tuple[list[str], list[str]]] = {
    "evaluate": (["dsl/evaluate.py"], ["tests/dsl/test_evaluate.py", "tests/dsl/test_evaluate_conditions.py",
                                       "tests/dsl/test_evaluate_plan.py"]),
    "compile": (["dsl/compile.py"], ["tests/dsl/test_compile_arguments.py", "tests/dsl/test_golden.py",
                                     "tests/dsl/test_roundtrip.py", "tests/dsl/test_evaluate.py"]),
    "loop": (["router/guards/loop.py"], ["tests/guards/test_loop.py", "tests/guards/test_loop_boundaries.py"]),
    "repair": (["router/guards/repair.py", "router/guards/json_extent.py", "router/guards/call_patterns.py"],
               ["tests/guards/test_repair.py", "tests/guards/test_repair_edges.py", "tests/guards/test_repair_checks.py",
                "tests/guards/test_json_extent.py", "tests/guards/test_call_patterns.py"]),
    "limits": (["router/limits.py"], ["tests/router/test_limiter.py", "tests/backends/test_limits.py"]),
    # The codec's hypothesis properties (fast path == general path, round trips, the text-chunk
    # trick: ~40 s per surviving mutant on a loaded machine) are left out by node id; their
    # mutants are pinned by the example tables of test_openai_fast_path_boundaries.py instead.
    "openai": (["router/wire/openai.py"], [
        "tests/wire/test_openai_rare_fields.py", "tests/wire/test_openai_files_and_custom_tools.py",
        "tests/wire/test_openai_fast_path_boundaries.py", "tests/wire/test_openai_tools_and_encoding.py",
        "tests/wire/test_openai_streams.py", "tests/wire/test_wire_golden.py",
        "tests/wire/test_wire_roundtrip.py::test_response_round_trip", "tests/wire/test_wire_roundtrip.py::test_stream_round_trip",
        "tests/wire/test_codec.py", "tests/wire/test_encoder_options.py",
        "tests/wire/test_wire_fast_paths.py::test_fast_path_is_taken_for_the_common_shape",
        "tests/wire/test_wire_fast_paths.py::test_response_fast_path_is_taken_for_a_plain_reply",
        "tests/wire/test_openai_stream_text.py::test_a_new_stream_start_resets_the_envelope",
        "tests/wire/test_openai_stream_text.py::test_text_before_any_start_uses_the_defaults"]),
}

# Slow property tests a first pass may leave out (``--quick``): they re-check, at random splits and
# prefixes, what the deterministic every-split tests check at every split point, and cost most of
# the subset's time. A ``--survivors`` run afterwards (without ``--quick``) runs them against the
# survivors: mutmut finds them as new tests, so the end result is the whole subset's.
SLOW: dict[str, list[str]] = {
    "repair": ["tests/guards/test_repair.py::test_arbitrary_prefix_text_is_split_invariant",
               "tests/guards/test_repair.py::test_random_multi_splits"],
}

LINKED = ["dsl", "router", "backends", "schemas", "tests", "routes.d", "config.yaml", "README.md"]


def pyproject(mutate: list[str], tests: list[str]) -> str:
    def toml_list(items: list[str]) -> str:
        return "[" + ", ".join(f'"{i}"' for i in items) + "]"

    base = (ROOT / "pyproject.toml").read_text()
    pytest_table = base[base.index("[tool.pytest.ini_options]"):]
    return (f"{pytest_table.rstrip()}\n\n[tool.mutmut]\n"
            f"source_paths = {toml_list(['dsl', 'router', 'backends', 'schemas'])}\n"
            f"only_mutate = {toml_list(mutate)}\n"
            f"pytest_add_cli_args_test_selection = {toml_list(tests)}\n"
            f"pytest_add_cli_args = {toml_list(['-p', 'no:cacheprovider'])}\n")


def prepare(name: str, tests_instead: list[str] | None = None) -> Path:
    """The module's work directory; with ``tests_instead`` (e.g. the tests before a change, to
    compare scores) a separate one, ``<name>-other``."""
    mutate, tests = MODULES[name]
    work = WORK / (name if tests_instead is None else f"{name}-other")
    tests = tests_instead or tests
    work.mkdir(parents=True, exist_ok=True)
    for entry in LINKED:
        link = work / entry
        if not link.exists() and not link.is_symlink():
            link.symlink_to(ROOT / entry)
    (work / "pyproject.toml").write_text(pyproject(mutate, tests))
    return work


def survivors(work: Path) -> list[str]:
    """Names of the mutants the last run in ``work`` left alive (or that no test reached)."""
    listing = subprocess.run([sys.executable, "-m", "mutmut", "results"], cwd=work, capture_output=True, text=True)
    return [line.split(":")[0].strip() for line in listing.stdout.splitlines()
            if line.rstrip().endswith((": survived", ": no tests"))]


def statuses(name: str, work: Path) -> dict[str, str]:
    """mutant name -> mutmut's status of the last run ("killed", "survived", "not checked", ...),
    read from the run's own records (``mutants/<file>.meta``)."""
    from mutmut.stats import status_by_exit_code

    out: dict[str, str] = {}
    for source in MODULES[name][0]:
        meta = work / "mutants" / (source + ".meta")
        if meta.exists():
            codes = json.loads(meta.read_text())["exit_code_by_key"]
            out.update({key: status_by_exit_code[code] for key, code in codes.items()})
    return out


def mutated_line(work: Path, mutant: str) -> str:
    """What the mutant has instead of the original: its changed lines, stripped, joined by " ⏎ "."""
    from mutmut.mutation.diff_apply import find_mutant, get_diff_for_mutant

    cwd = os.getcwd()
    os.chdir(work)
    try:
        diff = get_diff_for_mutant(mutant, path=find_mutant(mutant).path)
    finally:
        os.chdir(cwd)
    lines = diff.splitlines()
    added = [line[1:].strip() for line in lines if line.startswith("+") and not line.startswith("+++")]
    if added:
        return " ⏎ ".join(added)
    return "(removed) " + " ⏎ ".join(line[1:].strip() for line in lines if line.startswith("-") and not line.startswith("---"))


@dataclass
class Judgement:
    mutant: str
    line: str  # the mutated line when judged
    reason: str
    at_import: bool  # under "## Run at import": not equivalent, but no test run can switch it on
    not_tested: bool = False  # under "## Not tested": not equivalent, left on purpose; stays in the score


def judgements(name: str) -> dict[str, Judgement]:
    """The module's judged survivors: entries of ``mutation/equivalent/<name>.md``::

        - `<mutant name>`
          `<the mutant's changed line>`
          <why no test can tell it from the original>

    Entries under a heading ``## Run at import`` are mutants of code that runs once when the module
    is imported (tables built by helper calls): mutmut switches a mutant on per test run, after the
    import, so no test can reach them. They are listed apart, not called equivalent. Entries under
    ``## Not tested`` are real differences left without a test on purpose (the reason says why):
    judged, so not listed as open, but counted in the score as survivors.
    """
    path = EQUIVALENT / f"{name}.md"
    if not path.exists():
        return {}
    out: dict[str, Judgement] = {}
    entry: list[str] = []
    at_import = not_tested = False

    def close() -> None:
        one_line = re.match(r"- `([^`]+)`: (.+)", entry[0]) if entry else None
        if one_line:  # ``- `<mutant>`: <reason>``: judged without the line (not checked for staleness)
            out[one_line.group(1)] = Judgement(one_line.group(1), "", one_line.group(2), at_import, not_tested)
        elif len(entry) >= 3:
            mutant = entry[0][3:].rstrip().rstrip("`")
            out[mutant] = Judgement(mutant, entry[1].strip()[1:-1], " ".join(e.strip() for e in entry[2:]), at_import,
                                    not_tested)

    for line in [*path.read_text().splitlines(), ""]:
        if line.startswith("- `") or not line.strip() or line.startswith("#"):
            close()
            entry = [line] if line.startswith("- `") else []
            if line.startswith("## "):
                at_import = line[3:].strip().lower() == "run at import"
                not_tested = line[3:].strip().lower() == "not tested"
        elif entry:
            entry.append(line)
    return out


CAUGHT = ("killed", "timeout")
ALIVE = ("survived", "no tests")


def report(name: str, work: Path, draft: bool = False) -> int:
    """Counts, the score over non-equivalent mutants, and every survivor not judged equivalent."""
    status = statuses(name, work)
    if not status:
        print(f"{name}: no run yet (python mutation/run.py {name})")
        return 1
    judged = judgements(name)
    counts: dict[str, int] = {}
    for s in status.values():
        counts[s] = counts.get(s, 0) + 1
    alive = sorted(m for m, s in status.items() if s in ALIVE)
    equivalent, at_import, stale, open_, not_tested = [], [], [], [], []
    for mutant in alive:
        j = judged.get(mutant)
        if j is None:
            open_.append(mutant)
        elif j.line and mutated_line(work, mutant) != j.line:
            stale.append(mutant)
        else:
            (at_import if j.at_import else not_tested if j.not_tested else equivalent).append(mutant)
    caught = sum(counts.get(s, 0) for s in CAUGHT)
    other = {s: n for s, n in counts.items() if s not in CAUGHT + ALIVE}
    scored = caught + len(open_) + len(stale) + len(not_tested) + sum(n for s, n in other.items() if s != "not checked")
    if draft:
        for mutant in open_ + stale:
            print(f"- `{mutant}`\n  `{mutated_line(work, mutant)}`\n  REASON\n")
        return 0
    print(f"{name}: {len(status)} mutants, {caught} killed, {len(alive)} survived ({len(equivalent)} judged "
          f"equivalent, {len(at_import)} run at import, out of mutmut's reach"
          + (f", {len(not_tested)} not tested on purpose, counted as survived" if not_tested else "") + ")"
          + "".join(f", {n} {s}" for s, n in sorted(other.items())))
    print(f"{name}: {scored} non-equivalent, {caught} caught, "
          f"{100 * caught / scored if scored else 100:.1f}%" + (" (run not finished)" if "not checked" in other else ""))
    for mutant in stale:
        print(f"  stale judgement (the mutant now has {mutated_line(work, mutant)!r}): {mutant}")
    for mutant in open_:
        print(f"  survivor: {mutant}\n      {mutated_line(work, mutant)}")
    for mutant in not_tested:
        print(f"  not tested on purpose: {mutant}\n      {judged[mutant].reason}")
    for mutant in sorted(set(judged) - set(alive)):
        print(f"  judged, but {status.get(mutant, 'no longer a mutant')}: {mutant}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("module", nargs="?", choices=sorted(MODULES))
    parser.add_argument("--list", action="store_true", help="the modules and their test subsets")
    parser.add_argument("--results", action="store_true", help="list the surviving mutants of the last run")
    parser.add_argument("--show", metavar="MUTANT", help="the diff of one mutant")
    parser.add_argument("--fresh", action="store_true", help="forget the last run's results (after the tests changed)")
    parser.add_argument("--tests", nargs="+", help="run these tests instead of the module's subset (its own work directory)")
    parser.add_argument("--survivors", action="store_true",
                        help="run only the last run's survivors not judged equivalent again")
    parser.add_argument("--report", "--score", action="store_true", help="counts and the score over non-equivalent mutants")
    parser.add_argument("--draft", action="store_true", help="the unjudged survivors as equivalent/<module>.md entries")
    parser.add_argument("--quick", action="store_true",
                        help="leave out the module's slow property tests (SLOW); run --survivors afterwards")
    parser.add_argument("--max-children", type=int, default=1)
    args = parser.parse_args(argv)
    if args.list or args.module is None:
        for name, (mutate, tests) in MODULES.items():
            print(f"{name:9} {' '.join(mutate)}\n{'':9} tests: {' '.join(tests)}")
        return 0
    work = prepare(args.module, args.tests)
    if args.fresh:
        shutil.rmtree(work / "mutants", ignore_errors=True)
    if args.report or args.draft:
        return report(args.module, work, draft=args.draft)
    mutmut = [sys.executable, "-m", "mutmut"]
    if args.show:
        command = mutmut + ["show", args.show]
    elif args.results:
        command = mutmut + ["results"]
    else:
        command = mutmut + ["run", "--max-children", str(args.max_children)]
        if args.survivors:
            judged = judgements(args.module)
            command += [m for m in survivors(work) if m not in judged]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    if args.quick:
        env["PYTEST_ADDOPTS"] = " ".join(f"--deselect={t}" for t in SLOW.get(args.module, []))
    return subprocess.call(command, cwd=work, env=env)


if __name__ == "__main__":
    sys.exit(main())
