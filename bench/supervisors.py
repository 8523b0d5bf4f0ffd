#!/usr/bin/env python3
"""Side-by-side benchmark of spore, s6 and zinit 0.3.9 (run by hand).

Each supervisor runs as PID 1 of its own PID namespace (unshare --pid
--fork --mount-proc) and is measured the same way, in one run:

  start   time from launching the supervisor until 1,000 `sleep` services
          exist as processes (read from /proc on the host);
  pss     proportional set size of the supervisor's own processes (not the
          sleeps) with those 1,000 services running, from smaps_rollup;
  reap    orphans reaped per second: a helper entered into the namespace
          forks ORPHANS children that exit at once, waits until every one
          is a zombie (it never reaps them) and exits: the supervisor
          inherits them all at once, already dead; we time until
          the supervisor has no more children than before (its children
          file lists zombies until they are reaped), median of --rounds.

The start figure has anchors beside it: "raw-spawn", a loop that
posix_spawn()s the same 1,000 sleeps as PID 1 of its own namespace with no
supervision at all (no pipes, no state), and "raw-2", the same loop in two
workers at once (the floor on a 2-core machine: spore's spawner overlaps
its starts with the execs on the other core, so one worker is no floor);
the goal is spore within 1.1x of the two-worker floor. Reaping is the
median of --rounds rounds (5), with the spread printed.

Prints each figure and its ratio to spore's. Needs root (or user
namespaces), Debian's s6 (`apt-get install s6`) and zinit 0.3.9
(`cargo install zinit --version 0.3.9`; installed under target/bench-tools
when missing). With --baseline BINARY another spore build (say, main
before a change) runs beside it; --skip s6,zinit leaves those out.
Usage: bench/supervisors.py [--services N] [--orphans M] [--baseline PATH] [--skip NAMES]
"""
import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tool(name, install):
    found = shutil.which(name)
    if found:
        return found
    local = os.path.join(ROOT, "target/bench-tools/bin", name)
    if not os.path.exists(local):
        print(f"installing {name} ...", file=sys.stderr)
        subprocess.run(install, check=True)
    return local


def spore_binary():
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "spore", "--target", "x86_64-unknown-linux-musl"],
                   cwd=ROOT, check=True)
    return os.path.join(ROOT, "target/x86_64-unknown-linux-musl/release/spore")


def pid_ns(pid):
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def processes():
    """(pid, cmdline, state) of every process on the host."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        state = stat.rsplit(")", 1)[1].split()[0]
        out.append((int(name), cmd, state))
    return out


def namespace_members(ns):
    return [p for p in processes() if pid_ns(p[0]) == ns]


def pss_kib(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


ORPHAN_MAKER = r"""
import os, sys, time
n = int(sys.argv[1])
for _ in range(n):
    if os.fork() == 0:
        os._exit(0)
# Every child has exited and is a zombie of ours (we never wait): only
# then do we exit, and the supervisor inherits n zombies at once. What is
# timed after is its reaping alone, not the children's own exits.
# (/proc is the host's: thread-self names us there, and the children
# file lists host pids.)
while True:
    with open("/proc/thread-self/children") as f:
        kids = f.read().split()
    def state(pid):
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            return "Z"
    if all(state(pid) == "Z" for pid in kids):
        break
    time.sleep(0.01)
