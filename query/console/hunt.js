// Hunt: the SQL editor with completion, the time-range picker that rewrites
// the query's time filter, results streamed into a virtualized table, the
// result's time histogram, click-to-pivot, history, saved queries, export.

import { applyTimeRange, bucketSeconds, complete, FUNCTIONS, histogramSql, pivot, withoutRange, wordAt } from "./sql.js";
import { download, el, errorBox, fill, histogram, RANGES, VirtualTable } from "./widgets.js";

export const DEFAULT_SQL = `SELECT time, metadata_product, event_code, device_hostname, actor_user_name,
       src_ip, dst_ip, process_cmd_line, message
FROM events
ORDER BY time DESC
LIMIT 1000`;

const HISTORY_MAX = 50;
// Completion schemas, per tenant, for the session.
const schemas = new Map();

function historyKey(tenant) {
  return `spoor.history.${tenant}`;
}

function readHistory(tenant) {
  try {
    return JSON.parse(localStorage.getItem(historyKey(tenant)) || "[]");
  } catch {
    return [];
  }
}

function remember(tenant, sql) {
  const same = withoutRange(sql);
  const list = readHistory(tenant).filter((h) => withoutRange(h.sql) !== same);
  list.unshift({ sql, at: new Date().toISOString() });
  localStorage.setItem(historyKey(tenant), JSON.stringify(list.slice(0, HISTORY_MAX)));
}

async function schemaOf(ctx) {
  if (schemas.has(ctx.tenant)) return schemas.get(ctx.tenant);
  const schema = { tables: {}, functions: FUNCTIONS };
  const { rows } = await ctx.api.query(
    "SELECT table_name, column_name FROM information_schema.columns " +
      "WHERE table_schema <> 'information_schema' ORDER BY table_name, ordinal_position",
    ctx.tenant,
  );
  for (const r of rows) (schema.tables[r.table_name] ||= []).push(r.column_name);
  schemas.set(ctx.tenant, schema);
  return schema;
}

