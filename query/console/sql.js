// SQL text helpers of the console, pure functions (tested by
// query/console/sql.test.mjs with `node --test`): the time-range filter the
// picker writes into a query, click-to-pivot filters, the histogram query,
// completion, and CSV export.

// The filter the time picker writes. It is recognised and replaced when the
// range changes, so a query carries exactly one.
const RANGE_RE =
  /time\s*>=\s*TIMESTAMP\s*'[^']*'\s+AND\s+time\s*<\s*TIMESTAMP\s*'[^']*'/i;

// Clauses that end a WHERE condition, at the top level of a statement.
const AFTER_WHERE = ["GROUP", "HAVING", "WINDOW", "QUALIFY", "ORDER", "LIMIT", "OFFSET", "UNION", "EXCEPT", "INTERSECT"];

/** Top-level keywords of `sql` with their offsets: outside strings, quoted
 * identifiers, comments and parentheses. */
export function topLevelWords(sql) {
  const words = [];
  let depth = 0;
  let i = 0;
  while (i < sql.length) {
    const c = sql[i];
    if (c === "'" || c === '"') {
      const close = c;
      i++;
      while (i < sql.length) {
        if (sql[i] === close) {
          if (sql[i + 1] === close) { i += 2; continue; }
          break;
        }
        i++;
      }
      i++;
    } else if (c === "-" && sql[i + 1] === "-") {
      while (i < sql.length && sql[i] !== "\n") i++;
    } else if (c === "/" && sql[i + 1] === "*") {
      const end = sql.indexOf("*/", i + 2);
      i = end < 0 ? sql.length : end + 2;
    } else if (c === "(") {
      depth++; i++;
    } else if (c === ")") {
      depth--; i++;
    } else if (/[A-Za-z_]/.test(c)) {
      const start = i;
      while (i < sql.length && /[A-Za-z0-9_]/.test(sql[i])) i++;
      if (depth === 0) words.push({ word: sql.slice(start, i).toUpperCase(), at: start });
    } else {
      i++;
    }
  }
  return words;
}

/** `sql` without trailing blanks and semicolons. */
function trimEnd(sql) {
  return sql.replace(/[\s;]+$/, "");
}

/** A line break when the last line of `text` may end in a `--` comment,
 * which would otherwise swallow what is appended after it. */
function lineBreakAfterComment(text) {
  const last = text.slice(text.lastIndexOf("\n") + 1);
  return last.includes("--") ? "\n" : "";
}

/** Adds `condition` to the statement's top-level WHERE (AND-ed before the
 * existing condition, which is kept in parentheses), or adds a WHERE before
 * GROUP BY / ORDER BY / LIMIT. */
export function addCondition(sql, condition) {
  const text = trimEnd(sql);
  const words = topLevelWords(text);
  const where = words.find((w) => w.word === "WHERE");
  const isEnd = (w) => AFTER_WHERE.includes(w.word);
  if (where) {
    const end = words.find((w) => w.at > where.at && isEnd(w));
    const stop = end ? end.at : text.length;
    const existing = text.slice(where.at + 5, stop).trim();
    const tail = end ? " " + text.slice(stop) : "";
    return `${text.slice(0, where.at)}WHERE ${condition} AND (${existing}${lineBreakAfterComment(existing)})${tail}`;
  }
  const from = words.find((w) => w.word === "FROM");
  const end = words.find((w) => (!from || w.at > from.at) && isEnd(w));
  if (!end) return `${text}${lineBreakAfterComment(text) || " "}WHERE ${condition}`;
  const head = text.slice(0, end.at).trimEnd();
  return `${head}${lineBreakAfterComment(head) || " "}WHERE ${condition} ${text.slice(end.at)}`;
}

/** The time filter of `[from, to)` as SQL. */
export function rangeFilter(from, to) {
  return `time >= TIMESTAMP '${from.toISOString()}' AND time < TIMESTAMP '${to.toISOString()}'`;
}

/** `sql` with its time range set to `[from, to)`: the filter the picker
 * wrote before is replaced, else one is added. */
export function applyTimeRange(sql, from, to) {
  const filter = rangeFilter(from, to);
  if (RANGE_RE.test(sql)) return sql.replace(RANGE_RE, filter);
  return addCondition(sql, filter);
}

/** `sql` without the picker's time filter: two runs of one hunt over
 * different ranges are one statement in the history. */
export function withoutRange(sql) {
  return sql.replace(RANGE_RE, "").replace(/\s+/g, " ").trim();
}

/** A column name as SQL: bare when it is a plain lower-case name. */
export function ident(name) {
  return /^[a-z_][a-z0-9_]*$/.test(name) ? name : `"${name.replaceAll('"', '""')}"`;
}

/** A value as an SQL literal. */
export function literal(value) {
  if (typeof value === "number" || typeof value === "bigint") return String(value);
  if (typeof value === "boolean") return value ? "TRUE" : "FALSE";
  return `'${String(value).replaceAll("'", "''")}'`;
}

/** `sql` narrowed to rows whose `column` is `value` (or is not, with
 * `exclude`): click-to-pivot. Timestamps are compared as timestamps. */
export function pivot(sql, column, value, { exclude = false, timestamp = false } = {}) {
  const col = ident(column);
  let condition;
  if (value === null || value === undefined) {
    condition = `${col} IS ${exclude ? "NOT " : ""}NULL`;
  } else {
    const lit = timestamp ? `TIMESTAMP ${literal(value)}` : literal(value);
    condition = `${col} ${exclude ? "<>" : "="} ${lit}`;
  }
  return addCondition(sql, condition);
}

/** The statement without its top-level ORDER BY / LIMIT / OFFSET tail: the
 * rows it matches, not the page it shows. */
export function withoutPaging(sql) {
  const text = trimEnd(sql);
  const tail = topLevelWords(text).find((w) => ["ORDER", "LIMIT", "OFFSET"].includes(w.word));
  return tail ? text.slice(0, tail.at).trimEnd() : text;
}

// Bucket widths a histogram may use, in seconds.
const STEPS = [1, 5, 10, 30, 60, 300, 600, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 7 * 86400];

/** The bucket width, in seconds, giving at most `bars` bars over `[from, to)`. */
export function bucketSeconds(from, to, bars = 60) {
  const span = Math.max(1, (to - from) / 1000);
  return STEPS.find((s) => span / s <= bars) ?? STEPS[STEPS.length - 1];
}

/** The time histogram of the rows `sql` matches: events per bucket. */
export function histogramSql(sql, seconds) {
  return (
    `SELECT date_bin(INTERVAL '${seconds} seconds', time, TIMESTAMP '1970-01-01T00:00:00Z') AS bucket, ` +
    `count(*) AS n FROM (${withoutPaging(sql)}) AS matched GROUP BY 1 ORDER BY 1`
  );
}

/** The word being typed at `cursor`: its start and text. */
export function wordAt(text, cursor) {
  let start = cursor;
  while (start > 0 && /[A-Za-z0-9_.]/.test(text[start - 1])) start--;
  return { start, word: text.slice(start, cursor) };
}

/** Completions of `word`: tables, then columns (of the tables the query
 * names first), then functions and keywords, case-insensitively by prefix.
 * `schema` is `{tables: {name: [columns]}, functions: [names]}`. */
export function complete(word, schema, sql = "", limit = 30) {
  if (!word) return [];
  const w = word.toLowerCase();
  const named = Object.keys(schema.tables).filter((t) => new RegExp(`\\b${t}\\b`, "i").test(sql));
  const seen = new Set();
  const out = [];
  const add = (text, kind) => {
    if (out.length < limit && text.toLowerCase().startsWith(w) && text.toLowerCase() !== w && !seen.has(text)) {
      seen.add(text);
      out.push({ text, kind });
    }
  };
  for (const t of Object.keys(schema.tables).sort()) add(t, "table");
  for (const t of named) for (const c of schema.tables[t]) add(c, "column");
  for (const t of Object.keys(schema.tables).sort()) for (const c of schema.tables[t]) add(c, "column");
  for (const f of schema.functions) add(f, "function");
  for (const k of KEYWORDS) add(k, "keyword");
  return out;
}

const KEYWORDS = ["SELECT", "FROM", "WHERE", "GROUP BY", "ORDER BY", "LIMIT", "HAVING", "DISTINCT", "COUNT", "AND", "OR", "NOT", "LIKE", "ILIKE", "IN", "IS NULL", "IS NOT NULL", "BETWEEN", "JOIN", "LEFT JOIN", "ON", "AS", "DESC", "ASC", "WITH", "UNION ALL", "CASE", "WHEN", "THEN", "ELSE", "END", "INTERVAL", "TIMESTAMP", "now()"];

/** The hunting functions and the common ones hunters use (docs/sql.md). */
export const FUNCTIONS = ["cidr_match", "wildcard_match", "ioc_match", "first_seen", "last_seen", "json_get_str", "json_get_int", "json_get_float", "json_get_bool", "json_get_json", "json_contains", "json_length", "json_object_keys", "regexp_like", "regexp_replace", "regexp_count", "date_bin", "date_trunc", "date_part", "approx_distinct", "approx_percentile_cont", "count", "sum", "avg", "min", "max", "lower", "upper", "length", "substr", "split_part", "concat", "coalesce", "to_timestamp"];

/** One CSV field (RFC 4180). */
function csvField(v) {
  if (v === null || v === undefined) return "";
  const s = typeof v === "object" ? JSON.stringify(v) : String(v);
  return /[",\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}

/** Rows (objects) as CSV with a header line. */
export function toCsv(columns, rows) {
  const lines = [columns.map(csvField).join(",")];
  for (const r of rows) lines.push(columns.map((c) => csvField(r[c])).join(","));
  return lines.join("\r\n") + "\r\n";
}
