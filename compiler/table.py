"""Tables for people: aligned Markdown that reads well in a terminal too."""

__all__ = ["markdown_table", "fmt_int"]


def fmt_int(n):
    return f"{n:,}" if isinstance(n, int) else str(n)


def markdown_table(headers, rows, align=None):
    """A Markdown table with padded columns; ``align`` is a string of 'l'/'r' per column."""
    cells = [[str(h) for h in headers]] + [[fmt_int(c) if isinstance(c, int) and not
                                             isinstance(c, bool) else str(c) for c in r]
                                            for r in rows]
    align = align or "l" * len(headers)
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r):
        return "| " + " | ".join(c.rjust(w) if a == "r" else c.ljust(w)
                                 for c, w, a in zip(r, widths, align)) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if a == "r" else ("-" * (w + 2))
                          for w, a in zip(widths, align)) + "|"
    return "\n".join([line(cells[0]), rule] + [line(r) for r in cells[1:]])
