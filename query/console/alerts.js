// Alerts: the triage queue (filters by rule, level, status, assignee and
// time), an alert's detail with its matching events and a pivot into Hunt,
// status and assignee changes, and MTTD / MTTA / MTTR over the range.

import { literal } from "./sql.js";
import { duration, el, errorBox, fill, RANGES, show } from "./widgets.js";

const LEVELS = ["critical", "high", "medium", "low", "informational"];
const STATUSES = ["new", "acknowledged", "closed"];
const EPOCH = (c) => `date_part('epoch', ${c})`;

/** The SQL of the matching events of `alert`: by Kafka position where the
 * alert names positions, else the events of its time span. */
export function matchingEventsSql(alert) {
  let refs = [];
  try {
    refs = JSON.parse(alert.event_refs || "[]");
  } catch {
    refs = [];
  }
  const positions = refs.filter((r) => r.topic !== undefined && r.offset !== undefined);
  const columns = "time, metadata_product, event_code, device_hostname, actor_user_name, src_ip, dst_ip, process_cmd_line, source_topic, source_partition, source_offset";
  if (positions.length && positions.length === refs.length) {
    const conditions = positions
      .slice(0, 200)
      .map((r) => `(source_topic = ${literal(r.topic)} AND source_partition = ${Number(r.partition)} AND source_offset = ${Number(r.offset)})`)
      .join(" OR ");
    return `SELECT ${columns} FROM events\nWHERE time >= TIMESTAMP '${alert.first_event_time}' AND time <= TIMESTAMP '${alert.last_event_time}'\n  AND (${conditions})\nORDER BY time`;
  }
  return `SELECT ${columns} FROM events\nWHERE time >= TIMESTAMP '${alert.first_event_time}' AND time <= TIMESTAMP '${alert.last_event_time}'\nORDER BY time\nLIMIT 1000`;
}

