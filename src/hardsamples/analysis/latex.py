"""tables.tex: every table as booktabs floats that fit a page's text width and compile with pdflatex.

A table keeps its rows; its columns are fitted to `width_pt` (conf/tables.yaml latex_width_pt: 345 pt,
an article's text width at 10 pt):
  - columns empty in every row are left out, and the row labels every row shares (one dataset, one
    model, one setup) go to the caption;
  - a long cell wraps in a column of fixed width, a long header over its cells' width;
  - a table still wider is split by columns into parts, each a float of its own that repeats the row
    labels (the columns up to δ and the settings a sweep varied).
The Markdown and the CSVs keep every column. Widths are estimated from each cell's characters, on the
generous side; tests/test_outputs.py compiles the result with pdflatex and measures every table.
Cells, headers and captions print what the Markdown says (tex_text: specials escaped, symbols in math).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import pandas as pd

PACKAGES = ("booktabs", "array")  # \usepackage{...} in the document that inputs tables.tex
TEXT_WIDTH_PT = 345.0  # an article's \textwidth at 10 pt
FONT = r"\footnotesize"  # 8 pt at 10 pt: still readable, and a column of numbers is narrow
COLUMN_SEP_PT = 4.0  # \tabcolsep, each side of a column
# Character widths of footnotesize Computer Modern, rounded up (measured: digits 4.25 pt, lower case 4.17
# on average, upper case 6.08, a space 2.8, \% 7.08, $\pm$ 6.6).
CHAR_PT = 4.3
SPACE_PT = 2.9
WIDE_PT = 6.7
WIDE = set("±×≤≥≈→√·δΔσ⚠—–%@") | set("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
WRAP_PT = 120.0  # a longer cell wraps in a column this wide
HEADER_WRAP_PT = 48.0  # a header longer than its cells wraps in a column at least this wide


@dataclass
class Column:
    name: str
    cells: list[str]  # plain text, as the Markdown prints it
    numeric: bool

    @property
    def width_pt(self) -> float:
        """Its width in the tabular: the widest cell, with the header wrapping over wider cells, and
        long cells wrapping at WRAP_PT; never below its longest unbreakable word."""
        content = max([text_pt(cell) for cell in self.cells] + [0.0])
        header = text_pt(self.name)
        width = min(max(content, min(header, max(content, HEADER_WRAP_PT))), WRAP_PT)
        return max(width, longest_word_pt([self.name, *self.cells]))

    @property
    def wraps(self) -> bool:
        return self.width_pt < max([text_pt(cell) for cell in [self.name, *self.cells]]) - 0.5

    @property
    def spec(self) -> str:
        if not self.wraps:
            return "r" if self.numeric else "l"
        align = r"\raggedleft" if self.numeric else r"\raggedright"
        return f">{{{align}\\arraybackslash}}p{{{math.ceil(self.width_pt)}pt}}"

    @property
    def occupied_pt(self) -> float:
        return self.width_pt + 2 * COLUMN_SEP_PT

    def tex(self, text: str) -> str:
        out = tex_text(text)
        return out.replace("/", r"/\allowbreak{}") if self.wraps else out  # paths and a/b/c break at a slash


def text_pt(text: str) -> float:
    """The width of a text in the table's font, estimated on the generous side."""
    return sum(SPACE_PT if c == " " else WIDE_PT if c in WIDE else CHAR_PT for c in text)


def longest_word_pt(texts: list[str]) -> float:
    return max([text_pt(word) for text in texts for word in re.split(r"[ /]", text)] + [0.0])


def latex(key: str, title: str, display: pd.DataFrame, width_pt: float = TEXT_WIDTH_PT) -> str:
    """One table as one booktabs float, or several when its columns need more than width_pt. The
    columns of settings a sweep varied are named in display.attrs["settings"] (columns.with_settings)."""
    if not len(display):
        return ""
    settings = display.attrs.get("settings", [])
    columns = [Column(str(name), [cell_text(v) for v in display[name]], is_numeric(display[name]))
               for name in display]
    columns = [c for c in columns if any(cell not in PLACEHOLDERS for cell in c.cells)]
    labels = label_columns(columns, settings, width_pt)
    shared = [c for c in labels if len(set(c.cells)) == 1]
    if shared:
        title += " (" + "; ".join(f"{c.name}: {c.cells[0]}" for c in shared) + ")"
    labels = [c for c in labels if c not in shared]
    parts = split(labels, [c for c in columns if c not in labels and c not in shared], width_pt)
    return "\n".join(table_float(f"{key}" if i == 0 else f"{key}:{i + 1}",
                                 title if i == 0 else f"{title} (continued, part {i + 1} of {len(parts)})", part)
                     for i, part in enumerate(parts))


LABELS_SHARE = 0.45  # the row labels take at most this share of the width (beyond the first column)


