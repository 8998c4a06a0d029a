"""PostgreSQL-protocol checks for tests/tests/query_access.rs with psycopg 3,
whose queries go over the extended protocol (Parse/Bind/Describe/Execute),
as JDBC-based BI tools do. Reads one JSON object from argv[1]:
  {"host": ..., "port": ..., "acme": TOKEN, "globex": TOKEN}
and prints one JSON object with what it saw.
"""

import json
import sys

import psycopg


def connect(args, token):
    return psycopg.connect(host=args["host"], port=args["port"], user="hunter",
                           dbname="spoor", password=token, autocommit=True,
                           sslmode="disable")


def error_of(fn):
    try:
        fn()
    except Exception as e:
        return f"{type(e).__name__}: {e}"
    return None


def main():
    args = json.loads(sys.argv[1])
    seen = {}
    with connect(args, args["acme"]) as conn:
        cur = conn.cursor()
        cur.execute("SELECT count(*) AS n FROM events")
        seen["acme_count"] = cur.fetchone()[0]
        seen["columns"] = [d.name for d in cur.description]
        # Binary results: typed values come back as Python types.
        cur = conn.cursor(binary=True)
        cur.execute("SELECT src_ip, time, tenant FROM events ORDER BY src_ip LIMIT 1")
        ip, time, tenant = cur.fetchone()
        seen["first"] = [ip, time.isoformat(), tenant]
        # A server-side prepared statement, executed twice.
        for _ in range(2):
            conn.execute("SELECT count(*) FROM authentication", prepare=True)
        seen["globex_by_name_error"] = error_of(
            lambda: conn.execute("SELECT count(*) FROM spoor.globex.events").fetchone())
        seen["parameter_error"] = error_of(
            lambda: conn.execute("SELECT count(*) FROM events WHERE src_ip = %s", ["10.1.1.1"]).fetchone())
        # The connection survives errors.
        seen["after_errors"] = conn.execute("SELECT 1").fetchone()[0]
    with connect(args, args["globex"]) as conn:
        seen["globex_count"] = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    seen["bad_token_error"] = error_of(lambda: connect(args, "spoor_nope"))
    print(json.dumps(seen, default=str))


if __name__ == "__main__":
    main()
