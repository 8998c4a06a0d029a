// Rules: the tenant's rule sets with version and enablement, each rule's
// alert count and last match, its source and compiled form, and "test
// against the last N hours" (a retro-hunt of the rule's file, with its
// measured evaluation rate).

import { el, errorBox, fill, show } from "./widgets.js";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function mount(ctx, root) {
  const list = el("div.sets", { "data-testid": "rule-sets" });
  const detail = el("div.detail", { "data-testid": "rule-detail" });
  const errors = el("div");
  const t = encodeURIComponent(ctx.tenant);
  let alive = true;

  async function load() {
    fill(errors, );
    try {
      const [{ rule_sets: sets }, counts] = await Promise.all([
        ctx.api.get(`/v1/rules/sets?tenant=${t}`),
        ctx.api.query(
          "SELECT rule_set, rule_id, count(*) AS alerts, max(detected_at) AS last_alert FROM alerts " +
            "WHERE time >= now() - INTERVAL '7 days' GROUP BY rule_set, rule_id",
          ctx.tenant,
        ),
      ]);
      const bySet = new Map();
      for (const r of counts.rows) {
        const n = bySet.get(r.rule_set) || 0;
        bySet.set(r.rule_set, n + Number(r.alerts));
      }
      fill(list, el("table.grid", {},
        el("thead", {}, el("tr", {}, ["rule set", "version", "enabled", "files", "updated", "alerts (7 days)", ""].map((h) => el("th", {}, h)))),
        el("tbody", {}, sets.map((s) => el("tr", { "data-set": s.name },
          el("td", {}, el("button.link", { onclick: () => open(s.name, counts.rows) }, s.name)),
          el("td.num", {}, show(s.version)),
          el("td", {}, s.enabled ? "enabled" : "disabled"),
          el("td.num", {}, show(s.files)),
          el("td", {}, show(s.updated_at)),
          el("td.num", {}, show(bySet.get(s.name) || 0)),
          el("td", {}, el("button", { onclick: () => toggle(s) }, s.enabled ? "Disable" : "Enable")))))),
      sets.length ? null : el("p.empty", {}, "No rule sets: apply one with `spoor rules apply DIR --tenant T`."));
    } catch (e) {
      fill(errors, errorBox(e));
    }
  }

  async function toggle(set) {
    try {
      const full = await ctx.api.get(`/v1/rules/sets/${t}/${encodeURIComponent(set.name)}`);
      await ctx.api.json("PUT", `/v1/rules/sets/${t}/${encodeURIComponent(set.name)}`, {
        bundle: full.bundle, expected_version: full.version, enabled: !full.enabled,
      });
      load();
    } catch (e) {
      fill(errors, errorBox(e));
    }
  }

  async function open(name, countRows) {
    fill(detail, el("p", {}, "compiling…"));
    try {
      const [compiled, full] = await Promise.all([
        ctx.api.get(`/v1/rules/sets/${t}/${encodeURIComponent(name)}/compiled`),
        ctx.api.get(`/v1/rules/sets/${t}/${encodeURIComponent(name)}`),
      ]);
      const counts = new Map(countRows.filter((r) => r.rule_set === name).map((r) => [r.rule_id, r]));
      const files = new Map(full.bundle.rules.map((f) => [f.path, f.text]));
      fill(detail, 
        el("h2", {}, `${name} v${compiled.version}`),
        compiled.findings.length
          ? el("ul.findings", {}, compiled.findings.map((f) => el("li", {}, `${f.warning ? "warning" : "refused"}: ${f.file}:${f.line}: ${f.message}`)))
          : null,
        el("table.grid", { "data-testid": "rules" },
          el("thead", {}, el("tr", {}, ["rule", "level", "kind", "alerts (7 days)", "last alert", ""].map((h) => el("th", {}, h)))),
          el("tbody", {}, compiled.rules.map((r) => {
            const c = counts.get(r.key) || counts.get(r.id) || {};
            const more = el("tr.more", { hidden: true }, el("td", { colspan: 6 }, ruleDetail(r, files, full.bundle)));
            return [
              el("tr", { "data-rule": r.key },
                el("td", {}, el("button.link", { onclick: () => { more.hidden = !more.hidden; } }, r.title)),
                el("td", {}, el(`span.level.${r.level || "none"}`, {}, show(r.level))),
                el("td", {}, r.kind),
                el("td.num", {}, show(c.alerts || 0)),
                el("td", {}, show(c.last_alert))),
              more,
            ];
          }))),
      );
    } catch (e) {
      fill(detail, errorBox(e));
    }
  }

  function ruleDetail(rule, files, bundle) {
    const hours = el("input", { type: "number", min: 1, max: 720, value: 24, "aria-label": "hours" });
    const result = el("div.retro", { "data-testid": "retro-result" });
    const test = async () => {
      fill(result, el("p", {}, "running…"));
      const to = new Date();
      const from = new Date(to.getTime() - Number(hours.value) * 3600e3);
      const file = bundle.rules.find((f) => f.path === rule.file);
      try {
        // A dry run: the test finds and counts, it raises no alert.
        const job = await ctx.api.json("POST", "/v1/retro-hunts", {
          tenant: ctx.tenant,
          bundle: { ...bundle, rules: file ? [file] : bundle.rules },
          from: from.toISOString(),
          to: to.toISOString(),
          dry_run: true,
        });
        let state = job;
        while (alive && !["done", "failed", "cancelled"].includes(state.state)) {
          await sleep(500);
          state = await ctx.api.get(`/v1/retro-hunts/${encodeURIComponent(job.job_id)}`);
          fill(result, el("p", {}, `${state.state}: ${state.files_done}/${state.files_total} files, ${Number(state.events_evaluated).toLocaleString()} events`));
        }
        const secs = (Date.parse(state.finished_at) - Date.parse(state.started_at)) / 1000;
        const rate = secs > 0 ? Math.round(state.events_evaluated / secs) : null;
        fill(result, el("p", { "data-state": state.state, "data-found": state.alerts_found },
          `${state.state}: ${Number(state.events_evaluated).toLocaleString()} events over ${hours.value} h evaluated in ${secs.toFixed(2)} s` +
            `${rate ? ` (${rate.toLocaleString()} events/s, the rule file's evaluation cost)` : ""}; ` +
            `${state.alerts_found} alerts would be raised${state.error ? `; ${state.error}` : ""}`),
        state.sample.length
          ? el("table.grid", { "data-testid": "retro-sample" },
            el("thead", {}, el("tr", {}, ["rule", "first event", "last event", "events", "group"].map((h) => el("th", {}, h)))),
            el("tbody", {}, state.sample.map((a) => el("tr", {},
              el("td", {}, a.rule_title), el("td", {}, show(a.first_event_time)), el("td", {}, show(a.last_event_time)),
              el("td.num", {}, show(a.event_count)), el("td.mono", {}, show(a.group_key))))))
          : null,
        state.alerts_found > state.sample.length ? el("p.hint", {}, `the first ${state.sample.length} of ${state.alerts_found} shown`) : null);
      } catch (e) {
        fill(result, errorBox(e));
      }
    };
    return el("div.rule", {},
      el("div.cols", {},
        el("div", {}, el("h4", {}, `Source (${rule.file}:${rule.line})`), el("pre.code", { "data-testid": "rule-source" }, files.get(rule.file) || "")),
        el("div", {}, el("h4", {}, "Compiled"), el("pre.code", { "data-testid": "rule-compiled" }, rule.compiled || "(an SQL rule: its query is its source)"))),
      el("div.toolbar", {}, "Test against the last ", hours, " hours ",
        el("button", { "data-testid": "retro-run", onclick: test }, "Run retro-hunt"),
        el("span.hint", {}, "a dry run: it shows what the rule would raise and raises nothing")),
      result);
  }

  root.append(el("section.rules", {}, errors, list, detail));
  load();
  return { unmount() { alive = false; } };
}

