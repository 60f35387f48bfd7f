"""Load driver and report of scripts/soak (Python 3 standard library only).

scripts/soak starts the replicas and the database; this script sets up the
users and an introspecting client, runs a constant mixed load over every
replica for --seconds, samples every WINDOW seconds into soak.csv, and at
the end writes soak.svg and summary.md into --out and prints the summary.

The load: --workers threads share one pacer that releases --rate requests
per second (a worker takes the next slot, waits for its time, sends). Each
worker is one user with its own session and keep-alive connections to every
replica, and picks a replica at random for each request. --login-rate of
the slots go to a logout cycle: log out (204), introspect the logged-out
access token on another replica (it must be inactive), log in again. The
other slots are JWKS GETs, introspections of the worker's current access
token (it must be active) and refreshes (the refresh token rotates; the
next refresh uses the new one, often on the other replica).

Every answer other than the expected one is an error: another status, a
wrong introspection result, a connection error or timeout. So is a replica
whose /readyz is not 200 at a sample, or that died. Exit status 1 if there
was any.
"""

import argparse
import base64
import csv
import http.client
import json
import math
import os
import random
import sys
import threading
import time
import urllib.parse
from collections import Counter

WINDOW = 5.0
KINDS = ("login", "refresh", "jwks", "introspect", "logout")
# How the slots that are not logout cycles are shared.
MIX = (("jwks", 0.40), ("introspect", 0.35), ("refresh", 0.25))
PASSWORD = "correct horse battery"
TIMEOUT = 30.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- helpers


def percentile(sorted_values, p):
    """Nearest rank; None for no values."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p * len(sorted_values)))
    return sorted_values[rank - 1]


def fmt(value, digits=1):
    return "" if value is None else f"{value:.{digits}f}"


class Conn:
    """One keep-alive HTTP/1.1 connection, reopened after a failure."""

    def __init__(self, base):
        url = urllib.parse.urlsplit(base)
        self.host, self.port = url.hostname, url.port
        self.conn = None

    def request(self, method, path, body=None, headers=None):
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=TIMEOUT)
        try:
            self.conn.request(method, path, body=body, headers=headers or {})
            resp = self.conn.getresponse()
            data = resp.read()
        except BaseException:
            self.close()
            raise
        if resp.will_close:
            self.close()
        return resp.status, data

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def call(conn, method, path, body=None, headers=None):
    """(status, data) or (None, description) on a connection error."""
    try:
        return conn.request(method, path, body, headers)
    except (OSError, http.client.HTTPException) as e:
        return None, f"{type(e).__name__}: {e}".strip()


def post_json(conn, path, obj, token=None):
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    return call(conn, "POST", path, json.dumps(obj).encode(), headers)


def setup_call(conn, path, obj, expect, token=None):
    status, data = post_json(conn, path, obj, token)
    if status != expect:
        sys.exit(f"set-up: POST {path} answered {status}: {data[:300]!r}")
    return json.loads(data) if data else None


def proc_sample(pid):
    """(RSS in MB, CPU seconds) of a live process, None if it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            status = f.read()
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    if fields.get("State", "").strip().startswith(("Z", "X")) or "VmRSS" not in fields:
        return None
    rss_mb = int(fields["VmRSS"].split()[0]) / 1024
    rest = stat.rsplit(")", 1)[1].split()
    cpu = (int(rest[11]) + int(rest[12])) / CLK_TCK
    return rss_mb, cpu


# ---------------------------------------------------------------- load


class Stats:
    """Latencies and errors, per window and for the whole run."""

    def __init__(self):
        self.lock = threading.Lock()
        self.window = {k: [] for k in KINDS}
        self.window_errors = 0
        self.all = {k: [] for k in KINDS}
        self.errors = Counter()  # "kind: what" -> count
        self.errors_per_kind = Counter()

    def record(self, kind, seconds, error=None):
        ms = seconds * 1000
        with self.lock:
            self.window[kind].append(ms)
            self.all[kind].append(ms)
            if error:
                self.window_errors += 1
                self.errors_per_kind[kind] += 1
                self.errors[f"{kind}: {error}"] += 1

    def error(self, what):
        """An error that is not a request of the load (readiness, a death)."""
        with self.lock:
            self.window_errors += 1
            self.errors[what] += 1

    def take_window(self):
        with self.lock:
            window, errors = self.window, self.window_errors
            self.window = {k: [] for k in KINDS}
            self.window_errors = 0
        return window, errors


