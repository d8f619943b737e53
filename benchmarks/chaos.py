"""Chaos: `kill -9` of a search's process group at random moments, then `nasforge resume`, and the
final study compared with an uninterrupted run of the same config.

    python benchmarks/chaos.py [--kills-per-scenario 4] [--seed 0]

Each scenario is a small study on iris run as a user runs it (fresh `nasforge search` processes).
For each kill: start the search, kill its process group after a random share of the reference's
wall time, resume (itself killed once more with probability 1/3), and resume to the end. A final
study is *identical* when every trial has the same id, architecture, state and loss as the
reference's; else the differences are printed with what explains them.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCENARIOS = {
    "sh-batched": "strategy: random\nscheduler: {name: successive_halving, n_configs: 12, rungs: [2, 2, 2], eta: 2}\nbudget: 6\n",
    "hyperband-batched": "strategy: random\nscheduler: {name: hyperband, eta: 3, min_budget: 1}\nbudget: 9\n",
    "bo-serial": "strategy: {name: bayesopt, n_initial: 6, n_candidates: 200, batch_size: 2}\ntrials: 12\nbudget: 4\n"
                 "executor: serial\n",
    "evolution-pool": "strategy: {name: evolution, population_size: 4, sample_size: 2}\ntrials: 14\nbudget: 4\n"
                      "executor: pool\nworkers: 2\n",
    "ppo-batched": "strategy: {name: ppo, batch_size: 4}\ntrials: 12\nbudget: 3\n",
    "random-pool": "strategy: random\ntrials: 16\nbudget: 4\nexecutor: pool\nworkers: 2\n",
    "pnas-batched": "strategy: {name: pnas, initial: 8, beam: 4, max_steps: 3, patience: null}\ntrials: 16\nbudget: 4\n",
    "predictor-serial": "strategy: {name: predictor, n_initial: 6, n_candidates: 200, batch_size: 2}\ntrials: 12\n"
                        "budget: 4\nexecutor: serial\n",
}


def cli(*args: str, wait: bool = True) -> subprocess.Popen | subprocess.CompletedProcess:
    command = [sys.executable, "-m", "nasforge.cli", *args]
    if wait:
        return subprocess.run(command, capture_output=True, text=True, timeout=900)
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def killed_after(args: list[str], seconds: float) -> bool:
    """Run, and kill -9 the whole process group after ``seconds``; False if it ended first."""
    proc = cli(*args, wait=False)
    try:
        proc.wait(timeout=seconds)  # type: ignore[union-attr]
        return False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # type: ignore[union-attr]
        proc.wait()  # type: ignore[union-attr]
        return True


def trials(directory: Path) -> list[dict]:
    out = cli("status", str(directory), "--json")
    if out.returncode != 0:  # type: ignore[union-attr]
        raise RuntimeError(out.stderr)  # type: ignore[union-attr]
    return json.loads(out.stdout)["trials"]  # type: ignore[union-attr]


def differences(got: list[dict], ref: list[dict]) -> list[str]:
    if len(got) != len(ref):
        return [f"{len(got)} trials against {len(ref)}"]
    out = []
    for a, b in zip(got, ref):
        if a["arch"] != b["arch"]:
            out.append(f"trial {a['id']}: another architecture")
        elif a["state"] != b["state"]:
            out.append(f"trial {a['id']}: {a['state']} against {b['state']} ({(a.get('error') or '')[:80]})")
        elif a["loss"] != b["loss"]:
            gap = abs((a["loss"] or 0) - (b["loss"] or 0)) / max(abs(b["loss"] or 1), 1e-12)
            out.append(f"trial {a['id']}: loss differs by {gap:.1e} relative")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills-per-scenario", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", default=list(SCENARIOS))
    args = parser.parse_args()
    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="nasforge-chaos-"))
    total = identical = kills = 0
    for name in args.only:
        config = root / f"{name}.yaml"
        config.write_text(SCENARIOS[name] + "seed: 3\n")
        start = time.perf_counter()
        ref = cli("search", str(config), "--out", str(root / f"{name}-ref"), "--quiet")
        wall = time.perf_counter() - start
        assert ref.returncode == 0, ref.stderr  # type: ignore[union-attr]
        reference = trials(root / f"{name}-ref")
        again = cli("search", str(config), "--out", str(root / f"{name}-ref2"), "--quiet")
        assert again.returncode == 0, again.stderr  # type: ignore[union-attr]
        unstable = differences(trials(root / f"{name}-ref2"), reference)
        if unstable:  # then a killed run cannot be expected to match either
            print(f"{name}: two uninterrupted runs differ already ({'; '.join(unstable[:2])}): results arrive in "
                  f"timing order and the strategy learns from that order")
        for k in range(args.kills_per_scenario):
            out = root / f"{name}-{k}"
            kills += killed_after(["search", str(config), "--out", str(out), "--quiet"], rng.uniform(0.4, 0.95) * wall)
            if rng.random() < 1 / 3:  # killed again while resuming
                kills += killed_after(["resume", str(out), "--quiet"], rng.uniform(0.4, 0.8) * wall)
            done = cli("resume", str(out), "--quiet")
            if done.returncode != 0 and "no study" in done.stderr.lower():  # type: ignore[union-attr]
                done = cli("search", str(config), "--out", str(out), "--quiet")  # killed before it began: start again
            total += 1
            if done.returncode != 0:  # type: ignore[union-attr]
                print(f"{name} #{k}: resume failed: {done.stderr.strip()[-200:]}")  # type: ignore[union-attr]
                continue
            diff = differences(trials(out), reference)
            identical += not diff
            print(f"{name} #{k}: {'identical' if not diff else '; '.join(diff[:4])}")
        print(f"{name}: reference {wall:.1f} s, {len(reference)} trials")
    print(f"\n{identical} of {total} killed studies ended identical to their uninterrupted run ({kills} kills)")


if __name__ == "__main__":
    main()
