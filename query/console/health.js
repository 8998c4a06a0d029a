// Health: every source's ingest rate, last event and dead letters, with the
// sources that went silent highlighted (the blind spot a SOC fears most);
// for the cluster's admin, the members and their roles, the Raft leader and
// replication lag, Kafka consumer lag per partition, and the correlation
// shards with their lag.

import { el, errorBox, fill, show } from "./widgets.js";

function table(testid, head, rows, rowAttrs = () => ({})) {
  return el("table.grid", { "data-testid": testid },
    el("thead", {}, el("tr", {}, head.map((h) => el("th", {}, h)))),
    el("tbody", {}, rows.map((r) => el("tr", rowAttrs(r), r.cells.map((c) => el("td", {}, c))))));
}

function ago(ms) {
  if (ms === null || ms === undefined) return "never";
  const s = Math.round(ms / 1000);
  if (s < 120) return `${s} s ago`;
  if (s < 7200) return `${Math.round(s / 60)} min ago`;
  return `${Math.round(s / 3600)} h ago`;
}

const parse = (t) => (t ? Date.parse(/Z|[+-]\d\d:?\d\d$/.test(t) ? t : `${t}Z`) : null);

export function mount(ctx, root) {
  const silence = el("input", { type: "number", min: 1, value: 15, "aria-label": "silent after minutes", "data-testid": "silence-minutes" });
  const sources = el("div", { "data-testid": "sources" });
  const cluster = el("div", { "data-testid": "cluster" });
  let timer = null;

  async function loadSources() {
    try {
      const [events, dead] = await Promise.all([
        ctx.api.query(
          `SELECT source_topic, max(metadata_product) AS product, count(*) AS events_24h,
                  count(*) FILTER (WHERE ingest_time >= now() - INTERVAL '1 hour') AS events_1h,
                  max(ingest_time) AS last_ingest
           FROM events WHERE time >= now() - INTERVAL '24 hours' AND ingest_time >= now() - INTERVAL '24 hours'
           GROUP BY source_topic ORDER BY source_topic`,
          ctx.tenant,
        ),
        ctx.api.query(
          `SELECT source_topic, count(*) AS dead_24h, max(time) AS last_dead
           FROM dead_letter WHERE time >= now() - INTERVAL '24 hours' GROUP BY source_topic`,
          ctx.tenant,
        ),
      ]);
      const deadBy = new Map(dead.rows.map((r) => [r.source_topic, r]));
      const limit = Number(silence.value) * 60e3;
      const now = Date.now();
      const rows = events.rows.map((r) => {
        const since = now - parse(r.last_ingest);
        const silent = since > limit;
        const d = deadBy.get(r.source_topic);
        return {
          silent,
          topic: r.source_topic,
          cells: [
            r.source_topic,
            show(r.product),
            `${(Number(r.events_1h) / 3600).toFixed(2)}/s`,
            Number(r.events_24h).toLocaleString(),
            el("span", { class: silent ? "badge silent" : "badge ok" }, silent ? `SILENT ${ago(since)}` : ago(since)),
            d ? Number(d.dead_24h).toLocaleString() : "0",
          ],
        };
      });
      for (const [topic, d] of deadBy) {
        if (!events.rows.some((r) => r.source_topic === topic)) {
          rows.push({ silent: false, topic, cells: [topic, "", "0/s", "0", "only dead letters", Number(d.dead_24h).toLocaleString()] });
        }
      }
      rows.sort((a, b) => Number(b.silent) - Number(a.silent) || a.topic.localeCompare(b.topic));
      const quiet = rows.filter((r) => r.silent).length;
      fill(sources, 
        el("h2", {}, "Sources", quiet ? el("span.badge.silent", { "data-testid": "silent-count" }, `${quiet} silent`) : null),
        table("source-table", ["source", "product", "rate (last hour)", "events (24 h)", "last event received", "dead letters (24 h)"], rows,
          (r) => ({ class: r.silent ? "silent" : "", "data-source": r.topic })),
        rows.length ? null : el("p.empty", {}, "No events in the last 24 hours."),
      );
    } catch (e) {
      fill(sources, errorBox(e));
    }
  }

  async function loadCluster() {
    if (!ctx.me.cluster_admin && ctx.me.auth === "token") {
      fill(cluster, el("p.hint", {}, "The cluster's members, Raft, consumer lag and shards name every tenant: an admin token that names no tenant sees them."));
      return;
    }
    try {
      const [status, lag] = await Promise.all([ctx.api.get("/v1/status"), ctx.api.get("/v1/status/kafka-lag")]);
      const c = status.cluster;
      if (c.error) throw new Error(`cluster status: ${c.error}`);
      const last = new Map((status.catalog.tenants || []).map((t) => [t.tenant, t.last_sequence]));
      const lagRows = lag.members.flatMap((m) => (m.error
        ? [{ cells: [show(m.node_id), "", "", m.error] }]
        : m.partitions.map((p) => ({ cells: [show(m.node_id), p.topic, show(p.partition), show(p.lag)] }))));
      fill(cluster, 
        el("h2", {}, "Raft"),
        el("p", { "data-testid": "raft" }, `leader ${c.leader_id}, term ${c.term}, commit index ${c.commit_index}, last log index ${c.last_log_index}`),
        table("coordinators", ["coordinator", "url", "voter", "matched index", "lag (entries)"],
          c.coordinators.map((r) => ({ cells: [show(r.node_id) + (r.node_id === c.leader_id ? " (leader)" : ""), r.url, r.voter ? "voter" : "learner", show(r.matched_index), show(r.lag)] }))),
        el("h2", {}, "Members"),
        table("members", ["node", "role", "http", "version", "state", "last heartbeat", "shards"],
          c.members.map((m) => ({
            dead: !m.member.alive,
            cells: [show(m.member.info.node_id), m.member.info.role, m.member.info.http_addr, m.member.info.version,
              el("span", { class: m.member.alive ? "badge ok" : "badge silent" }, m.member.alive ? "alive" : "dead"),
              m.last_heartbeat_ms === null ? "–" : `${m.last_heartbeat_ms} ms ago`, show(m.shards)],
          })), (r) => ({ class: r.dead ? "silent" : "" })),
        el("h2", {}, "Kafka consumer lag"),
        lagRows.length ? table("kafka-lag", ["ingest node", "topic", "partition", "lag (messages)"], lagRows) : el("p.empty", {}, "No Kafka partitions assigned (HTTP ingest only, or no brokers configured)."),
        el("h2", {}, "Correlation shards"),
        table("shards", ["tenant", "rule group", "bucket", "worker", "epoch", "processed to", "lag (catalog entries)", "watermark"],
          c.shards.map((s) => {
            const done = s.checkpoint ? s.checkpoint.catalog_sequence : 0;
            const head = last.get(s.id.tenant);
            const behind = head === undefined ? "–" : String(Math.max(0, head - done));
            return {
              cells: [s.id.tenant, s.id.rule_group, show(s.id.bucket), s.holder === null ? "unassigned" : show(s.holder), show(s.epoch), show(done), behind,
                s.checkpoint && s.checkpoint.watermark_micros ? new Date(s.checkpoint.watermark_micros / 1000).toISOString() : "–"],
            };
          })),
      );
    } catch (e) {
      fill(cluster, errorBox(e));
    }
  }

  function refresh() {
    loadSources();
    loadCluster();
  }
  silence.addEventListener("change", loadSources);
  root.append(el("section.health", {},
    el("div.toolbar", {}, "A source is silent after ", silence, " minutes without events ", el("button", { onclick: refresh }, "Refresh")),
    sources, cluster));
  refresh();
  timer = setInterval(refresh, 15_000);
  return { unmount() { clearInterval(timer); } };
}
