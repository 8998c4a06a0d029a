"""Flight SQL client checks for tests/tests/query_access.rs.

Uses clients nobody here wrote: the ADBC Flight SQL driver (via its DB-API)
and pyarrow.flight. Reads one JSON object from argv[1]:
  {"uri": "grpc://127.0.0.1:PORT", "acme": TOKEN, "globex": TOKEN, "ingest": TOKEN}
and prints one JSON object with what it saw; the Rust test asserts on it.
Any unexpected failure raises (non-zero exit, traceback on stderr).
"""

import json
import sys

import adbc_driver_flightsql.dbapi as flightsql
import pyarrow.flight as flight
from adbc_driver_flightsql import DatabaseOptions


def bearer(token):
    return {DatabaseOptions.AUTHORIZATION_HEADER.value: f"Bearer {token}"}


def scalar(conn, sql):
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchone()[0]


def error_of(fn):
    try:
        fn()
    except Exception as e:  # the driver's error classes vary by version
        return f"{type(e).__name__}: {e}"
    return None


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(number, payload):
    return bytes([number << 3 | 2]) + varint(len(payload)) + payload


def statement_command(sql):
    """A Flight SQL CommandStatementQuery packed in google.protobuf.Any."""
    inner = field(1, sql.encode())
    url = b"type.googleapis.com/arrow.flight.protocol.sql.CommandStatementQuery"
    return field(1, url) + field(2, inner)


def options(token):
    return flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {token}".encode())])


def main():
    args = json.loads(sys.argv[1])
    uri = args["uri"]
    seen = {}

    # Bearer token in the authorization header.
    with flightsql.connect(uri, db_kwargs=bearer(args["acme"])) as conn:
        seen["acme_count"] = scalar(conn, "SELECT count(*) FROM events")
        seen["acme_tenants"] = scalar(conn, "SELECT count(DISTINCT tenant) FROM events")
        seen["acme_sees_globex_rows"] = scalar(
            conn, "SELECT count(*) FROM events WHERE tenant = 'globex'")
        with conn.cursor() as cur:
            cur.execute("SELECT src_ip, tenant FROM events ORDER BY src_ip")
            table = cur.fetch_arrow_table()
            seen["acme_rows"] = table.to_pylist()
        # Metadata calls: catalogs, schemas, tables (with their columns).
        objects = conn.adbc_get_objects(depth="all").read_all().to_pylist()
        seen["catalogs"] = [c["catalog_name"] for c in objects]
        seen["schemas"] = [s["db_schema_name"] for c in objects for s in c["catalog_db_schemas"]]
        seen["tables"] = sorted(
            t["table_name"]
            for c in objects for s in c["catalog_db_schemas"] for t in s["db_schema_tables"])
        seen["events_columns"] = conn.adbc_get_table_schema("events").names
        seen["table_types"] = conn.adbc_get_table_types()
        # A prepared statement.
        with conn.cursor() as cur:
            cur.adbc_prepare("SELECT count(*) AS n FROM authentication")
            cur.execute("SELECT count(*) AS n FROM authentication")
            seen["prepared_schema"] = [d[0] for d in cur.description]
            seen["prepared_count"] = cur.fetchone()[0]
        # Refusals come back as errors naming the problem.
        seen["other_schema_error"] = error_of(
            lambda: scalar(conn, "SELECT count(*) FROM spoor.globex.events"))
        seen["file_path_error"] = error_of(
            lambda: scalar(conn, "SELECT count(*) FROM 'tenants/globex/events'"))
        seen["ddl_error"] = error_of(
            lambda: scalar(conn, "CREATE EXTERNAL TABLE x STORED AS PARQUET LOCATION '/'"))
        seen["syntax_error"] = error_of(lambda: scalar(conn, "SELEC 1"))

    # Basic credentials in the handshake, the token as the password.
    with flightsql.connect(uri, db_kwargs={"username": "hunter", "password": args["globex"]}) as conn:
        seen["globex_count"] = scalar(conn, "SELECT count(*) FROM events")

    # Wrong or missing tokens.
    seen["ingest_token_error"] = error_of(
        lambda: flightsql.connect(uri, db_kwargs=bearer(args["ingest"])).cursor().execute("SELECT 1"))
    seen["bad_token_error"] = error_of(
        lambda: flightsql.connect(uri, db_kwargs=bearer("spoor_nope")).cursor().execute("SELECT 1"))

    # A ticket issued to globex, redeemed by acme: it runs as acme.
    client = flight.FlightClient(uri)
    descriptor = flight.FlightDescriptor.for_command(statement_command("SELECT count(*) FROM events"))
    info = client.get_flight_info(descriptor, options(args["globex"]))
    ticket = info.endpoints[0].ticket
    seen["globex_ticket_as_globex"] = client.do_get(ticket, options(args["globex"])).read_all().column(0)[0].as_py()
    seen["globex_ticket_as_acme"] = client.do_get(ticket, options(args["acme"])).read_all().column(0)[0].as_py()
    seen["ticket_without_token_error"] = error_of(lambda: client.do_get(ticket).read_all())

    print(json.dumps(seen, default=str))


if __name__ == "__main__":
    main()