export function mount(ctx, root) {
  const range = el("select", { "aria-label": "time range" }, RANGES.map(([label, ms]) => el("option", { value: ms, text: label })));
  range.value = String(7 * 86400e3);
  const rule = el("select", { "aria-label": "rule", "data-testid": "filter-rule" }, el("option", { value: "", text: "Any rule" }));
  const level = el("select", { "aria-label": "level" }, el("option", { value: "", text: "Any level" }), LEVELS.map((l) => el("option", { value: l, text: l })));
  const status = el("select", { "aria-label": "status", "data-testid": "filter-status" }, el("option", { value: "", text: "Any status" }), STATUSES.map((s) => el("option", { value: s, text: s })));
  status.value = "";
  const assignee = el("input", { placeholder: "assignee", "aria-label": "assignee filter" });
  const figures = el("div.figures", { "data-testid": "figures" });
  const queue = el("div.queue", { "data-testid": "queue" });
  const detail = el("div.detail", { "data-testid": "alert-detail" });
  const errors = el("div");

  function since() {
    return new Date(Date.now() - Number(range.value)).toISOString();
  }

  function where() {
    const c = [`time >= TIMESTAMP '${since()}'`];
    if (rule.value) c.push(`rule_id = ${literal(rule.value)}`);
    if (level.value) c.push(`rule_level = ${literal(level.value)}`);
    if (status.value) c.push(`status = ${literal(status.value)}`);
    if (assignee.value.trim()) c.push(`assignee = ${literal(assignee.value.trim())}`);
    return c.join(" AND ");
  }

  async function loadRules() {
    const { rows } = await ctx.api.query(
      `SELECT rule_id, max(rule_title) AS title, count(*) AS n FROM alerts WHERE time >= TIMESTAMP '${since()}' GROUP BY rule_id ORDER BY n DESC`,
      ctx.tenant,
    );
    const keep = rule.value;
    fill(rule, el("option", { value: "", text: "Any rule" }), rows.map((r) => el("option", { value: r.rule_id, text: `${r.title} (${r.n})` })));
    rule.value = keep;
  }

  async function loadFigures() {
    const { rows } = await ctx.api.query(
      `SELECT count(*) AS alerts,
              count(*) FILTER (WHERE status = 'new') AS untriaged,
              avg(${EPOCH("detected_at")} - ${EPOCH("last_event_time")}) AS mttd_s,
              avg(${EPOCH("acknowledged_at")} - ${EPOCH("detected_at")}) AS mtta_s,
              avg(${EPOCH("closed_at")} - ${EPOCH("detected_at")}) AS mttr_s
       FROM alerts WHERE ${where()}`,
      ctx.tenant,
    );
    const f = rows[0] || {};
    const figure = (label, value, id) => el("div.figure", { "data-testid": id }, el("span.value", {}, value), el("span.label", {}, label));
    fill(figures, 
      figure("alerts", (f.alerts ?? 0).toLocaleString(), "fig-alerts"),
      figure("untriaged", (f.untriaged ?? 0).toLocaleString(), "fig-untriaged"),
      figure("MTTD (last event → alert)", duration(f.mttd_s), "fig-mttd"),
      figure("MTTA (alert → acknowledged)", duration(f.mtta_s), "fig-mtta"),
      figure("MTTR (alert → closed)", duration(f.mttr_s), "fig-mttr"),
    );
  }

  async function loadQueue() {
    const { rows } = await ctx.api.query(
      `SELECT detected_at, rule_level, rule_title, status, assignee, event_count, group_key, alert_id, rule_id
       FROM alerts WHERE ${where()}
       ORDER BY CASE rule_level WHEN 'critical' THEN 0 WHEN 'high' THEN 1 WHEN 'medium' THEN 2 WHEN 'low' THEN 3 ELSE 4 END, detected_at DESC
       LIMIT 500`,
      ctx.tenant,
    );
    const head = ["detected", "level", "rule", "status", "assignee", "events", "group"];
    fill(queue, el("table.grid", {},
      el("thead", {}, el("tr", {}, head.map((h) => el("th", {}, h)))),
      el("tbody", {}, rows.map((r) => el("tr", {
        "data-alert": r.alert_id,
        tabindex: 0,
        onclick: () => open(r.alert_id),
        onkeydown: (ev) => { if (ev.key === "Enter") open(r.alert_id); },
      },
      el("td", {}, show(r.detected_at)),
      el("td", {}, el(`span.level.${r.rule_level || "none"}`, {}, show(r.rule_level))),
      el("td", {}, show(r.rule_title)),
      el("td", {}, el(`span.status.${r.status}`, {}, show(r.status))),
      el("td", {}, show(r.assignee)),
      el("td.num", {}, show(r.event_count)),
      el("td.mono", {}, show(r.group_key)))))),
    rows.length ? null : el("p.empty", {}, "No alerts match."));
  }

  async function refresh() {
    fill(errors, );
    try {
      await Promise.all([loadRules(), loadFigures(), loadQueue()]);
    } catch (e) {
      fill(errors, errorBox(e));
    }
  }

  async function change(alertId, body) {
    try {
      await ctx.api.json("PATCH", `/v1/alerts/${encodeURIComponent(ctx.tenant)}/${encodeURIComponent(alertId)}`, body);
      await Promise.all([open(alertId), loadFigures(), loadQueue()]);
    } catch (e) {
      detail.prepend(errorBox(e));
    }
  }

  async function open(alertId) {
    fill(detail, el("p", {}, "loading…"));
    try {
      const { alert, history } = await ctx.api.get(`/v1/alerts/${encodeURIComponent(ctx.tenant)}/${encodeURIComponent(alertId)}`);
      const sql = matchingEventsSql(alert);
      const events = await ctx.api.query(sql, ctx.tenant);
      const who = el("input", { value: alert.assignee || "", placeholder: "assignee", "aria-label": "assignee" });
      const note = el("input", { placeholder: "note", "aria-label": "note" });
      const fields = ["rule_title", "rule_id", "rule_level", "rule_kind", "rule_set", "status", "assignee", "group_key", "event_count", "value", "first_event_time", "last_event_time", "detected_at", "alert_id"];
      fill(detail, 
        el("h2", {}, alert.rule_title),
        el("dl", {}, fields.flatMap((f) => [el("dt", {}, f), el("dd", { "data-field": f }, show(alert[f]))])),
        el("div.actions", {},
          el("button", { "data-testid": "acknowledge", onclick: () => change(alertId, { status: "acknowledged", note: note.value || undefined }) }, "Acknowledge"),
          el("button", { "data-testid": "close", onclick: () => change(alertId, { status: "closed", note: note.value || undefined }) }, "Close"),
          el("button", { onclick: () => change(alertId, { status: "new", note: note.value || undefined }) }, "Reopen"),
          who,
          el("button", { "data-testid": "assign", onclick: () => change(alertId, { assignee: who.value.trim() || null }) }, "Assign"),
          note),
        el("h3", {}, `Matching events (${events.rows.length})`,
          el("button.primary", { "data-testid": "pivot-hunt", onclick: () => ctx.go("hunt", { sql }) }, "Hunt these events")),
        el("table.grid", { "data-testid": "alert-events" },
          el("thead", {}, el("tr", {}, events.columns.map((c) => el("th", {}, c)))),
          el("tbody", {}, events.rows.map((r) => el("tr", {}, events.columns.map((c) => el("td", {}, show(r[c]))))))),
        el("h3", {}, "History"),
        el("ol.history", { "data-testid": "alert-history" }, history.map((h) =>
          el("li", {}, `${show(h.time)} ${show(h.updated_by)}: ${show(h.status)}${h.assignee ? `, assigned to ${h.assignee}` : ""}${h.note ? ` — ${h.note}` : ""}`))),
      );
    } catch (e) {
      fill(detail, errorBox(e));
    }
  }

  for (const control of [range, rule, level, status]) control.addEventListener("change", refresh);
  assignee.addEventListener("change", refresh);
  root.append(el("section.alerts", {},
    el("div.toolbar", {}, range, rule, level, status, assignee, el("button", { onclick: refresh }, "Refresh")),
    errors, figures,
    el("div.split", {}, queue, detail)));
  refresh();
}
