// The console's client of the node's HTTP API: every call carries the
// signed-in token; errors become ApiError with the API's code and message.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function failure(resp) {
  let code = `http_${resp.status}`;
  let message = resp.statusText || `HTTP ${resp.status}`;
  try {
    const body = await resp.json();
    if (body && body.error) {
      code = body.error.code || code;
      message = body.error.message || message;
    }
  } catch {
    // Not JSON: keep the status line.
  }
  return new ApiError(resp.status, code, message);
}

export class Api {
  constructor(token) {
    this.token = token || "";
  }

  headers(extra = {}) {
    const h = { ...extra };
    if (this.token) h.Authorization = `Bearer ${this.token}`;
    return h;
  }

  async json(method, path, body) {
    const resp = await fetch(path, {
      method,
      headers: this.headers(body === undefined ? {} : { "Content-Type": "application/json" }),
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (!resp.ok) throw await failure(resp);
    return resp.json();
  }

  get(path) {
    return this.json("GET", path);
  }

  /** Runs `sql` and returns {columns, rows} (a buffered JSON answer). */
  async query(sql, tenant) {
    const body = await this.json("POST", "/v1/query", { sql, tenant, format: "json" });
    return { columns: body.columns.map((c) => c.name), rows: body.rows, truncated: body.truncated };
  }

  /** Runs `sql`, streaming: `onColumns(names, queryId)` once, then
   * `onRows(rows)` for each chunk of rows as they arrive. Resolves with the
   * row count. `signal` aborts the request. */
  async stream(sql, tenant, { onColumns, onRows, signal }) {
    const resp = await fetch("/v1/query", {
      method: "POST",
      headers: this.headers({ "Content-Type": "application/json" }),
      body: JSON.stringify({ sql, tenant, format: "ndjson" }),
      signal,
    });
    if (!resp.ok) throw await failure(resp);
    let columns = [];
    try {
      columns = JSON.parse(resp.headers.get("x-columns") || "[]");
    } catch {
      columns = [];
    }
    onColumns(columns, resp.headers.get("x-query-id"));
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    let pending = "";
    let count = 0;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      pending += decoder.decode(value, { stream: true });
      const cut = pending.lastIndexOf("\n");
      if (cut < 0) continue;
      const rows = pending.slice(0, cut).split("\n").filter(Boolean).map((l) => JSON.parse(l));
      pending = pending.slice(cut + 1);
      count += rows.length;
      onRows(rows);
    }
    if (pending.trim()) {
      onRows([JSON.parse(pending)]);
      count++;
    }
    return count;
  }

  /** The raw answer of `sql` in `format` (csv, ndjson) as a Blob. */
  async export(sql, tenant, format) {
    const resp = await fetch("/v1/query", {
      method: "POST",
      headers: this.headers({ "Content-Type": "application/json" }),
      body: JSON.stringify({ sql, tenant, format }),
    });
    if (!resp.ok) throw await failure(resp);
    return resp.blob();
  }
}