export function mount(ctx, root) {
  const handed = ctx.pending && ctx.pending.sql;
  ctx.pending = null;
  // `run` counts the runs: an answer of an earlier run (its histogram, its
  // failure) is dropped once a later one started.
  const state = { controller: null, queryId: null, alive: true, run: 0 };

  const range = el("select", { "data-testid": "range", "aria-label": "time range" },
    RANGES.map(([label, ms]) => el("option", { value: ms, text: label })),
    el("option", { value: "custom", text: "Custom…" }),
    el("option", { value: "none", text: "As written (no time filter)" }));
  // A query handed over from another page carries its own time filter.
  range.value = handed ? "none" : String(86400e3);
  const fromInput = el("input", { type: "datetime-local", "aria-label": "from", hidden: true });
  const toInput = el("input", { type: "datetime-local", "aria-label": "to", hidden: true });
  range.addEventListener("change", () => {
    const custom = range.value === "custom";
    fromInput.hidden = toInput.hidden = !custom;
  });
  const editor = el("textarea.sql", { spellcheck: "false", "data-testid": "sql", "aria-label": "SQL" });
  editor.value = handed || readHistory(ctx.tenant)[0]?.sql || DEFAULT_SQL;
  const suggestions = el("ul.suggest", { hidden: true, "data-testid": "suggestions" });
  const status = el("div.status", { "data-testid": "status" });
  const chart = el("div.chart");
  const table = new VirtualTable({
    onCell: (column, value, ev) => {
      editor.value = pivot(editor.value, column, value, { exclude: ev.altKey, timestamp: column === "time" });
      run();
    },
  });
  const historyList = el("ol.history", { "data-testid": "history" });
  const savedList = el("ul.saved", { "data-testid": "saved" });
  const saveName = el("input", { placeholder: "name", "aria-label": "saved query name" });
  const errors = el("div");

  function currentRange() {
    if (range.value === "none") return null;
    if (range.value === "custom") {
      const from = new Date(fromInput.value);
      const to = new Date(toInput.value);
      if (Number.isNaN(from.getTime()) || Number.isNaN(to.getTime()) || from >= to) {
        throw new Error("custom range: give a start before the end");
      }
      return [from, to];
    }
    const to = new Date();
    return [new Date(to.getTime() - Number(range.value)), to];
  }

  function renderHistory() {
    fill(historyList, ...readHistory(ctx.tenant).map((h) =>
      el("li", {}, el("button.link", { title: h.sql, onclick: () => { editor.value = h.sql; } }, h.sql.replace(/\s+/g, " ").slice(0, 90)))));
  }

  async function renderSaved() {
    try {
      const { saved } = await ctx.api.get(`/v1/saved-queries?tenant=${encodeURIComponent(ctx.tenant)}`);
      fill(savedList, ...saved.map((s) => el("li", {},
        el("button.link", { title: s.sql, onclick: () => { editor.value = s.sql; } }, s.name),
        el("button.small", {
          "aria-label": `delete ${s.name}`,
          onclick: async () => {
            await ctx.api.json("DELETE", `/v1/saved-queries?tenant=${encodeURIComponent(ctx.tenant)}&name=${encodeURIComponent(s.name)}`);
            renderSaved();
          },
        }, "×"))));
    } catch (e) {
      fill(savedList, el("li", {}, errorBox(e)));
    }
  }

  async function save() {
    const name = saveName.value.trim();
    if (!name) {
      fill(errors, errorBox(new Error("name the query to save it")));
      return;
    }
    try {
      await ctx.api.json("PUT", `/v1/saved-queries?tenant=${encodeURIComponent(ctx.tenant)}`, { name, sql: editor.value });
      saveName.value = "";
      renderSaved();
    } catch (e) {
      fill(errors, errorBox(e));
    }
  }

  async function drawHistogram(sql, span, run) {
    const [from, to] = span || [null, null];
    let seconds = 3600;
    if (from) seconds = bucketSeconds(from, to);
    const { rows } = await ctx.api.query(histogramSql(sql, seconds), ctx.tenant);
    if (!state.alive || run !== state.run) return;
    fill(chart, histogram(rows, seconds, (a, b) => {
      range.value = "custom";
      fromInput.hidden = toInput.hidden = false;
      const local = (d) => new Date(d.getTime() - d.getTimezoneOffset() * 60e3).toISOString().slice(0, 16);
      fromInput.value = local(a);
      toInput.value = local(b);
      run();
    }));
  }

  async function run() {
    fill(errors, );
    if (state.controller) state.controller.abort();
    let span;
    try {
      span = currentRange();
    } catch (e) {
      fill(errors, errorBox(e));
      return;
    }
    if (span) editor.value = applyTimeRange(editor.value, span[0], span[1]);
    const sql = editor.value;
    remember(ctx.tenant, sql);
    renderHistory();
    const controller = new AbortController();
    state.controller = controller;
    const run = ++state.run;
    const current = () => run === state.run;
    const started = performance.now();
    let rows = 0;
    let histogramDone = Promise.resolve();
    status.textContent = "running…";
    fill(chart, );
    try {
      await ctx.api.stream(sql, ctx.tenant, {
        signal: controller.signal,
        onColumns: (columns, id) => {
          state.queryId = id;
          table.setColumns(columns);
          if (columns.includes("time")) {
            histogramDone = drawHistogram(sql, span, run).catch((e) => {
              if (current()) fill(chart, errorBox(e));
            });
          }
        },
        onRows: (batch) => {
          rows += batch.length;
          table.append(batch);
          status.textContent = `${rows.toLocaleString()} rows so far…`;
        },
      });
      await histogramDone;
      if (!current()) return;
      const ms = Math.round(performance.now() - started);
      status.textContent = `${rows.toLocaleString()} rows in ${ms} ms`;
      status.dataset.rows = String(rows);
      if (!window.__spoorFirstPage) {
        // The first page is rendered: rows and histogram on screen
        // (docs/performance.md, measured by the browser tests).
        window.__spoorFirstPage = performance.now();
        performance.mark("spoor-first-page");
      }
    } catch (e) {
      if (!current()) return;
      if (e.name === "AbortError") {
        status.textContent = `cancelled after ${rows.toLocaleString()} rows`;
      } else {
        status.textContent = "";
        fill(errors, errorBox(e));
      }
    } finally {
      if (state.controller === controller) state.controller = null;
    }
  }

  async function cancel() {
    const id = state.queryId;
    if (state.controller) state.controller.abort();
    if (id) {
      try {
        await ctx.api.json("DELETE", `/v1/queries/${encodeURIComponent(id)}`);
      } catch {
        // Finished already.
      }
    }
  }

  async function exportAs(format) {
    try {
      const blob = await ctx.api.export(editor.value, ctx.tenant, format);
      download(blob, `spoor-hunt.${format === "csv" ? "csv" : "ndjson"}`);
    } catch (e) {
      fill(errors, errorBox(e));
    }
  }

  // Completion: Ctrl+Space or typing two characters of a word.
  let options = [];
  let chosen = 0;
  async function suggest(force) {
    const { start, word } = wordAt(editor.value, editor.selectionStart);
    const last = word.split(".").pop();
    if (!force && last.length < 2) {
      suggestions.hidden = true;
      return;
    }
    let schema;
    try {
      schema = await schemaOf(ctx);
    } catch {
      return;
    }
    options = complete(last, schema, editor.value);
    chosen = 0;
    suggestions.hidden = !options.length;
    fill(suggestions, ...options.map((o, i) =>
      el(`li.${o.kind}${i === 0 ? ".chosen" : ""}`, { onmousedown: (ev) => { ev.preventDefault(); accept(i, start + word.length - last.length); } },
        o.text, el("span.kind", {}, o.kind))));
    suggestions.dataset.start = String(start + word.length - last.length);
  }
  function accept(i, start) {
    const option = options[i];
    if (!option) return;
    const end = editor.selectionStart;
    editor.value = editor.value.slice(0, start) + option.text + editor.value.slice(end);
    editor.selectionStart = editor.selectionEnd = start + option.text.length;
    suggestions.hidden = true;
    editor.focus();
  }
  editor.addEventListener("keydown", (ev) => {
    if ((ev.ctrlKey || ev.metaKey) && ev.key === "Enter") {
      ev.preventDefault();
      run();
    } else if (ev.ctrlKey && ev.key === " ") {
      ev.preventDefault();
      suggest(true);
    } else if (!suggestions.hidden && (ev.key === "Tab" || ev.key === "Enter")) {
      ev.preventDefault();
      accept(chosen, Number(suggestions.dataset.start));
    } else if (!suggestions.hidden && (ev.key === "ArrowDown" || ev.key === "ArrowUp")) {
      ev.preventDefault();
      chosen = (chosen + (ev.key === "ArrowDown" ? 1 : options.length - 1)) % options.length;
      [...suggestions.children].forEach((li, i) => li.classList.toggle("chosen", i === chosen));
    } else if (ev.key === "Escape") {
      suggestions.hidden = true;
    }
  });
  editor.addEventListener("input", () => suggest(false));
  editor.addEventListener("blur", () => setTimeout(() => { suggestions.hidden = true; }, 150));

  root.append(el("section.hunt", {},
    el("div.toolbar", {},
      range, fromInput, toInput,
      el("button.primary", { onclick: run, "data-testid": "run", title: "Ctrl+Enter" }, "Run"),
      el("button", { onclick: cancel }, "Cancel"),
      el("span.spacer"),
      saveName, el("button", { onclick: save }, "Save"),
      el("button", { onclick: () => exportAs("csv") }, "Export CSV"),
      el("button", { onclick: () => exportAs("ndjson") }, "Export JSON")),
    el("div.hunt-body", {},
      el("div.hunt-main", {}, el("div.editor", {}, editor, suggestions), errors, status, chart, table.root),
      el("aside.side", {}, el("h3", {}, "Saved"), savedList, el("h3", {}, "History"), historyList))));
  renderHistory();
  renderSaved();
  run();
  return {
    unmount() {
      state.alive = false;
      if (state.controller) state.controller.abort();
    },
  };
}