os._exit(0)
"""


RAW_SPAWN = r"""
import os, sys, time
n, mark, workers = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
shares = [n // workers + (1 if i < n % workers else 0) for i in range(workers)]
# Each worker but the first is a forked copy that spawns its share at
# the same time (the machine's cores all busy), then stays.
for share in shares[1:]:
    if os.fork() == 0:
        shares = [share]
        break
for _ in range(shares[0]):
    os.posix_spawn("/bin/sleep", ["sleep", mark], {})
time.sleep(1e9)
"""


def measure(name, command, services, orphans, mark, reap=True, rounds=5):
    errors = tempfile.TemporaryFile()
    proc = subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc", *command],
                            stdout=subprocess.DEVNULL, stderr=errors, start_new_session=True)
    started = time.monotonic()
    try:
        init = None
        while init is None:
            if proc.poll() is not None:
                errors.seek(0)
                raise RuntimeError(f"{name} exited at once ({proc.returncode}): "
                                   f"{errors.read().decode(errors='replace')[-2000:]}")
            try:
                with open(f"/proc/{proc.pid}/task/{proc.pid}/children") as f:
                    kids = f.read().split()
                init = int(kids[0]) if kids else None
            except OSError:
                pass
        ns = pid_ns(init)
        needle = f"sleep {mark}"
        while True:
            count = sum(1 for _, cmd, _ in processes() if cmd == needle)
            if count >= services:
                start_s = time.monotonic() - started
                break
            if time.monotonic() - started > 120:
                raise RuntimeError(f"{name}: only {count} services running after 120 s")
            time.sleep(0.005)
        time.sleep(2)
        members = namespace_members(ns)
        pss = sum(pss_kib(pid) for pid, cmd, _ in members if cmd != needle)
        rates = []
        def children():
            # The supervisor's children, zombies included until it reaps
            # them: one file, read in a millisecond, where a scan of all
            # /proc took longer than the reaping it timed.
            with open(f"/proc/{init}/task/{init}/children") as f:
                return len(f.read().split())
        for _ in range(rounds if reap else 0):
            baseline = children()
            helper = subprocess.run(["nsenter", "--target", str(init), "--pid", "--", sys.executable, "-c",
                                     ORPHAN_MAKER, str(orphans)])
            released = time.monotonic()
            helper.check_returncode()
            while True:
                if children() <= baseline:
                    rates.append(orphans / (time.monotonic() - released))
                    break
                if time.monotonic() - released > 60:
                    rates.append(None)
                    break
                time.sleep(0.005)
            if rates[-1] is None:
                break
        rates.sort(key=lambda r: -1 if r is None else r)
        reap_rate = None if None in rates or not rates else rates[len(rates) // 2]
        spread = None if reap_rate is None else (rates[0], rates[-1])
        return {"start_s": start_s, "pss_kib": pss, "reap_per_s": reap_rate, "reap_spread": spread}
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--orphans", type=int, default=5000)
    parser.add_argument("--baseline", help="another spore binary to measure beside this one")
    parser.add_argument("--skip", default="", help="comma-separated: s6, zinit")
    parser.add_argument("--rounds", type=int, default=5, help="reaping rounds per supervisor (the median is shown)")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    spore = spore_binary()
    s6 = None if "s6" in skip else tool("s6-svscan", ["apt-get", "install", "-y", "-qq", "s6"])
    zinit = None if "zinit" in skip else tool(
        "zinit-server", ["cargo", "install", "-q", "zinit", "--version", "0.3.9", "--root",
                         os.path.join(ROOT, "target/bench-tools")])
    work = tempfile.mkdtemp(prefix="spore-bench-")
    n = args.services
    # spore
    os.makedirs(f"{work}/spore/etc/services")
    for i in range(n):
        with open(f"{work}/spore/etc/services/s{i}.toml", "w") as f:
            f.write(f'[service]\nname = "s{i}"\nexec = "sleep 86401"\n')
    # s6
    for i in range(n):
        os.makedirs(f"{work}/s6/s{i}")
        with open(f"{work}/s6/s{i}/run", "w") as f:
            f.write("#!/bin/sh\nexec sleep 86402\n")
        os.chmod(f"{work}/s6/s{i}/run", 0o755)
    # zinit
    os.makedirs(f"{work}/zinit/services")
    for i in range(n):
        with open(f"{work}/zinit/services/s{i}.toml", "w") as f:
            f.write(f'[service]\nname = "s{i}"\nexec = "sleep 86403"\n')
    runs = [
        ("spore", [spore, "run", "--config-dir", f"{work}/spore/etc", "--state-dir", f"{work}/spore/state"], 86401),
        ("raw-spawn", [sys.executable, "-c", RAW_SPAWN, str(n), "86405", "1"], 86405),
        ("raw-2", [sys.executable, "-c", RAW_SPAWN, str(n), "86406", "2"], 86406),
    ]
    if args.baseline:
        runs.append(("baseline", [os.path.abspath(args.baseline), "run", "--config-dir", f"{work}/base/etc",
                                  "--state-dir", f"{work}/base/state"], 86404))
        os.makedirs(f"{work}/base/etc/services")
        for i in range(n):
            with open(f"{work}/base/etc/services/s{i}.toml", "w") as f:
                f.write(f'[service]\nname = "s{i}"\nexec = "sleep 86404"\n')
    if s6:
        runs.append(("s6", [s6, "-c", str(2 * n), f"{work}/s6"], 86402))
    if zinit:
        runs.append(("zinit", [zinit, "-c", f"{work}/zinit/services", "-s", f"{work}/zinit/zinit.sock"], 86403))
    results = {}
    for name, command, mark in runs:
        print(f"measuring {name} ...", file=sys.stderr)
        # The raw loop reaps nothing and its PSS is Python's: only its
        # start time is a figure.
        anchor = name.startswith("raw-")
        results[name] = measure(name, command, n, args.orphans, mark, reap=not anchor, rounds=args.rounds)
        if anchor:
            results[name]["pss_kib"] = None
    shutil.rmtree(work, ignore_errors=True)
    base = results["spore"]
    print(f"\n{n} services, {args.orphans} orphans, reaping: median of {args.rounds} rounds (min-max); ratios are other / spore")
    print(f"{'':9} {'start (s)':>10} {'ratio':>7} {'PSS (KiB)':>11} {'ratio':>7} {'reaped/s':>10} {'ratio':>7} {'spread':>15}")
    for name, r in results.items():
        anchor = name.startswith("raw-")
        reap = "-" if anchor else f"{r['reap_per_s']:.0f}" if r["reap_per_s"] else "never"
        reap_ratio = f"{r['reap_per_s'] / base['reap_per_s']:.2f}" if r["reap_per_s"] and base["reap_per_s"] else "-"
        pss = "-" if r["pss_kib"] is None else r["pss_kib"]
        pss_ratio = "-" if r["pss_kib"] is None else f"{r['pss_kib'] / max(base['pss_kib'], 1):.2f}"
        spread = "-" if not r.get("reap_spread") else f"{r['reap_spread'][0]:.0f}-{r['reap_spread'][1]:.0f}"
        print(f"{name:9} {r['start_s']:>10.2f} {r['start_s'] / base['start_s']:>7.2f} "
              f"{pss:>11} {pss_ratio:>7} {reap:>10} {reap_ratio:>7} {spread:>15}")
    raw = results["raw-spawn"]["start_s"]
    floor = results["raw-2"]["start_s"]
    print(f"\nspore's start is {base['start_s'] / raw:.2f}x the one-worker posix_spawn loop's "
          f"and {base['start_s'] / floor:.2f}x the two-worker floor's (goal: at most 1.1x)")


if __name__ == "__main__":
    main()
