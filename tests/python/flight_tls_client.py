"""Flight SQL over TLS for tests/tests/tls.rs, with the ADBC Flight SQL driver.

Reads one JSON object from argv[1]:
  {"tls_uri": "grpc+tls://localhost:PORT", "plain_uri": "grpc://localhost:PORT",
   "ca_pem": "...", "other_ca_pem": "...", "sql": "SELECT count(*) FROM events"}
and prints one JSON object: the count seen over TLS with the cluster's CA, and
the errors seen without it, with another CA and in plaintext.
"""

import json
import sys

import adbc_driver_flightsql.dbapi as flightsql
from adbc_driver_flightsql import DatabaseOptions

# The helpers of the other Flight SQL checks (same folder).
from flight_sql_client import error_of
from flight_sql_client import scalar as scalar_of


def scalar(uri, sql, db_kwargs):
    with flightsql.connect(uri, db_kwargs=db_kwargs) as conn:
        return scalar_of(conn, sql)


def main():
    args = json.loads(sys.argv[1])
    sql = args["sql"]
    trusted = {DatabaseOptions.TLS_ROOT_CERTS.value: args["ca_pem"]}
    stranger = {DatabaseOptions.TLS_ROOT_CERTS.value: args["other_ca_pem"]}
    seen = {
        "count": scalar(args["tls_uri"], sql, trusted),
        "other_ca_error": error_of(lambda: scalar(args["tls_uri"], sql, stranger)),
        "plaintext_error": error_of(lambda: scalar(args["plain_uri"], sql, {})),
    }
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
