"""Hidden-unit visualisation for character models (after Karpathy, Johnson & Fei-Fei 2015).

`unit_page` runs a char model over a text and writes one self-contained HTML page: each character's background
shows the chosen unit's activation (blue −1 … white 0 … red +1, the last layer's h_t), its text white on dark
backgrounds and black on light ones (by relative luminance, `colours`), and hovering a character shows the model's
top predictions for the next one. A selector switches between the units whose values are embedded (``units``),
recolouring in place.
"""

from __future__ import annotations

import html
import json

import numpy as np

from ..activations import softmax
from ..errors import DataError


def activations(model, vocab, text: str):
    """(h (T, H) of the last layer, next-character probabilities (T, V)) for ``text``."""
    if not text:
        raise DataError("the text to visualise is empty")
    model.eval()
    ids = vocab.encode(text)
    try:
        logits, _ = model.forward(ids[None, :])  # with gradients enabled, so that the layer records its trace
        view = model.rnn.trace(layer=-1)
        hidden = view.states[next(iter(view.states))][0]  # (T, H): the last layer's output h_t
    finally:
        model.discard_saved()
        model.train()
    return np.asarray(hidden, np.float64), softmax(logits[0].astype(np.float64))


def colours(value: float) -> tuple[str, str]:
    """(background, text colour) for an activation in [−1, 1]: blue −1 … white 0 … red +1, and white text where the
    background's relative luminance (WCAG) is below 0.179, where white contrasts more than black."""
    fade = round(255 * (1 - min(abs(value), 1.0)))
    rgb = (255, fade, fade) if value >= 0 else (fade, fade, 255)
    linear = [(c / 255) / 12.92 if c / 255 <= 0.04045 else ((c / 255 + 0.055) / 1.055) ** 2.4 for c in rgb]
    luminance = 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
    return f"rgb({rgb[0]},{rgb[1]},{rgb[2]})", "white" if luminance < 0.179 else "black"


def unit_page(model, vocab, text: str, units: list[int], top: int = 5, title: str = "rnnkit hidden units") -> str:
    """The HTML page (a string) colouring ``text`` by each of ``units``, headed by ``title`` (the command puts the
    checkpoint's path in it)."""
    hidden, probs = activations(model, vocab, text)
    size = hidden.shape[1]
    bad = [u for u in units if not 0 <= u < size]
    if bad:
        raise DataError(f"--unit must be in [0, {size}) (the model's hidden size), got {bad}")
    values = {str(u): [round(float(v), 3) for v in np.clip(hidden[:, u], -1, 1)] for u in units}
    painted = {u: [colours(v) for v in vs] for u, vs in values.items()}
    spans = []
    for t, ch in enumerate(text):
        best = np.argsort(-probs[t])[:top]
        tip = " ".join(f"{vocab.chars[i]!r}:{probs[t, i]:.2f}" for i in best)
        shown = "⏎\n" if ch == "\n" else html.escape(ch)
        spans.append(f'<span data-t="{t}" title="{html.escape(tip)}">{shown}</span>')
    options = "".join(f'<option value="{u}">unit {u}</option>' for u in units)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }}
#text {{ font-family: monospace; font-size: 15px; line-height: 1.6; white-space: pre-wrap; }}
#text span {{ padding: 1px 0; }}
.legend span {{ display: inline-block; width: 2.5em; text-align: center; font-size: 12px; }}
</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p>Background: activation of the selected hidden unit of the last layer (blue −1, white 0, red +1).
Hover a character for the model's top {top} predictions of the next one.
<label>Unit: <select id="unit">{options}</select></label></p>
<p class="legend">{"".join(_legend(v) for v in (-1.0, -0.5, 0.0, 0.5, 1.0))}</p>
<div id="text">{"".join(spans)}</div>
<script>
const values = {json.dumps(values)};
const colours = {json.dumps(painted)};
function paint(unit) {{
  const cs = colours[unit];
  document.querySelectorAll('#text span').forEach(s => {{
    [s.style.background, s.style.color] = cs[+s.dataset.t];
  }});
  document.body.dataset.painted = unit;
}}
document.getElementById('unit').addEventListener('change', e => paint(e.target.value));
paint(document.getElementById('unit').value);
</script>
</body></html>
"""


def _legend(value: float) -> str:
    background, ink = colours(value)
    label = "0" if value == 0 else f"{value:+g}".replace("-", "−")
    return f'<span style="background:{background};color:{ink}">{label}</span>'