class Pacer:
    """Releases `rate` slots per second to whichever worker asks next. A
    slot more than a second late (every worker was busy) is skipped and
    counted as missed, so a stall is not followed by a burst."""

    def __init__(self, rate, stop):
        self.interval = 1.0 / rate
        self.stop = stop
        self.lock = threading.Lock()
        self.next = time.monotonic()
        self.missed = 0

    def wait(self):
        with self.lock:
            now = time.monotonic()
            if self.next < now - 1.0:
                late = int((now - 1.0 - self.next) / self.interval)
                self.missed += late
                self.next += late * self.interval
            slot = self.next
            self.next += self.interval
        delay = slot - time.monotonic()
        if delay > 0:
            self.stop.wait(delay)
        return not self.stop.is_set()


class LoginBudget:
    """`rate` logout cycles per second over all workers."""

    def __init__(self, rate):
        self.rate = rate
        self.lock = threading.Lock()
        self.start = time.monotonic()
        self.taken = 0

    def take(self):
        with self.lock:
            if self.taken < (time.monotonic() - self.start) * self.rate:
                self.taken += 1
                return True
            return False


class Worker(threading.Thread):
    """One user: its session's tokens and a connection to each replica."""

    def __init__(self, n, soak, tokens):
        super().__init__(name=f"worker-{n}", daemon=True)
        self.username = f"soak-{n}"
        self.soak = soak
        self.conns = [Conn(base) for base in soak.bases]
        self.access, self.refresh_token = tokens
        self.needs_login = False
        self.rng = random.Random(n)

    def replica(self, other_than=None):
        choices = [i for i in range(len(self.conns)) if i != other_than] or [0]
        return self.rng.choice(choices)

    def timed(self, kind, replica, method, path, body, headers, check):
        """Send, time, check, record; the body, or None on an error."""
        start = time.perf_counter()
        status, data = call(self.conns[replica], method, path, body, headers)
        seconds = time.perf_counter() - start
        where = f"replica {replica + 1}"
        if status is None:
            self.soak.stats.record(kind, seconds, f"{data} ({where})")
            return None
        try:
            error = check(status, data)
        except ValueError as e:  # unparseable JSON
            error = f"{status} unreadable body ({e})"
        if error:
            self.soak.stats.record(kind, seconds, f"{error} ({where})")
            return None
        self.soak.stats.record(kind, seconds)
        return data

    @staticmethod
    def expect(status_wanted, body_check=None):
        def check(status, data):
            if status != status_wanted:
                return f"{status} {data[:160].decode('utf-8', 'replace')}"
            return body_check(data) if body_check else None

        return check

    def login(self):
        def tokens(data):
            body = json.loads(data)
            if not body.get("access_token") or not body.get("refresh_token"):
                return "200 without tokens"
            self.access, self.refresh_token = body["access_token"], body["refresh_token"]
            return None

        body = json.dumps({"username": self.username, "password": PASSWORD}).encode()
        ok = self.timed("login", self.replica(), "POST", "/auth/login", body,
                        {"content-type": "application/json"}, self.expect(200, tokens))
        self.needs_login = ok is None
        if self.needs_login:
            self.soak.stop.wait(1.0)  # do not turn failing logins into a hashing storm

    def refresh(self):
        def tokens(data):
            body = json.loads(data)
            if not body.get("access_token") or not body.get("refresh_token"):
                return "200 without tokens"
            self.access, self.refresh_token = body["access_token"], body["refresh_token"]
            return None

        body = json.dumps({"refresh_token": self.refresh_token}).encode()
        ok = self.timed("refresh", self.replica(), "POST", "/auth/refresh", body,
                        {"content-type": "application/json"}, self.expect(200, tokens))
        # The chain may be broken now: start a new session.
        self.needs_login = ok is None

    def jwks(self):
        def keys(data):
            return None if json.loads(data).get("keys") else "200 without keys"

        self.timed("jwks", self.replica(), "GET", "/.well-known/jwks.json", None, {},
                   self.expect(200, keys))

    def introspect(self, token, active, replica):
        def answer(data):
            got = json.loads(data).get("active")
            if got is not active:
                state = "live" if active else "logged-out"
                return f"200 active={json.dumps(got)} for a {state} token"
            return None

        body = urllib.parse.urlencode({"token": token}).encode()
        headers = {"content-type": "application/x-www-form-urlencoded",
                   "authorization": self.soak.basic}
        self.timed("introspect", replica, "POST", "/oauth/introspect", body, headers,
                   self.expect(200, answer))

    def logout_cycle(self):
        """Log out, check the old access token is inactive on another
        replica, log in again: three slots."""
        old_access, where = self.access, self.replica()
        body = json.dumps({"refresh_token": self.refresh_token}).encode()
        ok = self.timed("logout", where, "POST", "/auth/logout", body,
                        {"content-type": "application/json"}, self.expect(204))
        self.needs_login = True
        if ok is not None and self.soak.pacer.wait():
            self.introspect(old_access, False, self.replica(other_than=where))
        if self.soak.pacer.wait():
            self.login()

    def run(self):
        pacer, budget = self.soak.pacer, self.soak.budget
        while pacer.wait():
            if self.needs_login:
                self.login()
            elif budget.take():
                self.logout_cycle()
            else:
                pick = self.rng.random()
                for kind, weight in MIX:
                    pick -= weight
                    if pick < 0:
                        break
                if kind == "jwks":
                    self.jwks()
                elif kind == "introspect":
                    self.introspect(self.access, True, self.replica())
                else:
                    self.refresh()
        for conn in self.conns:
            conn.close()


