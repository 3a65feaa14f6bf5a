"""What every figure shares: one colour per method, and the label of a spread over seeds.

A method has one colour in every figure that is drawn from the same list of methods
(:func:`method_colours`: the bar/box plot and the curves of notebook 08, the two plots of
notebook 09), and an axis that shows a mean over seeds says how many seeds it is
(:func:`spread_label`: with one seed there is no ± and no error bar).
"""

from __future__ import annotations

from typing import Iterable, Mapping

from matplotlib import colormaps
from matplotlib.colors import to_hex

__all__ = ["PALETTE", "method_colours", "spread_label"]

#: 20 distinct colours: tab10, then the light halves of tab20's pairs; they repeat after 20 methods
PALETTE: tuple[str, ...] = tuple(to_hex(c) for c in colormaps["tab10"].colors) + tuple(
    to_hex(c) for c in colormaps["tab20"].colors[1::2]
)


def method_colours(methods: Iterable[str], given: Mapping[str, str] | None = None) -> dict[str, str]:
    """One colour (hex) per method label, in the order in which the labels first appear.

    Args:
        methods: method labels, repeats allowed (e.g. a per-patient ``method`` column).
        given: colours already chosen for some labels; they are kept, and the other labels
            take the palette colours that ``given`` does not use.

    Returns:
        ``label -> colour`` for every distinct label (and every label of ``given``). Two
        figures drawn from the same list of methods therefore colour each method alike.

    Example:
        >>> method_colours(["sup", "semi", "sup"])
        {'sup': '#1f77b4', 'semi': '#ff7f0e'}
    """
    colours = dict(given or {})
    free = [c for c in PALETTE if c not in set(colours.values())] or list(PALETTE)
    new = [label for label in dict.fromkeys(methods) if label not in colours]
    colours.update({label: free[i % len(free)] for i, label in enumerate(new)})
    return colours


def spread_label(quantity: str, n_seeds: Iterable[int]) -> str:
    """The axis label of a mean over seeds with its sample-std error bar, for these seed counts.

    Args:
        quantity: what is plotted, e.g. ``"DSC"``.
        n_seeds: the number of seeds behind each plotted point.

    Returns:
        ``"DSC (1 seed, no error bar)"`` when every point comes from one seed,
        ``"DSC (mean over 3 seeds ± sample std)"`` when every point has the same number of
        seeds, and ``"DSC (mean over 1-3 seeds; ± sample std where > 1)"`` otherwise.
    """
    counts = sorted({int(n) for n in n_seeds})
    if not counts or counts == [1]:
        return f"{quantity} (1 seed, no error bar)"
    if len(counts) == 1:
        return f"{quantity} (mean over {counts[0]} seeds ± sample std)"
    return f"{quantity} (mean over {counts[0]}-{counts[-1]} seeds; ± sample std where > 1)"
