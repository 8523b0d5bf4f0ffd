#!/usr/bin/env python3
"""spore under an output flood, side by side in one run (run by hand).

`spore run` supervises 10 services that write to stdout as fast as they can
(`yes`), while its own stderr, the console, is a pipe read at 11 KB/s (a
115,200-baud serial line). For SECONDS we measure, every 250 ms, how long
`service.list` takes to answer on the control socket (a connection that
gets no answer within 5 s counts as 5 s), and every second spore's RSS.
The same spore with 10 idle services (`sleep`) under the same console is the
anchor: the flood's answer times are reported beside the idle ones.

With --baseline BINARY an older spore (say, a build of main before a
change) runs the same two rounds, so the ratio to it comes from one run.

Usage: bench/flood.py [--seconds 30] [--baseline PATH]
"""
import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERIAL_BYTES_PER_S = 11_520
ANSWER_LIMIT_S = 5.0


def spore_binary():
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "spore", "--target", "x86_64-unknown-linux-musl"],
                   cwd=ROOT, check=True)
    return os.path.join(ROOT, "target/x86_64-unknown-linux-musl/release/spore")


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def answer_time(path):
    """Seconds until service.list answers (ANSWER_LIMIT_S when it does not)."""
    start = time.monotonic()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(ANSWER_LIMIT_S)
            s.connect(path)
            s.sendall(b'{"jsonrpc":"2.0","id":1,"method":"service.list"}\n')
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            json.loads(data)
    except (OSError, ValueError):
        return ANSWER_LIMIT_S
    return min(time.monotonic() - start, ANSWER_LIMIT_S)


def serial_console(pipe, stop):
    """Reads the console pipe at a serial line's pace."""
    while not stop.is_set():
        try:
            os.read(pipe, SERIAL_BYTES_PER_S // 10)
        except OSError:
            return
        time.sleep(0.1)


def round_(binary, exec_line, seconds):
    work = tempfile.mkdtemp(prefix="spore-flood-")
    os.makedirs(f"{work}/etc/services")
    for i in range(10):
        with open(f"{work}/etc/services/s{i}.toml", "w") as f:
            f.write(f'[service]\nname = "s{i}"\nexec = {json.dumps(exec_line(i))}\n')
    sock = f"{work}/state/spore.sock"
    read_end, write_end = os.pipe()
    proc = subprocess.Popen([binary, "run", "--config-dir", f"{work}/etc", "--state-dir", f"{work}/state"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=write_end,
                            start_new_session=True)
    os.close(write_end)
    stop = threading.Event()
    reader = threading.Thread(target=serial_console, args=(read_end, stop), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(sock) and time.monotonic() < deadline:
            time.sleep(0.02)
        times, rss = [], []
        start = time.monotonic()
        next_rss = start
        while time.monotonic() - start < seconds:
            times.append(answer_time(sock))
            if time.monotonic() >= next_rss:
                rss.append(rss_kib(proc.pid))
                next_rss += 1
            time.sleep(0.25)
        stopped = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
            stop_s = time.monotonic() - stopped
        except subprocess.TimeoutExpired:
            stop_s = None
        return {"median": statistics.median(times), "max": max(times), "rss_max": max(rss),
                "rss_last": rss[-1], "stop_s": stop_s}
    finally:
        stop.set()
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        # The services run in their own sessions: end them too.
        subprocess.run(["pkill", "-KILL", "-f", "^yes flood line"], check=False)
        subprocess.run(["pkill", "-KILL", "-f", "^sleep 86409$"], check=False)
        proc.wait()
        os.close(read_end)
        shutil.rmtree(work, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--baseline", help="another spore binary to run side by side")
    args = parser.parse_args()
    binaries = [("spore", spore_binary())]
    if args.baseline:
        binaries.append(("baseline", os.path.abspath(args.baseline)))
    rows = []
    for name, binary in binaries:
        for load, exec_line in [("idle", lambda i: ["sleep", "86409"]),
                                ("flood", lambda i: ["yes", "flood line", str(i)])]:
            print(f"{name}: {load} round, {args.seconds} s ...", file=sys.stderr)
            rows.append((name, load, round_(binary, exec_line, args.seconds)))
    anchor = {name: r for name, load, r in rows if load == "idle"}
    print(f"\n10 services, console read at {SERIAL_BYTES_PER_S} B/s, {args.seconds} s each; "
          f"status answer times (no answer in {ANSWER_LIMIT_S:.0f} s counts as {ANSWER_LIMIT_S:.0f} s)")
    print(f"{'':9} {'load':6} {'median ms':>10} {'max ms':>9} {'max / idle max':>15} {'RSS max KiB':>12} "
          f"{'stop s':>7}")
    for name, load, r in rows:
        ratio = r["max"] / max(anchor[name]["max"], 1e-6)
        stop = f"{r['stop_s']:.2f}" if r["stop_s"] is not None else ">30"
        print(f"{name:9} {load:6} {r['median'] * 1000:>10.2f} {r['max'] * 1000:>9.2f} {ratio:>15.1f} "
              f"{r['rss_max']:>12} {stop:>7}")


if __name__ == "__main__":
    main()
