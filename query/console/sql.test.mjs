// Unit tests of the console's SQL helpers: `node --test query/console/`.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  addCondition, applyTimeRange, bucketSeconds, complete, histogramSql, pivot, toCsv, withoutPaging, withoutRange, wordAt,
} from "./sql.js";

const from = new Date("2026-12-03T10:00:00Z");
const to = new Date("2026-12-03T11:00:00Z");
const range = "time >= TIMESTAMP '2026-12-03T10:00:00.000Z' AND time < TIMESTAMP '2026-12-03T11:00:00.000Z'";

test("a range is added before GROUP BY, ORDER BY and LIMIT, or AND-ed to WHERE", () => {
  assert.equal(applyTimeRange("SELECT * FROM events", from, to), `SELECT * FROM events WHERE ${range}`);
  assert.equal(
    applyTimeRange("SELECT * FROM events ORDER BY time DESC LIMIT 10;", from, to),
    `SELECT * FROM events WHERE ${range} ORDER BY time DESC LIMIT 10`,
  );
  assert.equal(
    applyTimeRange("SELECT a FROM events WHERE a = 1 OR b = 2 GROUP BY a", from, to),
    `SELECT a FROM events WHERE ${range} AND (a = 1 OR b = 2) GROUP BY a`,
  );
});

test("a second range replaces the first instead of adding another", () => {
  const once = applyTimeRange("SELECT * FROM events LIMIT 5", from, to);
  const later = new Date("2026-12-04T00:00:00Z");
  const twice = applyTimeRange(once, to, later);
  assert.equal((twice.match(/TIMESTAMP/g) || []).length, 2);
  assert.ok(twice.includes("'2026-12-04T00:00:00.000Z'"));
  assert.ok(!twice.includes("'2026-12-03T10:00:00.000Z'"));
});

test("a statement without its range is the same statement whatever the range", () => {
  const a = applyTimeRange("SELECT * FROM events LIMIT 5", from, to);
  const b = applyTimeRange(a, to, new Date("2026-12-05T00:00:00Z"));
  assert.notEqual(a, b);
  assert.equal(withoutRange(a), withoutRange(b));
});

test("keywords inside strings, comments and subqueries are not clauses", () => {
  const sql = "SELECT * FROM (SELECT * FROM events WHERE x = 1 LIMIT 3) AS s WHERE msg = 'order by limit' -- where\n";
  assert.equal(
    addCondition(sql, "y = 2"),
    "SELECT * FROM (SELECT * FROM events WHERE x = 1 LIMIT 3) AS s WHERE y = 2 AND (msg = 'order by limit' -- where\n)",
  );
});

test("a pivot quotes values and names, and handles NULL", () => {
  assert.equal(
    pivot("SELECT * FROM events", "actor_user_name", "o'brien"),
    "SELECT * FROM events WHERE actor_user_name = 'o''brien'",
  );
  assert.equal(pivot("SELECT * FROM events", "Count", 3), `SELECT * FROM events WHERE "Count" = 3`);
  assert.equal(pivot("SELECT * FROM events", "x", null), "SELECT * FROM events WHERE x IS NULL");
  assert.equal(pivot("SELECT * FROM events", "x", "a", { exclude: true }), "SELECT * FROM events WHERE x <> 'a'");
});

test("the histogram counts the matched rows, not the page", () => {
  assert.equal(withoutPaging("SELECT * FROM events WHERE a = 1 ORDER BY time LIMIT 100;"), "SELECT * FROM events WHERE a = 1");
  assert.equal(
    histogramSql("SELECT time FROM events LIMIT 5", 60),
    "SELECT date_bin(INTERVAL '60 seconds', time, TIMESTAMP '1970-01-01T00:00:00Z') AS bucket, count(*) AS n FROM (SELECT time FROM events) AS matched GROUP BY 1 ORDER BY 1",
  );
  assert.equal(bucketSeconds(from, to), 60);
  assert.equal(bucketSeconds(from, new Date(from.getTime() + 7 * 86400e3)), 3 * 3600);
});

test("completion offers tables, the query's columns first, then functions", () => {
  const schema = { tables: { events: ["time", "tenant", "process_cmd_line"], alerts: ["time", "rule_title"] }, functions: ["ioc_match"] };
  assert.deepEqual(complete("ev", schema).map((c) => c.text), ["events"]);
  assert.deepEqual(complete("r", schema, "SELECT * FROM alerts").map((c) => c.text), ["rule_title", "regexp_like"].filter((t) => t !== "regexp_like"));
  assert.deepEqual(complete("io", schema).map((c) => c.kind), ["function"]);
  assert.deepEqual(wordAt("SELECT proc", 11), { start: 7, word: "proc" });
});

test("CSV quotes what needs quoting", () => {
  assert.equal(toCsv(["a", "b"], [{ a: 'x,"y"', b: null }, { a: 1, b: { k: 1 } }]), 'a,b\r\n"x,""y""",\r\n1,"{""k"":1}"\r\n');
});
