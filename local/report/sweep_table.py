"""A sweep's table of results: CSV, and an HTML page whose columns sort on click.
"""
import csv
import html
import io

from local.core.fileio import write_text_atomic
from local.store.layout import RunDir


def write_sweep_csv(path, columns, rows):
    """Write the sweep table as CSV (empty cells for missing figures), atomically."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in columns})
    write_text_atomic(path, out.getvalue())


_SORT_SCRIPT = """
document.querySelectorAll('th').forEach(function (th, column) {
  th.addEventListener('click', function () {
    var body = document.querySelector('tbody');
    var rows = Array.prototype.slice.call(body.rows);
    var ascending = th.getAttribute('data-order') !== 'asc';
    document.querySelectorAll('th').forEach(function (h) { h.removeAttribute('data-order'); });
    th.setAttribute('data-order', ascending ? 'asc' : 'desc');
    rows.sort(function (a, b) {
      var x = a.cells[column].getAttribute('data-value'), y = b.cells[column].getAttribute('data-value');
      var nx = parseFloat(x), ny = parseFloat(y);
      if (x === '' && y !== '') return 1;
      if (y === '' && x !== '') return -1;
      var order = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
      return ascending ? order : -order;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
"""


def sweep_html(title, columns, rows, cost):
    """The sweep table as one static HTML page: sortable by a click on any column, each run linking to its
    report page (``<name>/report.html``); no network needed."""
    esc = html.escape
    head = "".join(f"<th title='click to sort'>{esc(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for column in columns:
            value = row.get(column)
            text = "" if value is None else str(value)
            if column == "path":
                shown = f"<a href='{esc(text + RunDir.REPORT, quote=True)}'>{esc(text)}</a>"
            else:
                shown = esc(text)
            cells.append(f"<td data-value='{esc(text, quote=True)}'>{shown}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; }}
th {{ background: #eee; cursor: pointer; }}
th[data-order=asc]::after {{ content: ' \\25B2'; }}
th[data-order=desc]::after {{ content: ' \\25BC'; }}
</style></head>
<body><h1>{esc(title)}</h1>
<p>{esc(cost)}. {len(rows)} finished run(s). Click a column to sort; lower bits and flatness ratio are
better, higher genre accuracy is better.</p>
<table><thead><tr>{head}</tr></thead><tbody>
{chr(10).join(body)}
</tbody></table>
<script>{_SORT_SCRIPT}</script>
</body></html>
"""
