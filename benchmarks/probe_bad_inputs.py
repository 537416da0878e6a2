"""A skeptic's probe of bad inputs and faults for the ``shorthorizon`` command line.

Every case is a command line (sometimes with a small setup: a folder, a corrupt file, a user's
task module) and what a serious tool does with it: for bad input, exit status 2 with ONE line on
stderr naming the key, flag, file or problem, no traceback and no output folder left behind;
otherwise exit 0 (or 3, 130) with the right behaviour. The probe counts the cases that hold.

    python benchmarks/probe_bad_inputs.py [OUTDIR]          # default /tmp/probe
    python benchmarks/probe_bad_inputs.py OUTDIR --only grid  # one category prefix

Cheap cases (validation that exits before any work) run in a fork server: one process imports
``shorthorizon.cli`` once and forks a child per case, which calls ``entry()`` with the case's
argv, its stdout and stderr redirected to files (an uncaught exception is printed as the
interpreter would and gives status 1). Cases that touch the environment, signals or user modules
run as real subprocesses (``python -m shorthorizon.cli``). Cases run one after another. Writes
OUTDIR/report.md (every case) and OUTDIR/results.json, and prints a tally by category.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SRC = REPO / "src"
PY = sys.executable
TINY_NQM_MAP = {"dim": "8", "horizon": "20", "fit_steps": "60", "kappas": "1,100", "noises": "0,1",
                "paper_kappa": "100"}
TINY_NQM = {"dim": "20", "horizon": "20", "fit_steps": "50", "fixed_fit_steps": "30", "tail_dims": "5",
            "fig1_steps": "10", "fig1_trajectories": "2", "fig2_horizons": "1,5,20", "fig2_decay_steps": "5"}
TINY_EST = {"dim": "10", "horizon": "20", "truncations": "5,20", "estimators": "forward,reverse,es,pes",
            "estimates": "20", "smoothing_samples": "2", "exact_steps": "100", "fit_inner_steps": "1000",
            "fit_particles": "2"}


@dataclasses.dataclass
class Result:
    rc: int | None  # None: killed at the timeout
    out: str
    err: str
    seconds: float

    @property
    def lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]

    @property
    def first(self) -> str:
        lines = self.lines
        if "Traceback" in self.err:  # a traceback's last line says what was raised
            return "TRACEBACK: " + lines[-1] if lines else "TRACEBACK"
        return lines[0] if lines else ""


@dataclasses.dataclass
class Case:
    id: str
    category: str
    argv: list[str]  # after `shorthorizon`
    expect: str
    check: object  # Result -> (bool, str)
    setup: object = None  # () -> None, before the run
    mode: str = "fork"  # fork | sub
    env: dict | None = None
    timeout: float = 30
    out: Path | None = None  # the output folder the case names (checked absent after a refusal)
    sigint_after: float | None = None
    sigkill_after: float | None = None
    after: object = None  # Result -> None: extra work after the run (a rerun), before the check
    result: Result | None = None
    passed: bool = False
    why: str = ""


# --- running ---------------------------------------------------------------------------------
def run_fork(case: Case, tmp: Path) -> Result:
    outf, errf = tmp / "stdout", tmp / "stderr"
    sys.stdout.flush()
    sys.stderr.flush()
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.setpgid(0, 0)
            fo = os.open(outf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            fe = os.open(errf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(fo, 1)
            os.dup2(fe, 2)
            if case.env:
                os.environ.update(case.env)
                if "PYTHONPATH" in case.env:
                    sys.path.insert(0, case.env["PYTHONPATH"])
            sys.argv = ["shorthorizon", *case.argv]
            signal.signal(signal.SIGINT, signal.default_int_handler)
            from shorthorizon.cli import entry

            code = 0
            try:
                entry()
            except SystemExit as e:
                if e.code is None:
                    code = 0
                elif isinstance(e.code, int):
                    code = e.code
                else:
                    print(e.code, file=sys.stderr)
                    code = 1
            except BaseException:
                traceback.print_exc()
                code = 1
        except BaseException:
            traceback.print_exc()
            code = 1
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
    deadline = start + case.timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            rc = os.waitstatus_to_exitcode(status)
            break
        if time.perf_counter() > deadline:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)
            rc = None
            break
        time.sleep(0.02)
    return Result(rc, outf.read_text(errors="replace"), errf.read_text(errors="replace"),
                  time.perf_counter() - start)


def sub_env(extra: dict | None) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), *([extra.pop("PYTHONPATH")] if extra and "PYTHONPATH" in extra
                                                      else [])])
    env.update(extra or {})
    return env


def _default_sigint():
    """Ctrl-C as in a terminal: a probe started in the background has SIGINT ignored, and the
    children would inherit that (the CLI leaves an ignored SIGINT ignored, as a background job)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_sub(case: Case, tmp: Path) -> Result:
    outf, errf = open(tmp / "stdout", "w"), open(tmp / "stderr", "w")
    start = time.perf_counter()
    proc = subprocess.Popen([PY, "-m", "shorthorizon.cli", *case.argv], stdout=outf, stderr=errf,
                            env=sub_env(dict(case.env or {})), start_new_session=True, preexec_fn=_default_sigint)
    rc = None
    try:
        if case.sigint_after is not None or case.sigkill_after is not None:
            delay = case.sigint_after if case.sigint_after is not None else case.sigkill_after
            try:
                proc.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGINT if case.sigint_after is not None else signal.SIGKILL)
        rc = proc.wait(timeout=case.timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        rc = None
    outf.close()
    errf.close()
    return Result(rc, (tmp / "stdout").read_text(errors="replace"), (tmp / "stderr").read_text(errors="replace"),
                  time.perf_counter() - start)


# --- checks ----------------------------------------------------------------------------------
def _words_in(line: str, words) -> list[str]:
    return [w for w in words if w.lower() not in line.lower()]


def reject(*words, out: Path | None = None, rc: int = 2):
    """Exit ``rc`` (2), one line on stderr holding every word, no traceback, ``out`` not created."""
    def check(r: Result):
        if r.err.lstrip().startswith("usage:"):  # argparse's own refusal: usage lines and one error line
            return reject_argparse(*words, out=out)(r)
        if r.rc is None:
            return False, "still running at the timeout (accepted, started work)"
        if "Traceback" in r.err:
            return False, f"traceback, rc {r.rc}"
        if r.rc != rc:
            return False, f"rc {r.rc}, expected {rc}"
        if len(r.lines) != 1:
            return False, f"{len(r.lines)} stderr lines"
        missing = _words_in(r.lines[0], words)
        if missing:
            return False, f"line does not name {missing}"
        if out is not None and Path(out).exists():
            return False, f"left {out} behind"
        return True, ""
    return check


def reject_argparse(*words, out: Path | None = None):
    """argparse's own refusal: exit 2, its usage lines and ONE error line holding every word, no
    traceback (counted apart: the usage lines are argparse's convention, not one line)."""
    def check(r: Result):
        if r.rc != 2 or "Traceback" in r.err:
            return False, f"rc {r.rc}"
        errs = [l for l in r.lines if "error:" in l]
        if len(errs) != 1:
            return False, f"{len(errs)} error lines"
        missing = _words_in(errs[0], words)
        if missing:
            return False, f"error line does not name {missing}"
        if out is not None and Path(out).exists():
            return False, f"left {out} behind"
        return True, "argparse usage + error line"
    return check


def succeed(extra=None, rc: int = 0):
    """Exit ``rc`` (0), no traceback, and ``extra(result)`` -> (bool, why)."""
    def check(r: Result):
        if r.rc is None:
            return False, "timeout"
        if "Traceback" in r.err:
            return False, f"traceback, rc {r.rc}"
        if r.rc != rc:
            return False, f"rc {r.rc}, expected {rc}"
        return extra(r) if extra else (True, "")
    return check


def no_crash(out: Path | None = None):
    """Huge values: a refusal in one line, or work started (a timeout), or done; never a traceback."""
    def check(r: Result):
        if "Traceback" in r.err:
            return False, f"traceback, rc {r.rc}"
        if r.rc is None or r.rc == 0:
            return True, ""
        if r.rc == 2 and len(r.lines) == 1:
            return True, ""
        return False, f"rc {r.rc}, {len(r.lines)} stderr lines"
    return check


# --- cases -----------------------------------------------------------------------------------
class Probe:
    def __init__(self, root: Path):
        self.root = root
        self.runs = root / "runs"
        self.data = root / "data"
        self.mods = root / "mods"
        self.cases: list[Case] = []
        self.n = 0

    def out(self, name: str = "") -> Path:
        self.n += 1
        return self.runs / f"c{self.n:04d}{name}"

    def add(self, category, argv, expect, check, **kw):
        self.cases.append(Case(f"{category}#{len(self.cases) + 1}", category, [str(a) for a in argv], expect, check,
                               **kw))

    # -- setup
    def prepare(self):
        for p in (self.runs, self.mods):
            p.mkdir(parents=True, exist_ok=True)
        if not (self.data / "mnist").exists():
            subprocess.run([PY, "-c", "import sys; from shorthorizon.data import make_fake_dataset as m; "
                            f"m({str(self.data)!r}, 'mnist', n_train=500, n_test=1000, seed=0)"],
                           env=sub_env({}), check=True)
        (self.mods / "probe_tasks.py").write_text(TASKS_MODULE)
        (self.mods / "probe_import_error.py").write_text("raise RuntimeError('broken at import')\n")
        (self.mods / "probe_syntax.py").write_text("def f(:\n")
        (self.mods / "probe_sysexit.py").write_text("import sys\nsys.exit(5)\n")
        self.afile = self.root / "a_file.txt"
        self.afile.write_text("not a folder\n")

    def image(self, **extra) -> list[str]:
        """--set pairs of the fake MNIST (data_dir, verify off)."""
        sets = {"data_dir": str(self.data), "verify": "false", **extra}
        return [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]


def sets(d: dict) -> list[str]:
    return [a for k, v in d.items() for a in ("--set", f"{k}={v}")]


TASKS_MODULE = '''
import jax, jax.numpy as jnp
from shorthorizon.tasks import mlp

def good(input_shape, num_classes):
    return mlp(input_shape, hidden=(8,), num_classes=num_classes)

def keyerror(input_shape, num_classes):
    raise KeyError("missing")

def zerodiv(input_shape, num_classes):
    return 1 / 0

def asserts(input_shape, num_classes):
    assert False, "assertion in factory"

def runtime2(input_shape, num_classes):
    raise RuntimeError("first line of the problem\\nsecond line of the problem")

def returns_dict(input_shape, num_classes):
    return {"init": None}

def returns_none(input_shape, num_classes):
    return None

def one_arg(input_shape):
    return good(input_shape, 10)

def too_few_logits(input_shape, num_classes):
    return mlp(input_shape, hidden=(8,), num_classes=7)

def nan_loss(input_shape, num_classes):
    t = good(input_shape, num_classes)
    def loss(*a):
        l, aux = t.loss(*a)
        return l * jnp.nan, aux
    return t._replace(loss=loss)

def inf_after(input_shape, num_classes):
    t = good(input_shape, num_classes)
    def loss(*a):
        l, aux = t.loss(*a)
        return l * 1e38 * 1e38, aux
    return t._replace(loss=loss)

def loss_raises(input_shape, num_classes):
    t = good(input_shape, num_classes)
    def loss(*a):
        raise ZeroDivisionError("loss divided by zero")
    return t._replace(loss=loss)

def scalar_loss(input_shape, num_classes):
    t = good(input_shape, num_classes)
    return t._replace(loss=lambda *a: t.loss(*a)[0])

def vector_loss(input_shape, num_classes):
    t = good(input_shape, num_classes)
    def loss(*a):
        l, aux = t.loss(*a)
        return jnp.stack([l, l]), aux
    return t._replace(loss=loss)

def int_params(input_shape, num_classes):
    t = good(input_shape, num_classes)
    return t._replace(init=lambda key: jax.tree.map(lambda a: a.astype(jnp.int32), t.init(key)))

def init_raises(input_shape, num_classes):
    t = good(input_shape, num_classes)
    def init(key):
        raise IndexError("init index out of range")
    return t._replace(init=init)

def apply_raises(input_shape, num_classes):
    t = good(input_shape, num_classes)
    def evaluate(*a):
        raise TypeError("evaluate went wrong")
    return t._replace(evaluate=evaluate)

def slow_exit(input_shape, num_classes):
    import sys
    sys.exit(7)

NOT_CALLABLE = 3
'''


# --- the grid of config values -----------------------------------------------------------------
def bad_values(kind_many: bool, kind: type, wanted: str, name: str) -> list[tuple[str, str]]:
    """(value, label) pairs that the key must refuse."""
    v: list[tuple[str, str]] = []
    optional = wanted.startswith("empty or") or wanted.startswith("an existing folder") or wanted == "any value of its type"
    if not kind_many:
        if kind is bool:
            return [("maybe", "word for bool"), ("2", "2 for bool"), ("", "empty"), ("nan", "nan for bool"),
                    ("-1", "-1 for bool")]
        if kind is str:
            if name == "data_dir":
                return [("/nonexistent/probe-dir", "missing folder"), ("FILE", "file in place of folder")]
            if "task" in wanted:
                return [("bogus", "unknown name"), ("", "empty"), ("nomodule_xyz:f", "missing module"),
                        ("os:getcwd", "not a factory")]
            return [("bogus", "unknown name"), ("", "empty")]
        v = [("abc", "word"), ("", "empty"), ("nan", "nan"), ("inf", "inf"), ("-inf", "-inf"), ("1e999", "1e999"),
             ("true", "bool"), ("[1]", "list for scalar")]
        if kind is int:
            v += [("1.5", "float for int"), ("-1", "negative")]
            if "positive" in wanted:
                v += [("0", "zero")]
            if wanted.startswith("2 or more"):
                v += [("1", "1 for dim"), ("0", "zero")]
            if "2**32" in wanted:
                v += [("4294967296", "2**32"), ("18446744073709551616", "2**64")]
        else:
            v += [("-1", "negative")]
            if "positive" in wanted:
                v += [("0", "zero"), ("1e-400", "underflow to 0")]
            if wanted == "in [0, 1)":
                v += [("1", "one"), ("1.5", "above 1"), ("-0.1", "negative fraction")]
            if "709" in wanted:
                v += [("710", "past log max")]
            if wanted.startswith("1 or more"):
                v += [("0.5", "below 1")]
        return v
    # tuples
    if kind is str:
        if name == "hyper":
            return [("lr", "no ="), ("=1", "no name"), ("foo=1", "unknown hyper"), ("momentum=abc", "word value"),
                    ("momentum=nan", "nan value")]
        if name == "adapt":
            return [("bogus", "unknown"), ("lr:1:0", "low>high"), ("lr:abc:1", "word bound"), ("lr:-1:1", "negative bound"),
                    ("lr,lr", "duplicate")]
        v = [("bogus", "unknown name"), ("[", "broken JSON"), ("{}", "JSON object")]
        if not optional:
            v += [("", "empty")]
        if "distinct" in wanted:
            first = {"estimators": "forward", "lookaheads": "stochastic", "protocol": "meta", "task": "mlp"}.get(name, "x")
            v += [(f"{first},{first}", "duplicate")]
        return v
    v = [("abc", "word"), ("1,abc", "word item"), ("[", "broken JSON"), ("{}", "JSON object"), ("[null]", "null item"),
         ("nan", "nan"), ("inf", "inf"), ("[1e999]", "1e999 item"), ("[true]", "bool item"), ("[[1]]", "nested")]
    if not optional:
        v += [("", "empty")]
    if kind is int:
        v += [("[1.5]", "float item for int"), ("-1", "negative"), ("0", "zero")]
    else:
        v += [("-1", "negative")]
        if "positive" in wanted:
            v += [("0", "zero")]
    if "distinct" in wanted:
        v += [("3,3", "duplicate")]
    if "LOW,HIGH" in wanted:
        v += [("2,1", "low>high"), ("1", "one item"), ("1,2,3", "three items"), ("1,1", "low=high")]
        if "in [0, 1)" in wanted:
            v += [("0.5,1", "high 1")]
    if name in ("settings", "init"):
        v += [("1,0.5", "two items"), ("1,0.5,1.5", "momentum 1.5"), ("-1,0.5,0.5", "negative lr")]
    return v


BASES = {
    "nqm": ("nqm", lambda p: sets(TINY_NQM)),
    "nqm-map": ("nqm-map", lambda p: sets(TINY_NQM_MAP)),
    "estimators": ("estimators", lambda p: sets(TINY_EST)),
    "offline": ("offline", lambda p: p.image(horizons="5,10", warm_start_steps="5", eval_batches="2",
                                             surface_samples="8", surface_chunk="4", init_lr0="0.01,0.1",
                                             init_decay_exponent="1.0,10.0", meta_steps="4", meta_chunk="2",
                                             curve_points="2", dataset="mnist")),
    "online": ("online", lambda p: p.image(task="mlp", mlp_steps="40", meta_steps="2", interval="5", chunks="2",
                                           mlp_batch_size="20", mlp_init_lrs="0.05", eval_examples="400",
                                           dataset="mnist")),
    "truncated": ("truncated", lambda p: p.image(dataset="mnist", horizon="40", truncation="10",
                                                 estimators="forward,reverse", fit_particles="2",
                                                 fit_inner_steps="400", warm_start_steps="5", eval_batches="2",
                                                 surface_samples="4", surface_chunk="2", curve_points="4",
                                                 meta_chunk="5")),
    "bias": ("bias", lambda p: p.image(dataset="mnist", horizon="20", short="5", seeds="2", surface_samples="6",
                                       surface_chunk="6", zoom_samples="3", eval_batches="2", warm_start_steps="3",
                                       curve_points="2")),
}


def grid(p: Probe):
    sys.path.insert(0, str(SRC))
    from shorthorizon import config as C
    from shorthorizon import experiments

    for label, (command, base) in BASES.items():
        module = experiments.get(command)
        preset = module.PRESETS["quick"]
        for f in dataclasses.fields(preset):
            many, kind = C._kind(f)
            rule = C.rule_of(preset, f.name)
            for value, what in bad_values(many, kind, rule.wanted, f.name):
                if value == "FILE":
                    value = str(p.afile)
                out = p.out()
                argv = [command, "--preset", "quick", "--out", out, *base(p), "--set", f"{f.name}={value}"]
                p.add(f"grid:{label}", argv, f"{f.name}={value!r} ({what}): exit 2, one line naming {f.name!r}",
                      reject(f.name, out=out), out=out, timeout=25)


def cross(p: Probe):
    """Constraints between keys, and flags."""
    def R(cat, command, base, extra, words, expect, **kw):
        out = p.out()
        p.add(cat, [command, "--preset", "quick", "--out", out, *base, *extra], expect, reject(*words, out=out),
              out=out, timeout=kw.pop("timeout", 25), **kw)

    nb = sets(TINY_NQM)
    R("cross", "nqm", nb, sets({"tail_dims": "50"}), ["tail_dims"], "tail_dims > dim")
    def N(command, base, extra, expect, timeout=25):
        out = p.out()
        p.add("cross", [command, "--preset", "quick", "--out", out, *base, *extra], expect + ": accepted (or one line)",
              no_crash(), out=out, timeout=timeout)
    N("nqm", nb, sets({"fig2_horizons": "1,5,500"}), "fig2 horizon > horizon (its own horizons)")
    R("cross", "nqm", nb, sets({"fig1_trajectories": "100000000000"}), [], "huge trajectories", timeout=25)
    eb = sets(TINY_EST)
    R("cross", "estimators", eb, sets({"truncations": "5,50"}), ["truncations"], "truncation > horizon")
    R("cross", "estimators", eb, sets({"init": "5,0.3,0.5"}), ["init"], "init lr outside lr_range")
    N("estimators", eb, sets({"estimators": "fd"}), "fd on the NQM (float64)")
    ob = BASES["offline"][1](p)
    R("cross", "offline", ob, sets({"horizons": "5,10", "init_lr0": "5"}), ["init_lr0"], "init_lr0 outside box")
    R("cross", "offline", ob, sets({"lr0_range": "0.001,0.002", "init_lr0": "0.01"}), ["init_lr0"],
      "init_lr0 outside user box")
    R("cross", "offline", ob, sets({"init_decay_exponent": "1000"}), ["init_decay_exponent"], "init_decay_exponent outside box")
    R("cross", "offline", ob, sets({"smd_from_surface": "100"}), ["smd_from_surface"], "smd_from_surface > samples")
    R("cross", "offline", ob, sets({"batch_size": "100000"}), ["100000", "500"], "batch larger than the training set")
    R("cross", "offline", ob, sets({"dataset": "cifar10"}), ["cifar10"], "dataset absent from data_dir")
    N("offline", ob, sets({"optimizer": "adamw"}), "adamw without hyper (optax's default weight decay)")
    R("cross", "offline", ob, sets({"adapt": "weight_decay"}), ["adapt"], "adapt a hyper momentum lacks")
    R("cross", "offline", ob, sets({"estimator": "fd"}), ["fd"], "fd estimator without x64")
    N("offline", ob, ["--task", "cnn"], "cnn on offline")
    R("cross", "offline", ob, ["--dataset", "bogus"], ["bogus"], "--dataset flag bogus")
    R("cross", "offline", ob, ["--task", "bogus"], ["bogus"], "--task flag bogus")
    onb = BASES["online"][1](p)
    R("cross", "online", onb, sets({"eval_examples": "100000"}), ["eval_examples"], "eval_examples > test set")
    R("cross", "online", onb, sets({"interval": "100"}), ["interval"], "interval > steps")
    N("online", onb, sets({"estimator": "pes", "lookaheads": "deterministic"}),
      "pes with lookaheads=deterministic (documented: PES has no lookahead; the key is ignored)", timeout=60)
    R("cross", "online", onb, sets({"adapt": "weight_decay"}), ["weight_decay"], "adapt a hyper momentum lacks")
    R("cross", "online", onb, sets({"mlp_batch_size": "100000"}), ["batch"], "batch larger than the training set")
    tb = BASES["truncated"][1](p)
    R("cross", "truncated", tb, sets({"truncation": "100"}), ["truncation"], "truncation > horizon")
    R("cross", "truncated", tb, sets({"fit_inner_steps": "10"}), ["fit_inner_steps"], "budget below one window")
    R("cross", "truncated", tb, sets({"init_lr0": "50"}), ["init_lr0"], "init outside box")
    bb = BASES["bias"][1](p)
    R("cross", "bias", bb, sets({"short": "20"}), ["short"], "short = horizon")
    R("cross", "bias", bb, sets({"short": "50"}), ["short"], "short > horizon")
    R("cross", "bias", bb, ["--short", "5,abc"], ["short"], "--short word")
    R("cross", "bias", bb, ["--horizon", "abc"], ["horizon"], "--horizon word")
    R("cross", "bias", bb, ["--horizon", "-5"], ["horizon"], "--horizon negative")
    R("cross", "bias", bb, ["--seeds", "0"], ["seeds"], "--seeds 0")
    R("cross", "bias", bb, ["--seeds", "1.5"], ["seeds"], "--seeds 1.5")
    R("cross", "bias", bb, ["--schedule", "bogus"], ["schedule"], "--schedule bogus")
    R("cross", "bias", bb, ["--protocol", "bogus"], ["protocol"], "--protocol bogus")
    R("cross", "bias", bb, ["--protocol", "meta", "--schedule", "cosine"], ["meta"], "meta protocol with cosine")
    R("cross", "bias", bb, ["--optimizer", "bogus"], ["optimizer"], "--optimizer bogus")
    R("cross", "bias", bb, ["--adapt", "weight_decay"], ["weight_decay"], "--adapt weight_decay for momentum")
    R("cross", "bias", bb, ["--adapt", "bogus"], ["bogus"], "--adapt unknown name")
    R("cross", "bias", bb, ["--adapt", "lr"], ["lr"], "--adapt lr (always fitted)")
    R("cross", "bias", bb, ["--optimizer", "adamw", "--adapt", "weight_decay:1:0"], ["weight_decay"], "adapt low>high")
    R("cross", "bias", bb, ["--task", "nomodule_xyz:f"], ["nomodule_xyz"], "task module missing")
    R("cross", "bias", bb, ["--dataset", "cifar10"], ["cifar10"], "dataset absent from data_dir")
    R("cross", "bias", bb, sets({"lr0_range": "1,0.5"}), ["lr0_range"], "lr0_range reversed")
    R("cross", "bias", bb, sets({"hyper": "weight_decay=0.1"}), ["weight_decay"], "hyper the optimizer lacks")


def flags(p: Probe):
    def R(argv, words, expect, out=None, **kw):
        p.add("flags", argv, expect, reject(*words, out=out), out=out, timeout=kw.pop("timeout", 25), **kw)

    def A(argv, words, expect, out=None, **kw):
        p.add("flags:argparse", argv, expect + " (argparse: usage + one error line)", reject_argparse(*words, out=out),
              out=out, timeout=kw.pop("timeout", 25), **kw)

    o = p.out()
    A(["nqm", "--preset", "bogus", "--out", o], ["preset"], "unknown preset", out=o)
    o = p.out()
    A(["nqm", "--executor", "bogus", "--out", o], ["executor"], "unknown executor", out=o)
    o = p.out()
    R(["nqm", "--ray-address", "127.0.0.1:1", "--out", o], ["--executor ray"], "--ray-address without ray", out=o)
    o = p.out()
    R(["nqm", "--set", "dim", "--out", o], ["dim"], "--set without =", out=o)
    o = p.out()
    R(["nqm", "--set", "=5", "--out", o], ["=5"], "--set without key", out=o)
    o = p.out()
    R(["nqm", "--set", "dim=5", "--set", "dim=abc", "--out", o], ["dim"], "duplicate --set, bad last", out=o)
    o = p.out()
    R(["nqm", "--set", "DIM=5", "--out", o], ["DIM"], "key in capitals", out=o)
    o = p.out()
    R(["nqm", "--set", "horizons=5", "--out", o], ["horizons", "horizon"], "near-miss key lists known", out=o)
    o = p.out()
    A(["nqm", "--out", o, "--bogus-flag"], ["bogus"], "unknown flag", out=o)
    A(["bogus-command"], ["bogus"], "unknown command")
    A([], ["command"], "no command")
    A(["nqm", "--out"], ["out"], "--out without value")
    A(["bias", "--horizon"], ["horizon"], "--horizon without value")
    A(["unroll", "--steps", "3"], ["lr"], "unroll missing --lr")
    o = p.out()
    A(["nqm", "--out", o, "--set", "dim=5", "extra_positional"], ["extra_positional"], "stray positional", out=o)
    A(["reproduce", "--only", "bogus"], ["bogus"], "reproduce --only bogus")
    o = p.out()
    R(["reproduce", "--out", o, "--set", "bogus_key=1"], ["bogus_key"], "reproduce unknown key", out=o)
    o = p.out()
    R(["reproduce", "--out", o, "--set", "dim=abc"], ["dim"], "reproduce bad value", out=o)
    o = p.out()
    R(["reproduce", "--out", o, "--only", "offline", "--set", "data_dir=/nonexistent/x"], ["data_dir"],
      "reproduce data_dir missing", out=o)
    o = p.out()
    R(["reproduce", "--out", o, "--set", "seeds=0"], ["seeds"], "reproduce seeds=0", out=o)
    o = p.out()
    p.add("flags", ["reproduce", "--out", o, "--only", "nqm", "nqm"], "reproduce --only duplicate: refused or run once",
          no_crash(), timeout=10)
    o = p.out()
    R(["nqm", "--out", o, "--executor", "ray", "--ray-address", "127.0.0.1:1"], ["127.0.0.1:1"],
      "unreachable ray cluster", out=o, timeout=90)
    # data subcommands
    A(["data", "download", "bogus"], ["bogus"], "download unknown dataset")
    R(["data", "list", "--data-dir", "/nonexistent/x"], ["/nonexistent/x"], "data list missing dir")
    R(["data", "list", "--data-dir", str(p.afile)], [str(p.afile)], "data list file as dir")
    A(["data"], ["data"], "data with no subcommand")
    p.add("flags", ["data", "list", "--data-dir", str(p.data)], "data list on fake data: exit 0, names it",
          succeed(lambda r: (("mnist" in r.out + r.err), "mnist not listed")), timeout=60)


def unroll(p: Probe):
    d = str(p.data)
    base = ["unroll", "--task", "mlp", "--dataset", "mnist", "--data-dir", d, "--no-verify", "--lr", "0.1",
            "--momentum", "0.9", "--steps", "3", "--batch-size", "10", "--eval-batches", "1"]

    def with_(flag, value):
        argv = list(base)
        if flag in argv:
            argv[argv.index(flag) + 1] = value
        else:
            argv += [flag, value]
        return argv

    bad = {"--lr": ["abc", "nan", "inf", "-1", "0", "1e999", ""],
           "--steps": ["0", "-1", "1.5", "1e999", "abc", "nan"],
           "--momentum": ["1", "1.5", "-0.1", "nan", "abc"],
           "--decay-exponent": ["nan", "-1", "inf", "abc"],
           "--decay-steps": ["0", "-1", "nan", "inf"],
           "--batch-size": ["0", "-1", "1.5", "abc", "100000"],
           "--eval-batches": ["0", "-1", "abc"],
           "--seed": ["-1", "4294967296", "18446744073709551616", "abc", "1.5"],
           "--particles": ["0", "-1", "abc"],
           "--sigma": ["0", "-1", "nan", "inf"],
           "--weight-decay": ["-1", "nan", "abc"],
           "--optimizer": ["bogus"], "--estimator": ["bogus"], "--lookahead": ["bogus"],
           "--task": ["bogus", "nomodule_xyz:f", "os:getcwd", ""], "--dataset": ["bogus", "cifar10"],
           "--data-dir": ["/nonexistent/x", str(p.afile)]}
    for flag, values in bad.items():
        for value in values:
            argv = with_(flag, value)
            if flag in ("--particles", "--sigma"):
                argv += ["--estimator", "es"]
            if flag == "--weight-decay":
                argv = with_("--optimizer", "adamw") + ["--weight-decay", value]
            word = flag.lstrip("-").replace("-", "_") if flag not in ("--task", "--dataset", "--data-dir") else (value or "task")
            words = [word if flag not in ("--optimizer", "--estimator", "--lookahead") else value]
            if flag == "--weight-decay":
                words = ["weight"]
            elif flag not in ("--task", "--dataset", "--data-dir", "--optimizer", "--estimator", "--lookahead"):
                words = [flag.lstrip("-").split("-")[0]]
            p.add("unroll:flags", argv, f"unroll {flag} {value!r}: exit 2, one line", reject(*words), timeout=60)
    p.add("unroll:flags", [a for a in base if a not in ("--momentum", "0.9")], "momentum optimizer without --momentum",
          reject("momentum"), timeout=60)
    p.add("unroll:flags", with_("--optimizer", "adamw"), "adamw without --weight-decay", reject("weight"), timeout=60)
    p.add("unroll:flags", [a for i, a in enumerate(base) if a != "--lr" and (i == 0 or base[i - 1] != "--lr")],
          "no --lr", reject("lr"), timeout=60)
    p.add("unroll:flags", base + ["--estimator", "fd"], "fd without --x64", reject("x64"), timeout=60)
    p.add("unroll:flags", base, "a good unroll: exit 0, JSON on stdout",
          succeed(lambda r: (_json_ok(r.out), "stdout is not one JSON object")), timeout=120)
    p.add("unroll:flags", with_("--lr", "1e6"), "lr 1e6: diverged, exit 3, JSON null and diverged true",
          succeed(lambda r: (_json_ok(r.out) and json.loads(r.out).get("diverged") is True and "NaN" not in r.out
                             and "Infinity" not in r.out, "JSON not marked diverged / not strict"), rc=3), timeout=120)


def _json_ok(text: str) -> bool:
    try:
        json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
        return True
    except ValueError:
        return False


def datasets(p: Probe):
    """Damaged data folders, each given to unroll (cheap) and some to offline."""
    import gzip

    src = p.data / "mnist"
    files = sorted(f.name for f in src.iterdir())
    root = p.root / "baddata"

    def variant(name, damage):
        folder = root / name
        if folder.exists():
            shutil.rmtree(folder)
        shutil.copytree(src, folder / "mnist")
        damage(folder / "mnist")
        return folder

    def trunc(f, n):
        data = f.read_bytes()
        f.write_bytes(data[:n])

    cases = []
    for f in files:
        cases.append((f"missing {f}", lambda d, f=f: (d / f).unlink(), f))
        cases.append((f"dir in place of {f}", lambda d, f=f: ((d / f).unlink(), (d / f).mkdir()), f))
        cases.append((f"{f} truncated to 100 bytes", lambda d, f=f: trunc(d / f, 100), f))
        cases.append((f"{f} empty", lambda d, f=f: (d / f).write_bytes(b""), f))
        cases.append((f"{f} random bytes", lambda d, f=f: (d / f).write_bytes(os.urandom(5000)), f))
    lab = [f for f in files if "labels" in f and "train" in f][0]
    img = [f for f in files if "images" in f and "train" in f][0]

    def labels_out_of_range(d):
        raw = bytearray(gzip.decompress((d / lab).read_bytes()))
        for i in range(8, len(raw)):
            raw[i] = 200
        (d / lab).write_bytes(gzip.compress(bytes(raw)))

    def count_mismatch(d):
        raw = bytearray(gzip.decompress((d / lab).read_bytes()))
        (d / lab).write_bytes(gzip.compress(bytes(raw[:-50])))

    def wrong_magic(d):
        raw = bytearray(gzip.decompress((d / img).read_bytes()))
        raw[2] = 0x0C
        (d / img).write_bytes(gzip.compress(bytes(raw)))

    cases += [("train labels all 200 (out of range)", labels_out_of_range, lab),
              ("label count 50 short of the images", count_mismatch, lab),
              ("images with a wrong IDX dtype byte", wrong_magic, img)]
    for i, (what, damage, fname) in enumerate(cases):
        folder = variant(f"v{i}", damage)
        argv = ["unroll", "--task", "mlp", "--dataset", "mnist", "--data-dir", folder, "--no-verify", "--lr", "0.1",
                "--momentum", "0.9", "--steps", "3", "--batch-size", "10", "--eval-batches", "1"]
        word = fname.split(".")[0] if "out of range" not in what and "count" not in what else "label"
        p.add("data:unroll", argv, f"unroll on data with {what}: exit 2, one line naming the file/problem, no fallback",
              reject(word), timeout=90)
        if i % 5 in (0, 1) or i >= len(cases) - 3:  # missing and dir-in-place of every file, and the content ones
            out = p.out()
            argv = ["offline", "--preset", "quick", "--out", out, *BASES["offline"][1](p), "--set", f"data_dir={folder}"]
            p.add("data:offline", argv, f"offline on data with {what}: exit 2, one line, no folder",
                  reject(word, out=out), out=out, timeout=90)
    # verified data that does not match the published sums
    out = p.out()
    p.add("data:verify", ["offline", "--preset", "quick", "--out", out,
                          *BASES["offline"][1](p), "--set", "verify=true"],
          "fake MNIST with verify on: exit 2, one line naming the checksum mismatch", reject("mnist", out=out), out=out,
          timeout=90)
    p.add("data:verify", ["unroll", "--task", "mlp", "--dataset", "mnist", "--data-dir", p.data, "--lr", "0.1",
                          "--momentum", "0.9", "--steps", "3", "--batch-size", "10"],
          "unroll on fake MNIST without --no-verify: exit 2, one line", reject("mnist"), timeout=90)
    p.add("data:env", ["unroll", "--task", "mlp", "--dataset", "mnist", "--lr", "0.1", "--momentum", "0.9",
                       "--steps", "3", "--batch-size", "10", "--no-verify"],
          "SHORTHORIZON_DATA=/nonexistent: exit 2 naming it (or the dataset), no fallback",
          reject("/nonexistent/probe-env"), mode="sub", env={"SHORTHORIZON_DATA": "/nonexistent/probe-env"}, timeout=90)
    p.add("data:env", ["unroll", "--task", "mlp", "--dataset", "mnist", "--lr", "0.1", "--momentum", "0.9",
                       "--steps", "3", "--batch-size", "10", "--no-verify"],
          "SHORTHORIZON_DATA=a file: exit 2 naming it", reject(str(p.afile)), mode="sub",
          env={"SHORTHORIZON_DATA": str(p.afile)}, timeout=90)
    # a folder holding the dataset under spaces and unicode
    odd = p.root / "data with spaces ü"
    if not odd.exists():
        shutil.copytree(p.data, odd)
    p.add("data:paths", ["unroll", "--task", "mlp", "--dataset", "mnist", "--data-dir", odd, "--no-verify", "--lr",
                         "0.1", "--momentum", "0.9", "--steps", "3", "--batch-size", "10", "--eval-batches", "1"],
          "data dir with spaces and unicode: exit 0", succeed(lambda r: (_json_ok(r.out), "no JSON")), timeout=120)


def user_tasks(p: Probe):
    env = {"PYTHONPATH": str(p.mods)}
    ubase = ["--dataset", "mnist", "--data-dir", p.data, "--no-verify", "--lr", "0.1", "--momentum", "0.9",
             "--steps", "3", "--batch-size", "10", "--eval-batches", "1"]
    raising = {"keyerror": "KeyError", "zerodiv": "ZeroDivisionError", "asserts": "AssertionError",
               "runtime2": "RuntimeError", "returns_dict": "", "returns_none": "", "one_arg": "", "too_few_logits": "",
               "loss_raises": "ZeroDivisionError", "scalar_loss": "", "vector_loss": "", "int_params": "",
               "init_raises": "IndexError", "slow_exit": "", "NOT_CALLABLE": "",
               "missing_name": ""}
    specs = [(f"probe_tasks:{n}", e) for n, e in raising.items()] + [
        ("probe_import_error:f", "RuntimeError"), ("probe_syntax:f", "SyntaxError"), ("probe_sysexit:f", ""),
        ("probe_tasks", ""), (":good", ""), ("probe_tasks:", "")]
    for spec, exc in specs:
        words = [spec] + ([exc] if exc and exc != "SyntaxError" else ["syntax"] if exc else [])
        p.add("tasks:unroll", ["unroll", "--task", spec, *ubase],
              f"unroll --task {spec}: exit 2, one line naming the task{' and ' + exc if exc else ''}",
              reject(*words), mode="sub" if spec.startswith("probe_tasks:k") else "fork", env=env, timeout=120)
    for spec, exc in specs[:8] + [("probe_tasks:loss_raises", "ZeroDivisionError"), ("probe_import_error:f", "RuntimeError"),
                                  ("probe_tasks:scalar_loss", ""), ("probe_tasks:int_params", "")]:
        words = [spec] + ([exc] if exc else [])
        for command in ("offline", "bias", "online"):
            out = p.out()
            # online: a user's task takes settings of its own (user_*), or the command stops before building it
            own = ["--set", "user_steps=40", "--set", "user_init_lrs=0.05", "--set", "user_baseline_lr=0.1",
                   "--set", "user_batch_size=20"] if command == "online" else []
            p.add(f"tasks:{command}", [command, "--preset", "quick", "--out", out, *BASES[command][1](p), *own,
                                      "--task", spec],
                  f"{command} --task {spec}: exit 2, one line, no folder", reject(*words, out=out), out=out,
                  env=env, timeout=150)
    # a NaN loss: unroll says diverged (exit 3); bias marks divergence, never crashes
    p.add("tasks:nan", ["unroll", "--task", "probe_tasks:nan_loss", *ubase], "NaN loss: exit 3, diverged JSON",
          succeed(lambda r: (_json_ok(r.out) and json.loads(r.out).get("diverged") is True, "not diverged JSON"), rc=3),
          mode="sub", env=env, timeout=120)
    out = p.out()
    p.add("tasks:nan", ["bias", "--preset", "quick", "--out", out, *BASES["bias"][1](p), "--task", "probe_tasks:nan_loss"],
          "bias with a NaN-loss model: exit 0, everything diverged in the summary (or one line), never a crash",
          _diverged_summary(out), mode="sub", env=env, timeout=400)
    out2 = p.out()
    p.add("tasks:nan", ["offline", "--preset", "quick", "--out", out2, *BASES["offline"][1](p), "--task",
                        "probe_tasks:nan_loss"],
          "offline with a NaN-loss model: exit 0, diverged marked (or one line), never a crash",
          _diverged_summary(out2), mode="sub", env=env, timeout=400)


def _diverged_summary(out: Path):
    def check(r: Result):
        if r.rc is None:
            return False, "timeout"
        if "Traceback" in r.err:
            return False, f"traceback, rc {r.rc}"
        if r.rc == 2 and len(r.lines) == 1:
            return True, ""
        if r.rc != 0:
            return False, f"rc {r.rc}"
        text = (out / "summary.json").read_text() if (out / "summary.json").exists() else ""
        if "diverged" not in text:
            return False, "summary.json does not mention divergence"
        return True, ""
    return check


def diverge_box(p: Probe):
    out = p.out("-diverge")

    def check(r: Result):
        if r.rc is None or "Traceback" in r.err:
            return False, f"rc {r.rc} / traceback"
        if r.rc != 0:
            return (r.rc == 2 and len(r.lines) == 1), f"rc {r.rc}"
        s = json.loads((out / "summary.json").read_text()) if (out / "summary.json").exists() else {}
        text = json.dumps(s)
        if "diverged" not in text:
            return False, "no divergence in summary"
        if '"diverged": 0' in text and '"diverged": true' not in text and "everything diverged" not in text.lower():
            return False, "summary says diverged 0"
        return True, ""
    p.add("diverge", ["bias", "--preset", "quick", "--out", out, *BASES["bias"][1](p), "--set",
                      "lr0_range=1000,100000"],
          "bias with every lr diverging: exit 0 and the summary says diverged (no fit reported)", check, mode="sub",
          timeout=400)
    out2 = p.out("-diverge-off")
    p.add("diverge", ["offline", "--preset", "quick", "--out", out2, *BASES["offline"][1](p), "--set",
                      "lr0_range=1000,100000", "--set", "init_lr0=2000,5000"],
          "offline with every lr diverging: exit 0 and diverged marked in the summary", _diverged_summary(out2),
          mode="sub", timeout=400)


def folders(p: Probe):
    """Run folders: resume, refusals, --force, corrupt units, locks, odd paths, signals."""
    base = sets(TINY_NQM_MAP)
    good = p.runs / "nqm-map-good"

    def nm(out, extra=(), **kw):
        return ["nqm-map", "--preset", "quick", "--out", out, *base, *extra]

    def fresh(path: Path):
        """A finished copy of the good run at ``path``."""
        def setup():
            if path.exists():
                shutil.rmtree(path)
            shutil.copytree(good, path)
        return setup

    def summary_ok(path):
        def extra(r):
            try:
                s = json.loads((path / "summary.json").read_text())
            except (OSError, ValueError) as e:
                return False, f"summary.json unreadable: {e}"
            w = s.get("wall_time_s")
            if w is not None and (not isinstance(w, (int, float)) or w < 0):
                return False, f"wall_time_s {w}"
            return True, ""
        return extra

    p.add("folders", nm(good), "a tiny nqm-map run: exit 0 (the base of the folder cases)",
          succeed(summary_ok(good)), mode="sub", timeout=400, setup=lambda: shutil.rmtree(good, ignore_errors=True))
    p.add("folders", nm(good), "the same command again: exit 0, resumes (nothing recomputed)",
          succeed(summary_ok(good)), mode="sub", timeout=300)
    p.add("folders", nm(good, sets({"fit_steps": "61"})), "another config into the folder: exit 2 naming fit_steps",
          reject("fit_steps"), timeout=30)
    p.add("folders", ["nqm", "--preset", "quick", "--out", good, *sets(TINY_NQM)],
          "another command into the folder: exit 2, one line", reject("nqm-map"), timeout=30)
    p.add("folders", ["reproduce", "--out", good, "--only", "nqm-map"],
          "reproduce into a run folder: exit 2, one line", reject(str(good)), timeout=30)
    f = p.runs / "force-notes"

    def force_setup():
        fresh(f)()
        (f / "my_notes.txt").write_text("the user's notes\n")
        (f / "mydir").mkdir()
        (f / "mydir" / "keep.txt").write_text("keep\n")
    p.add("folders", nm(f, sets({"fit_steps": "61"})) + ["--force"],
          "--force on a run folder holding the user's files: exit 0, my_notes.txt and mydir/ kept",
          succeed(lambda r: ((f / "my_notes.txt").exists() and (f / "mydir" / "keep.txt").exists(),
                             "user's file deleted")), setup=force_setup, mode="sub", timeout=400)
    # corrupt stored units

    def unit_case(what, damage):
        path = p.runs / f"unit-{len(p.cases)}"

        def setup():
            fresh(path)()
            us = sorted((path / "units").glob("*.npz"))
            damage(us[0])
        p.add("folders:units", nm(path), f"unit {what}: exit 0, the unit named on stderr and recomputed",
              succeed(lambda r: (any("unit" in l.lower() or ".npz" in l for l in r.lines), "unit not named")),
              setup=setup, mode="sub", timeout=300)
    unit_case("truncated", lambda u: u.write_bytes(u.read_bytes()[:50]))
    unit_case("empty", lambda u: u.write_bytes(b""))
    unit_case("random bytes", lambda u: u.write_bytes(os.urandom(2000)))
    # a folder in a unit's place can be neither read nor written over (it may hold someone's files): one line
    # naming it and the fix, before any work
    path = p.runs / f"unit-{len(p.cases)}"

    def folder_in_place():
        fresh(path)()
        unit = sorted((path / "units").glob("*.npz"))[0]
        unit.unlink()
        unit.mkdir()
    p.add("folders:units", nm(path), "unit replaced by a folder: exit 2, one line naming it",
          reject("is a folder where a stored unit belongs"), setup=folder_in_place, mode="sub", timeout=300)

    def swap(u):
        us = sorted(u.parent.glob("*.npz"))
        if len(us) > 1:
            a, b = us[0].read_bytes(), us[1].read_bytes()
            us[0].write_bytes(b)
            us[1].write_bytes(a)
    unit_case("swapped with another unit", swap)

    def other_files(name, damage, check, expect):
        path = p.runs / f"file-{len(p.cases)}"

        def setup():
            fresh(path)()
            damage(path)
        p.add("folders:files", nm(path), expect, check(path), setup=setup, mode="sub", timeout=300)

    other_files("summary", lambda d: (d / "summary.json").write_text("{not json"), lambda d: succeed(summary_ok(d)),
                "summary.json corrupt: exit 0, rewritten")
    other_files("summary-nan", lambda d: (d / "summary.json").write_text('{"wall_time_s": NaN}'),
                lambda d: succeed(summary_ok(d)), "summary.json with NaN: exit 0, rewritten strict")
    other_files("config", lambda d: (d / "config.json").write_text("{not json"),
                lambda d: reject("config.json"), "config.json corrupt: exit 2 naming it")
    other_files("config-missing", lambda d: (d / "config.json").unlink(),
                lambda d: reject(str(d)), "config.json deleted from a run folder: exit 2, refused")
    other_files("config-other", lambda d: (d / "config.json").write_text('{"command": "offline", "config": {}}'),
                lambda d: reject("offline"), "config.json of another command: exit 2")
    other_files("lockdir", lambda d: ((d / ".lock").unlink() if (d / ".lock").exists() else None, (d / ".lock").mkdir()),
                lambda d: reject(".lock"), ".lock replaced by a folder: exit 2 naming .lock")
    for val in ("nan", "-1e9", "abc", "1e999"):
        def spent(d, val=val):
            sp = list(d.rglob(".spent*")) or [d / ".spent"]
            for s in sp:
                s.write_text(val)
        other_files(f"spent-{val}", spent, lambda d: succeed(summary_ok(d)),
                    f".spent holding {val}: exit 0, wall_time_s finite and >= 0")
    # out paths
    for name, expect in (("with space", "spaces"), ("ünïcödé-路径", "unicode"), ("new\nline", "newline")):
        o = p.runs / f"odd {name}"
        p.add("folders:paths", nm(o), f"--out with {expect}: exit 0", succeed(summary_ok(o)), mode="sub",
              timeout=300, setup=lambda o=o: shutil.rmtree(o, ignore_errors=True))
    p.add("folders:paths", nm(p.afile), "--out is a file: exit 2 naming it", reject(str(p.afile)), timeout=30)
    o = p.afile / "sub"
    p.add("folders:paths", nm(o), "--out under a file: exit 2", reject(str(p.afile)), timeout=30)
    junk = p.runs / "junk"

    def junk_setup():
        junk.mkdir(exist_ok=True)
        (junk / "thesis.tex").write_text("x")
    p.add("folders:paths", nm(junk), "--out a non-empty folder without config.json: exit 2, nothing written (no .lock)",
          lambda r: (lambda ok: (ok[0] and not (junk / ".lock").exists() and sorted(x.name for x in junk.iterdir()) == ["thesis.tex"],
                                 ok[1] or "wrote into the folder"))(reject(str(junk))(r)), setup=junk_setup, timeout=30)
    p.add("folders:paths", nm(junk) + ["--force"], "--force on a user's non-empty folder: exit 2, thesis.tex kept",
          lambda r: (lambda ok: (ok[0] and (junk / "thesis.tex").exists(), ok[1] or "deleted the user's file"))(
              reject(str(junk))(r)), timeout=30)
    rj = p.runs / "rjunk"
    p.add("folders:paths", ["reproduce", "--out", rj, "--only", "nqm-map"], "reproduce into a user's folder: exit 2",
          reject(str(rj)), setup=lambda: (rj.mkdir(exist_ok=True), (rj / "data.csv").write_text("1")), timeout=30)
    p.add("folders:paths", nm(""), "--out '' : exit 2 one line (or a default folder)", no_crash(), timeout=30)
    ro = Path("/proc/probe-out")
    p.add("folders:paths", nm(ro), "--out in an unwritable place (/proc): exit 2 one line", reject("/proc"), timeout=30)
    # a second process on a locked folder
    held = p.runs / "held"

    def lock_setup():
        fresh(held)()
        fd = os.open(held / ".lock", os.O_RDWR | os.O_CREAT)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        p._held = fd
    p.add("folders:lock", nm(held), "a folder locked by another process: exit 2, one line", reject(str(held)),
          setup=lock_setup, mode="sub", timeout=60, after=lambda r: os.close(p._held))
    # signals
    for delay in (0.05, 0.3, 1.0, 3.0, 8.0):
        o = p.runs / f"sigint-{delay}"

        def check(r, o=o, delay=delay):
            if r.rc == 0:
                return True, "finished before the signal"
            if r.rc != 130:
                return False, f"rc {r.rc}"
            if "Traceback" in r.err:
                return False, "traceback"
            last = r.lines[-1] if r.lines else ""
            if "interrupted" not in last:
                return False, "last line is not the interrupted line"
            if len(r.lines) > 3:
                return False, f"{len(r.lines)} stderr lines"
            return True, ""
        p.add("signals", nm(o), f"SIGINT after {delay}s: exit 130, 'interrupted' naming --out, no traceback", check,
              mode="sub", sigint_after=delay, timeout=120, setup=lambda o=o: shutil.rmtree(o, ignore_errors=True))
    o = p.runs / "sigint-resume"
    p.add("signals", nm(o), "SIGINT at 8 s (prep for resume)", lambda r: (r.rc in (0, 130), f"rc {r.rc}"), mode="sub",
          sigint_after=8.0, timeout=120, setup=lambda: shutil.rmtree(o, ignore_errors=True))
    p.add("signals", nm(o), "rerun after SIGINT: exit 0, resumes", succeed(summary_ok(o)), mode="sub", timeout=300)
    k = p.runs / "sigkill"
    p.add("signals", nm(k), "kill -9 at 6 s (prep)", lambda r: (r.rc in (0, -9), f"rc {r.rc}"), mode="sub",
          sigkill_after=6.0, timeout=120, setup=lambda: shutil.rmtree(k, ignore_errors=True))
    p.add("signals", nm(k), "rerun after kill -9: exit 0, lock released, resumes", succeed(summary_ok(k)), mode="sub",
          timeout=300)
    u = ["unroll", "--task", "mlp", "--dataset", "mnist", "--data-dir", p.data, "--no-verify", "--lr", "0.1",
         "--momentum", "0.9", "--steps", "3", "--batch-size", "10", "--eval-batches", "1"]
    p.add("signals", u, "unroll SIGINT after 1 s: exit 130, no traceback",
          lambda r: (r.rc == 130 and "Traceback" not in r.err, f"rc {r.rc}") if r.rc != 0 else (True, "finished"),
          mode="sub", sigint_after=1.0, timeout=120)


def write_closed_stdout(p: Probe):
    """``unroll ... >&-``: the result cannot be written; a serious tool says so (non-zero)."""
    argv = ["unroll", "--task", "mlp", "--dataset", "mnist", "--data-dir", str(p.data), "--no-verify", "--lr", "0.1",
            "--momentum", "0.9", "--steps", "3", "--batch-size", "10", "--eval-batches", "1"]
    cmd = " ".join(f"'{a}'" for a in [PY, "-m", "shorthorizon.cli", *argv])
    p.add("signals", ["(shell)", "unroll", ">&-"], "unroll with stdout closed: non-zero exit, one line",
          lambda r: (r.rc not in (0, None) and "Traceback" not in r.err, f"rc {r.rc}"), mode="shell:" + cmd + " >&-",
          timeout=120)
    p.add("signals", ["(shell)", "unroll", ">/dev/full"], "unroll with stdout /dev/full: non-zero exit, one line",
          lambda r: (r.rc not in (0, None) and "Traceback" not in r.err and len(r.lines) == 1, f"rc {r.rc}, {len(r.lines)} lines"),
          mode="shell:" + cmd + " >/dev/full", timeout=120)


def run_shell(case: Case, tmp: Path) -> Result:
    cmd = case.mode[len("shell:"):]
    start = time.perf_counter()
    with open(tmp / "stderr", "w") as errf:
        try:
            proc = subprocess.run(["bash", "-c", cmd], stderr=errf, env=sub_env({}), timeout=case.timeout,
                                  preexec_fn=_default_sigint)
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            rc = None
    return Result(rc, "", (tmp / "stderr").read_text(errors="replace"), time.perf_counter() - start)


# --- main ------------------------------------------------------------------------------------
GROUPS = [("grid", grid), ("cross", cross), ("flags", flags), ("unroll", unroll), ("data", datasets),
          ("tasks", user_tasks), ("diverge", diverge_box), ("folders", folders), ("stdout", write_closed_stdout)]


def main() -> int:
    args = sys.argv[1:]
    only = None
    if "--only" in args:
        i = args.index("--only")
        only = args[i + 1].split(",")
        del args[i:i + 2]
    root = Path(args[0] if args else "/tmp/probe").resolve()
    root.mkdir(parents=True, exist_ok=True)
    os.environ["PYTHONPATH"] = str(SRC)
    sys.path.insert(0, str(SRC))
    p = Probe(root)
    p.prepare()
    for name, build in GROUPS:
        if only is None or name in only:
            build(p)
    import shorthorizon.cli as cli  # warm the fork server: every experiment module imported once

    cli.build_parser()
    tmp = root / "tmp"
    tmp.mkdir(exist_ok=True)
    print(f"{len(p.cases)} cases; outputs under {root}", flush=True)
    start = time.perf_counter()
    for i, case in enumerate(p.cases):
        try:
            if case.setup:
                case.setup()
            runner = run_fork if case.mode == "fork" else run_shell if case.mode.startswith("shell:") else run_sub
            case.result = runner(case, tmp)
            if case.after:
                case.after(case.result)
            case.passed, case.why = case.check(case.result)
        except Exception as e:  # a probe bug: counted as not run
            case.passed, case.why = False, f"PROBE ERROR {type(e).__name__}: {e}"
            case.result = case.result or Result(None, "", "", 0.0)
        r = case.result
        print(f"[{i + 1}/{len(p.cases)} {time.perf_counter() - start:6.0f}s] {'PASS' if case.passed else 'FAIL'} "
              f"{case.id} rc={r.rc} {r.seconds:.1f}s  {case.expect[:70]} | {r.first[:120]}"
              f"{'' if case.passed else ' || ' + case.why}", flush=True)
    return report(p, root)


def report(p: Probe, root: Path) -> int:
    cats: dict[str, list[int]] = {}
    for c in p.cases:
        t = cats.setdefault(c.category, [0, 0])
        t[0] += 1
        t[1] += c.passed
    total, passed = len(p.cases), sum(c.passed for c in p.cases)
    lines = [f"# Probe of bad inputs and faults: {passed} of {total} held", "",
             "| category | cases | passed | failed |", "|---|---:|---:|---:|"]
    for cat, (n, k) in sorted(cats.items()):
        lines.append(f"| {cat} | {n} | {k} | {n - k} |")
    lines += ["", "## Every case", "", "| id | pass | command | expected | rc | first stderr line | why |",
              "|---|---|---|---|---|---|---|"]

    def esc(s):
        return str(s).replace("|", "\\|").replace("\n", "\\n")[:300]
    records = []
    for c in p.cases:
        r = c.result
        cmd = "shorthorizon " + " ".join(c.argv)
        if c.env:
            cmd = " ".join(f"{k}={v}" for k, v in c.env.items()) + " " + cmd
        lines.append(f"| {c.id} | {'pass' if c.passed else '**FAIL**'} | `{esc(cmd)}` | {esc(c.expect)} | {r.rc} | "
                     f"{esc(r.first)} | {esc(c.why)} |")
        records.append({"id": c.id, "category": c.category, "command": cmd, "expect": c.expect, "passed": c.passed,
                        "rc": r.rc, "first": r.first, "why": c.why, "stderr": r.err[-3000:], "seconds": r.seconds})
    (root / "report.md").write_text("\n".join(lines) + "\n")
    (root / "results.json").write_text(json.dumps(records, indent=1))
    print(f"\n{passed} of {total} cases held")
    for cat, (n, k) in sorted(cats.items()):
        print(f"  {cat:20s} {k:4d} / {n:4d}")
    print(f"report: {root / 'report.md'}")
    return 0 if passed == total else 1


if __name__ == "__main__":
    sys.exit(main())