# ---------------------------------------------------------------- the run


class Run:
    def __init__(self, args):
        self.args = args
        self.bases = args.replica
        self.pids = args.pid
        self.stats = Stats()
        self.stop = threading.Event()
        self.pacer = None
        self.budget = None
        self.basic = None
        self.rows = []
        self.died = set()
        self.interrupted = False

    def setup(self):
        conns = [Conn(base) for base in self.bases]
        admin = setup_call(conns[0], "/auth/login",
                           {"username": "admin", "password": self.args.admin_password,
                            "scope": "latchkey:admin"}, 200)["access_token"]
        client = setup_call(conns[0], "/admin/clients",
                            {"client_name": "soak", "grant_types": ["client_credentials"],
                             "scope": "latchkey:introspect"}, 201, token=admin)
        secret = f"{client['client_id']}:{client['client_secret']}"
        self.basic = "Basic " + base64.b64encode(secret.encode()).decode()
        # One at a time: registrations may hold only half the hashing threads.
        tokens = []
        for n in range(self.args.workers):
            conn = conns[n % len(conns)]
            setup_call(conn, "/auth/register", {"username": f"soak-{n}", "password": PASSWORD}, 201)
            body = setup_call(conn, "/auth/login", {"username": f"soak-{n}", "password": PASSWORD}, 200)
            tokens.append((body["access_token"], body["refresh_token"]))
        for conn in conns:
            conn.close()
        return tokens

    def ready(self, i):
        conn = Conn(self.bases[i])
        status, data = call(conn, "GET", "/readyz")
        conn.close()
        if status != 200:
            self.stats.error(f"readyz: {status} {str(data)[:120]} (replica {i + 1})")
            return 0
        return 1

    def sample(self, elapsed, cpu_before, seconds):
        """One CSV row: the window that just ended."""
        window, errors = self.stats.take_window()
        row = {"elapsed_s": round(elapsed)}
        cpu_now = []
        for i, pid in enumerate(self.pids):
            proc = proc_sample(pid)
            if proc is None:
                if i not in self.died:
                    self.died.add(i)
                    self.stats.error(f"replica {i + 1} died")
                    errors += 1
                row[f"rss_mb_{i + 1}"] = None
                row[f"cpu_pct_{i + 1}"] = None
                row[f"ready_{i + 1}"] = 0
                cpu_now.append(None)
                continue
            rss, cpu = proc
            row[f"rss_mb_{i + 1}"] = rss
            before = cpu_before[i] if cpu_before else None
            row[f"cpu_pct_{i + 1}"] = (cpu - before) / seconds * 100 if before is not None and seconds else None
            cpu_now.append(cpu)
            ready = self.ready(i)
            errors += 1 - ready
            row[f"ready_{i + 1}"] = ready
        everything = sorted(ms for kind in KINDS for ms in window[kind])
        row["requests"] = len(everything)
        for kind in KINDS:
            row[f"requests_{kind}"] = len(window[kind])
        row["rps"] = len(everything) / seconds if seconds else 0.0
        row["p50_ms"] = percentile(everything, 0.50)
        row["p99_ms"] = percentile(everything, 0.99)
        for kind in KINDS:
            values = sorted(window[kind])
            row[f"p50_{kind}_ms"] = percentile(values, 0.50)
            row[f"p99_{kind}_ms"] = percentile(values, 0.99)
        row["errors"] = errors
        missed = self.pacer.missed if self.pacer else 0
        row["missed"] = missed - sum(r["missed"] for r in self.rows)
        self.rows.append(row)
        return cpu_now

    def columns(self):
        cols = ["elapsed_s"]
        for i in range(len(self.pids)):
            cols += [f"rss_mb_{i + 1}", f"cpu_pct_{i + 1}", f"ready_{i + 1}"]
        cols += ["requests"] + [f"requests_{k}" for k in KINDS] + ["rps", "p50_ms", "p99_ms"]
        for kind in KINDS:
            cols += [f"p50_{kind}_ms", f"p99_{kind}_ms"]
        return cols + ["errors", "missed"]

    def write_row(self, writer, f):
        row = self.rows[-1]
        writer.writerow({k: fmt(v, 3) if isinstance(v, float) else ("" if v is None else v)
                         for k, v in row.items()})
        f.flush()

    def go(self):
        args = self.args
        tokens = self.setup()
        csv_path = os.path.join(args.out, "soak.csv")
        with open(csv_path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.columns())
            writer.writeheader()
            cpu = self.sample(0.0, None, 0.0)
            self.write_row(writer, f)
            self.pacer = Pacer(args.rate, self.stop)
            self.budget = LoginBudget(args.login_rate)
            workers = [Worker(n, self, tokens[n]) for n in range(args.workers)]
            start = time.monotonic()
            self.driver_cpu_start = time.process_time()
            for w in workers:
                w.start()
            last = start
            k = 0
            try:
                while True:
                    k += 1
                    target = start + min(k * WINDOW, args.seconds)
                    time.sleep(max(0.0, target - time.monotonic()))
                    now = time.monotonic()
                    if target >= start + args.seconds:
                        self.stop.set()
                        for w in workers:
                            w.join(TIMEOUT + 5)
                        now = time.monotonic()
                    cpu = self.sample(now - start, cpu, now - last)
                    self.write_row(writer, f)
                    last = now
                    if self.died:
                        print(f"replica {', '.join(str(i + 1) for i in sorted(self.died))} died: stopping",
                              file=sys.stderr)
                        self.stop.set()
                    if self.stop.is_set():
                        break
            except KeyboardInterrupt:  # keep what was measured, the last part-window too
                self.interrupted = True
                self.stop.set()
                for w in workers:
                    w.join(TIMEOUT + 5)
                now = time.monotonic()
                self.sample(now - start, cpu, now - last)
                self.write_row(writer, f)
            self.elapsed = time.monotonic() - start
            self.driver_cpu = time.process_time() - self.driver_cpu_start
        svg_path = os.path.join(args.out, "soak.svg")
        with open(svg_path, "w") as f:
            f.write(chart(self.rows, len(self.pids), args))
        summary = self.summary(csv_path, svg_path)
        with open(os.path.join(args.out, "summary.md"), "w") as f:
            f.write(summary)
        print(summary, end="")
        failed = sum(self.stats.errors.values()) > 0 or self.died or self.interrupted
        return 1 if failed else 0

    def summary(self, csv_path, svg_path):
        args, rows, stats = self.args, self.rows, self.stats
        load = rows[1:]
        total = sum(r["requests"] for r in load)
        lines = [
            f"## latchkey soak: {len(self.pids)} replicas, one PostgreSQL database, {self.elapsed:.0f} s",
            "",
            f"{args.label}. Target {args.rate:g} req/s ({args.login_rate:g} logins/s and as many logouts), "
            f"{args.workers} workers, samples every {WINDOW:g} s; "
            f"{total / self.elapsed:.0f} req/s achieved, {sum(r['missed'] for r in load)} slots missed "
            f"(every worker busy for over a second). Driver CPU {self.driver_cpu / self.elapsed * 100:.0f} % "
            f"of one core; {os.cpu_count()} cores.",
        ]
        if self.interrupted:
            lines += ["", f"**Interrupted after {self.elapsed:.0f} of {args.seconds:g} s.**"]
        if self.died:
            which = ", ".join(str(i + 1) for i in sorted(self.died))
            lines += ["", f"**Stopped after {self.elapsed:.0f} of {args.seconds:g} s: replica {which} died.**"]
        lines += ["", "| kind | requests | errors | p50 ms | p99 ms | worst window p99 ms |",
                  "|---|---:|---:|---:|---:|---:|"]

        def kind_line(name, values, errors, column):
            values = sorted(values)
            worst = max(((r[column], r["elapsed_s"]) for r in load if r[column] is not None),
                        default=None)
            worst_text = f"{worst[0]:.1f} (at {worst[1]} s)" if worst else ""
            return (f"| {name} | {len(values)} | {errors} | {fmt(percentile(values, 0.5))} | "
                    f"{fmt(percentile(values, 0.99))} | {worst_text} |")

        for kind in KINDS:
            lines.append(kind_line(kind, stats.all[kind], stats.errors_per_kind[kind], f"p99_{kind}_ms"))
        everything = [ms for kind in KINDS for ms in stats.all[kind]]
        lines.append(kind_line("**all**", everything, sum(stats.errors_per_kind.values()), "p99_ms"))

        lines += ["", "| replica | RSS start MB | end MB | max MB | trend, second half | mean CPU |",
                  "|---|---:|---:|---:|---:|---:|"]
        for i in range(len(self.pids)):
            rss = [(r["elapsed_s"], r[f"rss_mb_{i + 1}"]) for r in rows if r[f"rss_mb_{i + 1}"] is not None]
            cpus = [r[f"cpu_pct_{i + 1}"] for r in load if r[f"cpu_pct_{i + 1}"] is not None]
            if not rss:
                lines.append(f"| {i + 1} | | | | | |")
                continue
            half = [p for p in rss if p[0] >= self.elapsed / 2]
            slope = trend(half) * 60 if len(half) >= 3 else None
            state = " (died)" if i in self.died else ""
            lines.append(
                f"| {i + 1}{state} | {rss[0][1]:.1f} | {rss[-1][1]:.1f} | {max(v for _, v in rss):.1f} | "
                f"{'' if slope is None else f'{slope:+.2f} MB/min'} | "
                f"{sum(cpus) / len(cpus) if cpus else 0:.0f} % |")

        errors = sum(stats.errors.values())
        lines += [""]
        if errors:
            lines.append(f"**{errors} errors:**")
            lines.append("")
            for what, count in stats.errors.most_common(15):
                lines.append(f"- {count} × {what}")
            if len(stats.errors) > 15:
                lines.append(f"- … and {len(stats.errors) - 15} other kinds")
        else:
            lines.append("No errors: every answer was the expected one, every /readyz sample 200.")
        log_notes = []
        for i, path in enumerate(args.log or []):
            warn, err, first = count_log(path)
            note = f"replica {i + 1}: {warn} WARN, {err} ERROR lines"
            if first:
                note += f" (first: `{first[:200]}`)"
            log_notes.append(note)
        if log_notes:
            lines += ["", "Logs: " + "; ".join(log_notes) + "."]
        lines += ["", f"Files: `{os.path.basename(csv_path)}`, `{os.path.basename(svg_path)}`, "
                      f"`summary.md`, the replicas' logs.", ""]
        return "\n".join(lines)


