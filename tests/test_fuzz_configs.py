"""Property-based fuzzing of configs and flags: whatever a user writes, `nasforge search` exits 2
with one line naming what is wrong, or runs a study with no failed trial; never a traceback, a
hang or exit 0 over a study of failed trials. Bounded: each example is a tiny search in-process."""
from __future__ import annotations

import contextlib
import io

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nasforge import cli
from nasforge.store.sqlite import SQLiteStore
from nasforge.types import TrialState

junk = st.one_of(st.none(), st.booleans(), st.integers(-3, 50), st.floats(allow_nan=True, allow_infinity=True),
                 st.text(max_size=12), st.lists(st.integers(-3, 3), max_size=3),
                 st.dictionaries(st.text(max_size=5), st.integers(-3, 3), max_size=2))
names = {"space": ["mlp", "nasrl", "nope", "os:getcwd"], "dataset": ["iris", "wine", "nope", "none", "csv"],
         "strategy": ["random", "grid", "bayesopt", "evolution", "reinforce", "ppo", "nope"],
         "scheduler": ["full", "successive_halving", "hyperband", "asha", "nope"]}
component = {key: st.one_of(st.sampled_from(values), junk,
                            st.fixed_dictionaries({"name": st.sampled_from(values)},
                                                  optional={"args": st.one_of(junk, st.dictionaries(
                                                      st.sampled_from(["eta", "n_configs", "population_size", "lr",
                                                                       "values", "val_fraction", "seed", "bogus"]),
                                                      junk, max_size=2))}))
             for key, values in names.items()}
fields = {**component,
          "trainer": st.one_of(junk, st.dictionaries(st.sampled_from(["lr", "batch_size", "optimizer", "device", "momentum"]),
                                                     junk, max_size=2)),
          "objective": st.one_of(junk, st.dictionaries(st.sampled_from(["metric", "mode", "constraint"]), junk, max_size=2)),
          "hardware": st.one_of(junk, st.dictionaries(st.sampled_from(["input_shape", "threads", "repeats"]), junk, max_size=1)),
          "evaluator": st.one_of(junk, st.sampled_from(["os:getcwd", "math:pi", "nope:x"])),
          "trials": junk, "budget": junk, "workers": junk, "seed": junk, "keep_checkpoints": junk, "executor": junk,
          "repeats": junk, "trial_timeout": junk, "bogus_key": junk}


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(config=st.dictionaries(st.sampled_from(sorted(fields)), st.none(), min_size=1, max_size=3).flatmap(
    lambda keys: st.fixed_dictionaries({k: fields[k] for k in keys})))
def test_a_fuzzed_config_is_refused_in_one_line_or_runs_cleanly(tmp_path_factory, config):
    directory = tmp_path_factory.mktemp("fuzz")
    config = {"trials": 1, "budget": 0.2, **config}  # small, unless the fuzz replaced them
    text = yaml.safe_dump(config, allow_unicode=True)
    (directory / "c.yaml").write_text(text)
    number = (int, float)
    keep_small = [*(["--trials", "2"] if type(config["trials"]) in number and config["trials"] > 2 else []),
                  *(["--budget", "0.2"] if type(config["budget"]) in number and config["budget"] > 1 else [])]
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = cli.main(["search", str(directory / "c.yaml"), "--out", str(directory / "out"), "--quiet", *keep_small])
    lines = [line for line in err.getvalue().splitlines() if line.strip()]
    if code == 2:
        assert len(lines) == 1 and lines[0].startswith("nasforge: error: "), (text, lines)
        assert len(lines[0]) < 1500  # bounded, whatever was written
    else:
        assert code == 0, (text, code, lines)
        trials = SQLiteStore(directory / "out", read_only=True).trials()
        assert trials and not any(t.state is TrialState.FAILED for t in trials), (text, [t.error for t in trials])


@settings(max_examples=40, deadline=None, derandomize=True)
@given(flags=st.lists(st.sampled_from(["--seed", "--trials", "--budget", "--workers", "--space", "--strategy",
                                       "--scheduler", "--dataset", "-1", "0", "x", "1e9", "nan", "inf", "mlp", "nope",
                                       "9" * 50]), min_size=1, max_size=4))
def test_fuzzed_flags_are_refused_in_one_line_or_run(tmp_path_factory, flags):
    directory = tmp_path_factory.mktemp("flags")
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = cli.main(["search", "--out", str(directory / "out"), "--quiet", *flags, "--trials", "1",
                             "--budget", "0.2"])  # last: they win, so every run stays small
    except SystemExit as exc:  # argparse: a flag without its value, or a value of the wrong type
        code = exc.code
    lines = [line for line in err.getvalue().splitlines() if line.strip()]
    assert code in (0, 2), (flags, code, lines)
    if code == 2:
        assert "Traceback" not in err.getvalue() and lines and "error" in lines[-1], (flags, lines)
