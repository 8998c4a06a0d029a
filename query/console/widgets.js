// Building blocks of the pages: element creation, a virtualized table that
// takes rows as they stream in, an SVG time histogram, and messages.

/** An element: `el("div.cls", {attrs}, children...)`. */
export function el(spec, attrs = {}, ...children) {
  const [tag, ...classes] = spec.split(".");
  const node = document.createElement(tag || "div");
  if (classes.length) node.className = classes.join(" ");
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "text") node.textContent = v;
    else if (k === "value") node.value = v;
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

/** Replaces `node`'s children, leaving out null, undefined and false (the
 * "nothing here" of conditional parts). */
export function fill(node, ...children) {
  node.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
}

/** A cell value as text. */
export function show(v) {
  if (v === null || v === undefined) return "";
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

/** An error message box (role=alert) naming the error code. */
export function errorBox(e) {
  const code = e && e.code ? `${e.code}: ` : "";
  return el("div.error", { role: "alert" }, `${code}${e && e.message ? e.message : e}`);
}

const ROW_HEIGHT = 26;

/** A table of rows that only renders the rows in view, so a result of a
 * million rows scrolls like one of a hundred. `onCell(column, value, event)`
 * is called on a click of a cell. */
export class VirtualTable {
  constructor({ onCell, testid = "results" } = {}) {
    this.columns = [];
    this.rows = [];
    this.onCell = onCell;
    this.head = el("div.vt-head");
    this.spacer = el("div.vt-spacer");
    this.body = el("div.vt-rows");
    this.viewport = el("div.vt-viewport", { "data-testid": testid }, this.spacer, this.body);
    this.root = el("div.vt", {}, this.head, this.viewport);
    this.viewport.addEventListener("scroll", () => this.schedule());
    this.frame = 0;
  }

  setColumns(columns) {
    this.columns = columns;
    this.rows = [];
    this.head.replaceChildren(...columns.map((c) => el("div.vt-cell.vt-h", { title: c }, c)));
    this.schedule();
  }

  append(rows) {
    if (!this.columns.length && rows.length) this.setColumns(Object.keys(rows[0]));
    for (const r of rows) this.rows.push(r);
    this.schedule();
  }

  schedule() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.render();
    });
  }

  render() {
    const total = this.rows.length;
    this.spacer.style.height = `${total * ROW_HEIGHT}px`;
    const top = this.viewport.scrollTop;
    const height = this.viewport.clientHeight || 400;
    const first = Math.max(0, Math.floor(top / ROW_HEIGHT) - 5);
    const last = Math.min(total, Math.ceil((top + height) / ROW_HEIGHT) + 5);
    const width = `${this.columns.length * 180}px`;
    this.head.style.width = width;
    this.body.style.transform = `translateY(${first * ROW_HEIGHT}px)`;
    const lines = [];
    for (let i = first; i < last; i++) {
      const row = this.rows[i];
      const line = el(
        "div.vt-row",
        { "data-row": i },
        this.columns.map((c) => {
          const text = show(row[c]);
          return el("div.vt-cell", {
            title: text,
            "data-column": c,
            onclick: (ev) => this.onCell && this.onCell(c, row[c], ev),
          }, text);
        }),
      );
      // Set through the CSSOM: the page's policy refuses style attributes.
      line.style.width = width;
      lines.push(line);
    }
    this.body.replaceChildren(...lines);
  }
}

/** An SVG bar chart of {bucket, n} over time; `onBar(from, to)` on click. */
export function histogram(buckets, seconds, onBar) {
  const ns = "http://www.w3.org/2000/svg";
  const width = 1000;
  const height = 120;
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height + 18}`);
  svg.setAttribute("class", "histogram");
  svg.setAttribute("data-testid", "histogram");
  svg.setAttribute("role", "img");
  const total = buckets.reduce((s, b) => s + Number(b.n), 0);
  svg.setAttribute("aria-label", `${total} events in ${buckets.length} buckets of ${seconds} s`);
  if (!buckets.length) return svg;
  const times = buckets.map((b) => Date.parse(b.bucket.endsWith("Z") ? b.bucket : `${b.bucket}Z`));
  const start = Math.min(...times);
  const end = Math.max(...times) + seconds * 1000;
  const max = Math.max(...buckets.map((b) => Number(b.n)));
  const x = (t) => ((t - start) / (end - start)) * width;
  const barWidth = Math.max(1, (seconds * 1000 / (end - start)) * width - 1);
  buckets.forEach((b, i) => {
    const h = Math.max(1, (Number(b.n) / max) * height);
    const rect = document.createElementNS(ns, "rect");
    rect.setAttribute("x", x(times[i]));
    rect.setAttribute("y", height - h);
    rect.setAttribute("width", barWidth);
    rect.setAttribute("height", h);
    rect.setAttribute("class", "bar");
    rect.setAttribute("data-count", b.n);
    const title = document.createElementNS(ns, "title");
    title.textContent = `${new Date(times[i]).toISOString()}: ${b.n}`;
    rect.append(title);
    if (onBar) rect.addEventListener("click", () => onBar(new Date(times[i]), new Date(times[i] + seconds * 1000)));
    svg.append(rect);
  });
  for (const [t, anchor] of [[start, "start"], [end, "end"]]) {
    const label = document.createElementNS(ns, "text");
    label.setAttribute("x", x(t));
    label.setAttribute("y", height + 14);
    label.setAttribute("text-anchor", anchor);
    label.textContent = new Date(t).toISOString().replace("T", " ").slice(0, 19);
    svg.append(label);
  }
  return svg;
}

/** Time ranges of the pickers: label, milliseconds back from now. */
export const RANGES = [
  ["Last 15 minutes", 15 * 60e3],
  ["Last hour", 3600e3],
  ["Last 4 hours", 4 * 3600e3],
  ["Last 24 hours", 86400e3],
  ["Last 7 days", 7 * 86400e3],
  ["Last 30 days", 30 * 86400e3],
];

/** Seconds as "1 h 2 min" / "35 s". */
export function duration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "–";
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

/** A download of `blob` as `name`. */
export function download(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = el("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