def label_columns(columns: list[Column], settings, width_pt: float) -> list[Column]:
    """The leading columns that say what a row is: text columns, δ and the settings a sweep varied, as
    far as they leave room for values; the first column when no other qualifies."""
    labels, used = [], 0.0
    for column in columns:
        if column.numeric and column.name != "δ" and column.name not in settings:
            break
        used += column.occupied_pt
        if labels and used > LABELS_SHARE * width_pt:
            break
        labels.append(column)
    return labels or columns[:1]


def split(labels: list[Column], values: list[Column], width_pt: float) -> list[list[Column]]:
    """The value columns in their order, in as few parts as fit beside the labels."""
    room = width_pt - sum(c.occupied_pt for c in labels)
    parts, used = [[]], 0.0
    for column in values:
        if parts[-1] and used + column.occupied_pt > room:
            parts.append([])
            used = 0.0
        parts[-1].append(column)
        used += column.occupied_pt
    return [labels + part for part in parts]


def table_float(label: str, caption: str, columns: list[Column]) -> str:
    rows = [" & ".join(c.tex(c.name) for c in columns) + r" \\", r"\midrule"]
    rows += [" & ".join(c.tex(c.cells[i]) for c in columns) + r" \\" for i in range(len(columns[0].cells))]
    return "\n".join([r"\begin{table}", r"\centering", rf"\caption{{{tex_text(caption)}}}", rf"\label{{tab:{label}}}",
                      FONT, rf"\setlength{{\tabcolsep}}{{{COLUMN_SEP_PT:g}pt}}",
                      rf"\begin{{tabular}}{{{''.join(c.spec for c in columns)}}}", r"\toprule", *rows, r"\bottomrule",
                      r"\end{tabular}", r"\end{table}", ""])


# LaTeX's special characters in text mode, and the other characters the tables print, as pdflatex
# typesets them with its default fonts (OT1 prints a bare < > | as the wrong glyph, and stops at
# a Unicode character it has no definition for).
TEXT_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
            "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "–": "--", "—": "---",
            "⚠": r"\textbf{!}"}
MATH_TEX = {"<": "<", ">": ">", "|": "|", "±": r"\pm", "×": r"\times", "−": "-", "≤": r"\leq", "≥": r"\geq",
            "≈": r"\approx", "→": r"\rightarrow", "√": r"\surd", "·": r"\cdot", "δ": r"\delta", "Δ": r"\Delta",
            "σ": r"\sigma", **{chr(0x2080 + i): f"_{i}" for i in range(10)}}  # ₀-₉: subscripts
# A one-letter symbol with a one-character subscript (e_δ, d_z, e₁) is one formula, not an underscore.
SYMBOL = re.compile(r"(?<![A-Za-z0-9])([A-Za-z])(?:_([A-Za-z0-9δ])|([₀-₉]))(?![A-Za-z0-9_₀-₉])")
NEGATIVE = re.compile(r"(?<![A-Za-z0-9.])-(?=\d)")  # -0.21, [-63.14, ...]; not the hyphen of d-0.2 or a range
NUMERIC_CELL = re.compile(r"^(?:[<≤] ?|\[)?[+\-−]?\d")  # a number (signed), a bound such as <0.001, an interval [low, high]
PLACEHOLDERS = {"", "-", "–", "n/a"}  # what an empty numeric cell prints


def tex_text(text: str) -> str:
    """Plain text (a cell, a header, a caption) as LaTeX: specials escaped, symbols in math mode,
    neighbouring formulas merged into one."""
    pieces: list[tuple[bool, str]] = []  # (math mode, LaTeX)
    position = 0
    for match in SYMBOL.finditer(text):
        pieces += _tex_pieces(text[position:match.start()])
        letter, subscript = match.group(1), match.group(2) or match.group(3)
        pieces.append((True, f"{letter}_{{{''.join(MATH_TEX.get(c, c) for c in subscript).lstrip('_')}}}"))
        position = match.end()
    pieces += _tex_pieces(text[position:])
    out, math_run = [], []
    for is_math, tex in pieces + [(False, "")]:
        if is_math:
            math_run.append(tex)
            continue
        if math_run:
            out.append("$" + " ".join(math_run) + "$")
            math_run = []
        out.append(tex)
    return "".join(out)


def _tex_pieces(text: str) -> list[tuple[bool, str]]:
    text = NEGATIVE.sub("−", text)  # the sign of a number is a minus, not a hyphen
    return [(True, MATH_TEX[c]) if c in MATH_TEX else (False, TEXT_TEX.get(c, c)) for c in text]


def cell_text(value) -> str:
    """A display cell as the Markdown prints it: strings as they are, whole floats without '.0'."""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:g}"
    return str(value)


def is_numeric(column: pd.Series) -> bool:
    """Right-align a column whose every filled cell starts with a number (mean ± CI, [low, high] and
    p-value cells included)."""
    cells = [cell_text(v).strip() for v in column]
    filled = [c for c in cells if c not in PLACEHOLDERS]
    return bool(filled) and all(NUMERIC_CELL.match(c) for c in filled)
