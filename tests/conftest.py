"""Shared fixtures."""

import json
from pathlib import Path

import jax
import numpy as np
import pytest


@pytest.fixture
def x64():
    """Run one test in float64, then restore the process-wide setting."""
    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", before)


@pytest.fixture(autouse=True)
def x64_does_not_leak():
    """No test (and no library call it makes) may leave float64 switched on process-wide:
    later tests would silently run in another precision."""
    before = jax.config.jax_enable_x64
    yield
    assert jax.config.jax_enable_x64 == before, "jax_enable_x64 was changed and not restored"


@pytest.fixture
def strict_json():
    """Parse JSON the project wrote with a strict parser (NaN and Infinity raise): a file gives
    its value, a folder a dict of every ``*.json`` under it, keyed by relative path."""
    def refuse(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    def parse(path):
        path = Path(path)
        if path.is_dir():
            return {str(p.relative_to(path)): parse(p) for p in sorted(path.rglob("*.json"))}
        return json.loads(path.read_text(), parse_constant=refuse)

    return parse


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray cluster for every test that needs one (its workers stay warm between
    tests); shut down at the end of the session."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


def panel_problems(fig) -> list[str]:
    """What is wrong with the panels of ``fig``, from each axes' data and limits: a point of a
    drawn series (line, collection, image) outside its panel, or a panel with nothing drawn in
    it. A point's position is its data through the artist's own transform, in pixels, so an
    ``axvline`` (y in axes coordinates) and a log axis (a value <= 0 lands nowhere) are judged
    as drawn; a value that is not finite is a gap in a line, not a point."""
    import matplotlib.collections as mcollections

    fig.canvas.draw()  # settles autoscaled limits
    problems = []
    for number, ax in enumerate(fig.axes):
        series = [(f"line {line.get_label()!r}", line.get_xydata(), line.get_transform()) for line in ax.lines]
        for c in ax.collections:
            if isinstance(c, mcollections.PathCollection):  # scatter: the paths are markers, the offsets the points
                series.append((f"scatter {c.get_label()!r}", c.get_offsets(), c.get_offset_transform()))
            elif isinstance(c, mcollections.QuadMesh):
                series.append(("mesh", c.get_coordinates().reshape(-1, 2), c.get_transform()))
            else:
                points = [p.vertices for p in c.get_paths()]
                series.append((f"{type(c).__name__} {c.get_label()!r}", np.concatenate(points) if points
                               else np.empty((0, 2)), c.get_transform()))
        for image in ax.images:
            x0, x1, y0, y1 = image.get_extent()
            series.append(("image", np.array([[x0, y0], [x1, y1]]), ax.transData))
        box, inside_points = ax.bbox, 0
        for name, points, transform in series:
            points = np.asarray(points, float).reshape(-1, 2)
            points = points[np.isfinite(points).all(axis=1)]
            with np.errstate(all="ignore"):
                pixels = transform.transform(points) if len(points) else points
            inside = (np.isfinite(pixels).all(axis=1) & (pixels[:, 0] >= box.x0 - 1) & (pixels[:, 0] <= box.x1 + 1)
                      & (pixels[:, 1] >= box.y0 - 1) & (pixels[:, 1] <= box.y1 + 1))
            inside_points += int(inside.sum())
            if not inside.all():
                outside = points[~inside]
                limits = ", ".join("[{:.3g}, {:.3g}]".format(*lim) for lim in (ax.get_xlim(), ax.get_ylim()))
                problems.append(f"panel {number} {ax.get_title() or ax.get_ylabel()!r}: {name} has {len(outside)} of "
                                f"{len(points)} points outside x, y in {limits}, e.g. {outside[0].tolist()}")
        if not inside_points:
            problems.append(f"panel {number} {ax.get_title() or ax.get_ylabel()!r} is empty")
    return problems


@pytest.fixture
def figures_show_their_data(monkeypatch):
    """``check(plot, run_dir)``: draws the figures ``plot`` makes from a finished run folder
    (kept, not saved: the folder stays as it was), asserts that each one's every series lies
    inside its panel and no panel is empty (:func:`panel_problems`), and returns them by name."""
    import matplotlib.pyplot as plt

    from shorthorizon.results import RunDir

    def check(plot, run_dir) -> dict:
        figures = {}
        with monkeypatch.context() as m:
            m.setattr(RunDir, "save_figure", lambda self, fig, name: figures.setdefault(name, fig))
            plot(RunDir(run_dir))
        problems = {name: panel_problems(fig) for name, fig in figures.items()}
        for fig in figures.values():
            plt.close(fig)
        assert figures and not any(problems.values()), problems
        return figures

    return check


@pytest.fixture
def claims_find_their_numbers():
    """``check(source, run_dir, absent=())``: judges the claims of experiment ``source`` on a
    finished run folder as the report does, and asserts each found its number (a value, an
    interval or "diverged"), except the claims whose text starts with one of ``absent`` (what the
    run's config does not measure). A claim reading a path its experiment no longer writes
    would otherwise be "not comparable" in every report without a test noticing."""
    from shorthorizon.report import claims
    from shorthorizon.results import RunDir

    def check(source: str, run_dir, absent: tuple[str, ...] = ()) -> list[dict]:
        run = RunDir(run_dir)
        rows = claims.table({source: (run.read_summary(), run.read_config())})
        mine = [r for r in rows if r["source"] == source]
        assert mine, f"no claim reads {source}"
        missing = [r["claim"] for r in mine if r["ours"] == "—"]
        assert missing == [r["claim"] for r in mine if r["claim"].startswith(absent)], missing
        return mine

    return check


@pytest.fixture
def rerun_seeds(monkeypatch):
    """``rerun(module, frozen, counted, run)``: ``run()`` while each of ``module``'s unit functions
    named in ``frozen`` (or ``(other module, name)``: a unit of the shared pipeline) fails if
    called (a finished unit recomputed) and ``counted`` (a name or such a pair) records the seed
    of each config it is called with; ``(run's result, the seeds recorded)``."""
    def rerun(module, frozen, counted, run):
        counted = counted if isinstance(counted, tuple) else (module, counted)
        calls, unit = [], getattr(*counted)

        def recomputed(**kwargs):
            raise AssertionError("a finished unit was recomputed")

        def counting(config, **kwargs):
            calls.append(config.seed)
            return unit(config, **kwargs)

        with monkeypatch.context() as m:
            for entry in frozen:
                m.setattr(*(entry if isinstance(entry, tuple) else (module, entry)), recomputed)
            m.setattr(*counted, counting)
            return run(), calls
    return rerun