def trend(points):
    """Least-squares slope of (x, y) points."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0


def count_log(path):
    warn = err = 0
    first = None
    try:
        with open(path, errors="replace") as f:
            for line in f:
                if " WARN " in line or " ERROR " in line:
                    if " WARN " in line:
                        warn += 1
                    else:
                        err += 1
                    if first is None:
                        first = line.strip()
    except OSError:
        pass
    return warn, err, first


# ---------------------------------------------------------------- the chart

REPLICA_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd")
KIND_COLOURS = {"login": "#9467bd", "refresh": "#2ca02c", "jwks": "#17becf",
                "introspect": "#ff7f0e", "logout": "#8c564b"}
ERROR_COLOUR = "#d62728"


def nice_ticks(lo, hi, count=5):
    if hi <= lo:
        hi = lo + 1
    raw = (hi - lo) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.floor(lo / step) * step
    ticks = []
    t = first
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 10))
        t += step
    if ticks[-1] < hi:
        ticks.append(round(t, 10))
    return ticks


def log_ticks(lo, hi):
    ticks = []
    e = math.floor(math.log10(lo))
    while True:
        for m in (1, 2, 5):
            v = m * 10 ** e
            if lo <= v * 1.0001 and v <= hi * 1.0001:
                ticks.append(v)
        if 10 ** e > hi:
            return ticks
        e += 1


def label(v):
    if v == 0:
        return "0"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 1:
        return f"{v:g}"
    return f"{v:.2g}"


def esc(text):
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class Panel:
    """One plot area with x = elapsed seconds."""

    def __init__(self, svg, top, height, x_max, title, y_title):
        self.svg, self.top, self.height = svg, top, height
        self.left, self.width = 70, 800
        self.x_max = x_max or 1
        self.title, self.y_title = title, y_title

    def x(self, seconds):
        return self.left + seconds / self.x_max * self.width

    def frame(self, y_ticks, y_of, x_ticks):
        s = self.svg
        s.append(f'<text x="{self.left}" y="{self.top - 10}" class="title">{esc(self.title)}</text>')
        s.append(f'<text x="{self.left - 52}" y="{self.top + self.height / 2}" class="axis" '
                 f'transform="rotate(-90 {self.left - 52} {self.top + self.height / 2})" '
                 f'text-anchor="middle">{esc(self.y_title)}</text>')
        for t in y_ticks:
            y = y_of(t)
            s.append(f'<line x1="{self.left}" x2="{self.left + self.width}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
            s.append(f'<text x="{self.left - 6}" y="{y + 4:.1f}" class="tick" text-anchor="end">{label(t)}</text>')
        for t in x_ticks:
            x = self.x(t)
            s.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{self.top}" y2="{self.top + self.height}" class="grid"/>')
            s.append(f'<text x="{x:.1f}" y="{self.top + self.height + 15}" class="tick" '
                     f'text-anchor="middle">{label(t)}</text>')
        s.append(f'<rect x="{self.left}" y="{self.top}" width="{self.width}" height="{self.height}" class="frame"/>')

    def line(self, points, y_of, colour, width=1.8, dash=None):
        """A polyline, broken where a value is missing."""
        segments, current = [], []
        for x, v in points:
            if v is None:
                if current:
                    segments.append(current)
                current = []
            else:
                current.append(f"{self.x(x):.1f},{y_of(v):.1f}")
        if current:
            segments.append(current)
        style = f' stroke-dasharray="{dash}"' if dash else ""
        for seg in segments:
            if len(seg) == 1:
                cx, cy = seg[0].split(",")
                self.svg.append(f'<circle cx="{cx}" cy="{cy}" r="2" fill="{colour}"/>')
            else:
                self.svg.append(f'<polyline points="{" ".join(seg)}" fill="none" stroke="{colour}" '
                                f'stroke-width="{width}"{style}/>')

    def legend(self, items):
        x = self.left + self.width + 32
        y = self.top + 6
        for name, colour, dash in items:
            style = f' stroke-dasharray="{dash}"' if dash else ""
            self.svg.append(f'<line x1="{x}" x2="{x + 18}" y1="{y}" y2="{y}" stroke="{colour}" '
                            f'stroke-width="2.5"{style}/>')
            self.svg.append(f'<text x="{x + 23}" y="{y + 4}" class="tick">{esc(name)}</text>')
            y += 16


def linear(panel, lo, hi):
    return lambda v: panel.top + panel.height - (v - lo) / (hi - lo) * panel.height


def chart(rows, replicas, args):
    panel_h, gap, top0 = 190, 70, 84
    width, height = 1040, top0 + 3 * panel_h + 2 * gap + 60
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif">',
           "<style>.title{font-size:14px;font-weight:bold}.axis{font-size:12px}.tick{font-size:11px}"
           ".grid{stroke:#e4e4e4;stroke-width:1}.frame{fill:none;stroke:#555;stroke-width:1}</style>",
           f'<rect width="{width}" height="{height}" fill="white"/>']
    elapsed = rows[-1]["elapsed_s"] if rows else 1
    total_errors = sum(r["errors"] for r in rows)
    svg.append(f'<text x="70" y="24" font-size="16" font-weight="bold">latchkey soak: {replicas} replicas, '
               f'one PostgreSQL database, {elapsed} s</text>')
    svg.append(f'<text x="70" y="42" class="axis">{esc(args.label)}; target {args.rate:g} req/s, '
               f'{args.login_rate:g} logins/s, {args.workers} workers; {WINDOW:g} s windows</text>')
    x_ticks = nice_ticks(0, elapsed, 10)
    x_max = x_ticks[-1]

    # 1. memory
    p = Panel(svg, top0, panel_h, x_max, "Resident memory per replica", "RSS (MB)")
    rss_values = [r[f"rss_mb_{i + 1}"] for r in rows for i in range(replicas)
                  if r[f"rss_mb_{i + 1}"] is not None] or [1]
    ticks = nice_ticks(0, max(rss_values) * 1.1, 5)
    y_of = linear(p, 0, ticks[-1])
    p.frame(ticks, y_of, x_ticks)
    for i in range(replicas):
        # Dashed after the first, so equal lines stay visible.
        p.line([(r["elapsed_s"], r[f"rss_mb_{i + 1}"]) for r in rows], y_of, REPLICA_COLOURS[i % 4],
               dash="7,4" if i else None)
    p.legend([(f"replica {i + 1}", REPLICA_COLOURS[i % 4], "7,4" if i else None) for i in range(replicas)])
    for i in range(replicas):
        seen = False
        for r in rows:
            if r[f"rss_mb_{i + 1}"] is not None:
                seen = True
            elif seen:
                x = p.x(r["elapsed_s"])
                svg.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{p.top}" y2="{p.top + p.height}" '
                           f'stroke="{ERROR_COLOUR}" stroke-width="1.5"/>')
                svg.append(f'<text x="{x - 4:.1f}" y="{p.top + 16 + 14 * i}" class="axis" text-anchor="end" '
                           f'fill="{ERROR_COLOUR}">replica {i + 1} died</text>')
                break

    # 2. latency, log scale
    top = top0 + panel_h + gap
    p = Panel(svg, top, panel_h, x_max, "Latency per 5 s window: p99 per kind, p50 of all (log scale)", "ms")
    load = rows[1:]
    series = [(f"p99 {k}", f"p99_{k}_ms", KIND_COLOURS[k], None) for k in KINDS]
    series.append(("p50 all", "p50_ms", "#333", "5,3"))
    values = [r[col] for r in load for _, col, _, _ in series if r[col] is not None and r[col] > 0] or [1]
    lo = 10 ** math.floor(math.log10(min(values)))
    hi = 10 ** math.ceil(math.log10(max(values)))
    if hi <= lo:
        hi = lo * 10
    y_log = lambda v: p.top + p.height - (math.log10(max(v, lo)) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)) * p.height  # noqa: E731
    p.frame(log_ticks(lo, hi), y_log, x_ticks)
    for _, col, colour, dash in series:
        p.line([(r["elapsed_s"], r[col]) for r in load], y_log, colour, dash=dash)
    p.legend([(name, colour, dash) for name, _, colour, dash in series])

    # 3. throughput and errors
    top += panel_h + gap
    p = Panel(svg, top, panel_h, x_max, f"Throughput per kind, and errors ({total_errors} in all)", "req/s")
    rps_max = max([r["rps"] for r in load] or [1])
    ticks = nice_ticks(0, max(rps_max * 1.1, 1), 5)
    y_of = linear(p, 0, ticks[-1])
    p.frame(ticks, y_of, x_ticks)
    err_max = max([r["errors"] for r in rows] or [0])
    if err_max:
        err_ticks = nice_ticks(0, err_max, 4)
        y_err = linear(p, 0, err_ticks[-1])
        for previous, r in zip([None] + rows, rows):  # a bar across its window
            if r["errors"]:
                x0 = p.x(previous["elapsed_s"] if previous else 0)
                x1 = p.x(r["elapsed_s"])
                bar = max(2.0, x1 - x0 - 1)
                y = y_err(r["errors"])
                svg.append(f'<rect x="{x1 - bar:.1f}" y="{y:.1f}" width="{bar:.1f}" '
                           f'height="{p.top + p.height - y:.1f}" fill="{ERROR_COLOUR}" fill-opacity="0.6"/>')
        for t in err_ticks:
            svg.append(f'<text x="{p.left + p.width + 4}" y="{y_err(t) + 4:.1f}" class="tick" '
                       f'fill="{ERROR_COLOUR}">{label(t)}</text>')
    else:
        svg.append(f'<text x="{p.left + 8}" y="{p.top + 16}" class="axis" fill="#2a7a2a">no errors</text>')
    times = [r["elapsed_s"] for r in load]
    p.line(list(zip(times, [r["rps"] for r in load])), y_of, "#333", width=2.2)
    dt = [WINDOW] * len(load)
    for i, r in enumerate(load):  # the last window may be shorter
        previous = rows[i]["elapsed_s"]
        dt[i] = max(r["elapsed_s"] - previous, 1e-9)
    for k in KINDS:
        p.line(list(zip(times, [r[f"requests_{k}"] / d for r, d in zip(load, dt)])), y_of, KIND_COLOURS[k], width=1.4)
    p.legend([("all", "#333", None)] + [(k, KIND_COLOURS[k], None) for k in KINDS]
             + ([("errors (right)", ERROR_COLOUR, None)] if err_max else []))
    svg.append(f'<text x="{p.left + p.width / 2}" y="{p.top + p.height + 36}" class="axis" '
               f'text-anchor="middle">elapsed (s)</text>')
    svg.append("</svg>")
    return "\n".join(svg) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--out", required=True)
    parser.add_argument("--replica", action="append", required=True, help="base URL, once per replica")
    parser.add_argument("--pid", action="append", type=int, required=True, help="its process id, in the same order")
    parser.add_argument("--log", action="append", help="its log file, in the same order")
    parser.add_argument("--admin-password", required=True)
    parser.add_argument("--label", default="latchkey")
    parser.add_argument("--rate", type=float, default=300)
    parser.add_argument("--login-rate", type=float, default=4)
    parser.add_argument("--workers", type=int, default=16)
    args = parser.parse_args()
    if len(args.replica) != len(args.pid):
        parser.error("one --pid per --replica")
    if args.rate <= 0 or args.workers < 1 or not 0 <= args.login_rate * 3 < args.rate:
        parser.error("need rate > 0, workers >= 1 and 0 <= 3 × login rate < rate")
    os.makedirs(args.out, exist_ok=True)
    sys.exit(Run(args).go())


if __name__ == "__main__":
    main()
