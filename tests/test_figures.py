"""The figure checker every experiment's figures pass (conftest.panel_problems) finds what it must."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from conftest import panel_problems  # noqa: E402


def test_series_inside_their_panels_pass_and_each_fault_is_named():
    fig, (fine, clipped, empty, log) = plt.subplots(1, 4)
    x = np.arange(10.0)
    fine.plot(x, x**2, label="curve")
    fine.plot(x, np.where(x > 5, np.nan, x))  # a gap is not a point
    fine.fill_between(x, x, x**2, alpha=0.2)
    fine.scatter([2.0], [3.0])
    fine.imshow(np.ones((2, 2)), extent=(0, 9, 0, 81), aspect="auto")
    fine.axvline(4.5)  # its y in axes coordinates
    clipped.plot(x, x, label="kept")
    clipped.plot(x, 10 * x, label="cut")
    clipped.set_ylim(0, 20)
    log.plot(x, x, label="from zero")
    log.set_yscale("log")
    clipped.set_title("clipped")
    log.set_ylabel("log")
    assert panel_problems(fig) == [
        "panel 1 'clipped': line 'cut' has 7 of 10 points outside x, y in [-0.45, 9.45], [0, 20], e.g. [3.0, 30.0]",
        "panel 2 '' is empty",
        "panel 3 'log': line 'from zero' has 1 of 10 points outside x, y in [-0.45, 9.45], [{:.3g}, {:.3g}], "
        "e.g. [0.0, 0.0]".format(*log.get_ylim())]
    plt.close(fig)
