#!/usr/bin/env bash
# A whole Spoor cluster on this machine's loopback, one process per node:
# a Kafka-protocol broker (tansu), 3 coordinators (a Raft group), 2 ingest
# nodes, 2 correlation workers and 2 query nodes, sharing a local-disk lake.
#
#   deploy/local-cluster.sh up        start it, wait until healthy, print the endpoints
#   deploy/local-cluster.sh down      stop every process (SIGTERM, then SIGKILL after 30 s)
#   deploy/local-cluster.sh status    each node: pid, alive, /health; the Raft leader
#   deploy/local-cluster.sh env       the shell exports for the CLI (SPOOR_TOKEN, ...)
#   deploy/local-cluster.sh leader    the name of the coordinator that leads (c1, c2, c3)
#   deploy/local-cluster.sh kill|stop|start|pause|resume NAME
#                                     SIGKILL, SIGTERM (waits), start again, SIGSTOP,
#                                     SIGCONT one node (chaos testing by hand or by tests)
#   deploy/local-cluster.sh partition|heal NAME
#                                     cut a coordinator off the network and reconnect it
#                                     (a cluster started with --netns)
#
# Node names: broker, c1 c2 c3 (coordinators), i1 i2 (ingest), w1 w2
# (workers), q1 q2 (query). Options (flags or environment):
#   --dir DIR          LOCAL_CLUSTER_DIR   state, configs, logs (./spoor-cluster)
#   --base-port N      LOCAL_CLUSTER_BASE_PORT  ports N+1 .. N+99 (17000)
#   --tenants a,b      LOCAL_CLUSTER_TENANTS tenants registered at `up` (acme,globex)
#   --partitions N     LOCAL_CLUSTER_PARTITIONS  of the events topic (4)
#   --rules DIR        LOCAL_CLUSTER_RULES rule pack applied to every tenant at `up`
#                      (deploy/rules; "none" skips)
#   --release          build and run the release binary (benchmarks)
#   --bin PATH         LOCAL_CLUSTER_BIN   a spoor binary to run instead of building one
#   --netns            LOCAL_CLUSTER_NETNS=1  (root only) each coordinator in its own
#                      network namespace, joined by a bridge on 10.77.K.0/24
#                      (K = base-port / 100 % 250): coordinator cN listens on
#                      10.77.K.(10+N), the bridge is 10.77.K.1, so that `partition`
#                      can cut one off (its link down, both directions) while it runs
#   TANSU_BIN          the broker binary (default: ~/.cache/spoor/tansu/bin/tansu,
#                      installed there if missing, as scripts/test-all.sh does)
#   CARGO_TARGET_DIR   where the binary is built (~/.cache/spoor/target)
#
# The layout under DIR: config/NAME.toml, logs/NAME.log, run/NAME.pid,
# data/NAME/ (Raft logs), lake/ (the shared object store), cluster.secret,
# tokens/admin.token and tokens/TENANT.{ingest,analyst}.token, ports.env.
# Events reach ingest on the Kafka topics spoor-gen-{windows,zeek,syslog,cef}
# (what `spoor gen --topic 'spoor-gen-{source}'` writes; the tenant in the
# x-spoor-tenant header) or over HTTP with a token.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# The script's own variables avoid the SPOOR_ prefix: the spoor processes it
# starts inherit the environment and read SPOOR_* variables as config keys.
dir="${LOCAL_CLUSTER_DIR:-$PWD/spoor-cluster}"
base="${LOCAL_CLUSTER_BASE_PORT:-17000}"
tenants="${LOCAL_CLUSTER_TENANTS:-acme,globex}"
partitions="${LOCAL_CLUSTER_PARTITIONS:-4}"
rules="${LOCAL_CLUSTER_RULES:-$root/deploy/rules}"
profile="debug"
bin="${LOCAL_CLUSTER_BIN:-}"
netns="${LOCAL_CLUSTER_NETNS:-0}"
# spoor gen --kafka --topic 'spoor-gen-{source}': one topic per source type,
# so each has its parser; the tenant rides in the x-spoor-tenant header.
sources=(windows zeek syslog cef)

die() { printf 'local-cluster: %s\n' "$*" >&2; exit 1; }
say() { printf 'local-cluster: %s\n' "$*" >&2; }

command=""
name=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir="$2"; shift 2 ;;
    --base-port) base="$2"; shift 2 ;;
    --tenants) tenants="$2"; shift 2 ;;
    --partitions) partitions="$2"; shift 2 ;;
    --rules) rules="$2"; shift 2 ;;
    --release) profile="release"; shift ;;
    --bin) bin="$2"; shift 2 ;;
    --netns) netns=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    up|down|status|env|leader|kill|stop|start|pause|resume|partition|heal)
      [ -z "$command" ] || die "one command at a time (got $command and $1)"
      command="$1"; shift
      case "$command" in kill|stop|start|pause|resume|partition|heal)
        [ $# -gt 0 ] || die "$command needs a node name (broker c1 c2 c3 i1 i2 w1 w2 q1 q2)"
        name="$1"; shift ;;
      esac ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done
[ -n "$command" ] || die "no command: up, down, status, env, leader, kill, stop, start, pause, resume, partition or heal (see --help)"
case "$base" in ''|*[!0-9]*) die "--base-port must be a number, got '$base'" ;; esac
[ "$base" -ge 1024 ] && [ "$base" -le 65400 ] || die "--base-port must be within 1024..65400, got $base"
dir="$(mkdir -p "$dir" && cd "$dir" && pwd)"
# Namespaces are chosen at `up` and remembered, so that later commands
# address the coordinators where they listen.
if [ "$command" = up ]; then
  if [ "$netns" = 1 ]; then touch "$dir/netns"; else rm -f "$dir/netns"; fi
elif [ -f "$dir/netns" ]; then
  netns=1
fi

coordinators=(c1 c2 c3)
nodes=(c1 c2 c3 i1 i2 w1 w2 q1 q2)

# Ports: coordinators gRPC base+11.., HTTP base+21..; ingest HTTP base+31..;
# workers HTTP base+41..; query HTTP base+51.., Flight SQL base+61..,
# PostgreSQL base+71..; the broker base+92.
port_of() { # NAME KIND
  local n="${1:1}"
  case "$1:$2" in
    c?:grpc) echo $((base + 10 + n)) ;;
    c?:http) echo $((base + 20 + n)) ;;
    i?:http) echo $((base + 30 + n)) ;;
    w?:http) echo $((base + 40 + n)) ;;
    q?:http) echo $((base + 50 + n)) ;;
    q?:flight) echo $((base + 60 + n)) ;;
    q?:postgres) echo $((base + 70 + n)) ;;
    broker:kafka) echo $((base + 92)) ;;
    *) die "no $2 port for $1" ;;
  esac
}
# Where a node listens: a coordinator in its namespace (--netns) on the
# bridge's subnet, everything else on loopback.
subnet="10.77.$(( (base / 100) % 250 ))"
host_of() {
  if [ "$netns" = 1 ] && [[ "$1" == c? ]]; then echo "$subnet.$((10 + ${1:1}))"; else echo 127.0.0.1; fi
}
addr_of() { echo "$(host_of "$1"):$(port_of "$1" "$2")"; } # NAME KIND
netns_of() { echo "spoor-$base-$1"; }
veth_of() { echo "spv$base$1"; }
bridge="spb$base"

# The bridge and one namespace per coordinator, each joined to the bridge by
# a veth pair (the root side named spv<base><node>). Idempotent: what a
# crashed run left is replaced.
net_up() {
  [ "$netns" = 1 ] || return 0
  [ "$(id -u)" = 0 ] || die "--netns needs root (network namespaces)"
  if ! ip link show "$bridge" > /dev/null 2>&1; then
    ip link add "$bridge" type bridge || die "cannot create the bridge $bridge"
    ip addr add "$subnet.1/24" dev "$bridge"
    ip link set "$bridge" up
  fi
  local c ns v
  for c in "${coordinators[@]}"; do
    ns="$(netns_of "$c")"; v="$(veth_of "$c")"
    ip netns list | grep -qx "$ns\( .*\)\?" && ip link show "$v" > /dev/null 2>&1 && continue
    ip netns del "$ns" 2>/dev/null || true
    ip link del "$v" 2>/dev/null || true
    ip netns add "$ns" || die "cannot create the network namespace $ns"
    ip link add "$v" type veth peer name eth0 netns "$ns"
    ip link set "$v" master "$bridge" up
    ip -n "$ns" addr add "$(host_of "$c")/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
  done
}

net_down() {
  [ "$netns" = 1 ] || return 0
  local c
  for c in "${coordinators[@]}"; do
    ip netns del "$(netns_of "$c")" 2>/dev/null || true
    ip link del "$(veth_of "$c")" 2>/dev/null || true
  done
  ip link del "$bridge" 2>/dev/null || true
}

# Whether NAME's link is cut (`partition`).
cut_off() { [ "$netns" = 1 ] && [[ "$1" == c? ]] && [[ "$(ip -br link show dev "$(veth_of "$1")" 2>/dev/null)" == *" DOWN "* ]]; }

set_link() { # NAME up|down
  [ "$netns" = 1 ] || die "$command needs a cluster started with --netns (see --help)"
  [[ "$1" == c? ]] || die "$command works on coordinators (c1 c2 c3), not $1"
  ip link set "$(veth_of "$1")" "$2" || die "cannot set the link of $1 $2"
}

role_of() {
  case "$1" in c?) echo coordinator ;; i?) echo ingest ;; w?) echo worker ;; q?) echo query ;;
    broker) echo broker ;; *) die "unknown node '$1' (broker c1 c2 c3 i1 i2 w1 w2 q1 q2)" ;; esac
}
node_id() {
  case "$1" in c?) echo "${1:1}" ;; i?) echo $((10 + ${1:1})) ;; w?) echo $((20 + ${1:1})) ;;
    q?) echo $((30 + ${1:1})) ;; esac
}
topic_list() {
  local t=() s
  for s in "${sources[@]}"; do t+=("\"spoor-gen-$s\""); done
  (IFS=,; echo "${t[*]}")
}
coordinator_urls() {
  local urls=() c
  for c in "${coordinators[@]}"; do urls+=("http://$(addr_of "$c" grpc)"); done
  (IFS=,; echo "${urls[*]}")
}

pid_file() { echo "$dir/run/$1.pid"; }
pid_of() { [ -f "$(pid_file "$1")" ] && cat "$(pid_file "$1")" || true; }
alive() { local p; p="$(pid_of "$1")"; [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }

spoor_bin() {
  if [ -n "$bin" ]; then echo "$bin"; return; fi
  local target="${CARGO_TARGET_DIR:-$HOME/.cache/spoor/target}"
  echo "$target/$profile/spoor"
}

build() {
  [ -z "$bin" ] || { [ -x "$bin" ] || die "--bin $bin is not an executable"; return; }
  local flags=(build --locked -p spoor)
  [ "$profile" = release ] && flags+=(--release)
  say "building spoor ($profile) with cargo ${flags[*]}"
  (cd "$root" && CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/spoor/target}" cargo "${flags[@]}") >&2
}

tansu_bin() {
  local bin="${TANSU_BIN:-$HOME/.cache/spoor/tansu/bin/tansu}"
  if [ ! -x "$bin" ]; then
    [ -z "${TANSU_BIN:-}" ] || die "TANSU_BIN=$TANSU_BIN is not an executable"
    say "installing the tansu broker into ~/.cache/spoor/tansu (about 10 minutes on 2 cores, once)"
    cargo install tansu --version 0.6.0 --features dynostore,libsql --locked \
      --root "$HOME/.cache/spoor/tansu" >&2
  fi
  echo "$bin"
}

write_configs() {
  mkdir -p "$dir/config" "$dir/logs" "$dir/run" "$dir/data" "$dir/lake" "$dir/tokens"
  if [ ! -s "$dir/cluster.secret" ]; then
    (umask 077; python3 -c 'import secrets; print(secrets.token_hex(32))' > "$dir/cluster.secret")
  fi
  local members=() c
  for c in "${coordinators[@]}"; do
    members+=("\"$(node_id "$c")@http://$(addr_of "$c" grpc)\"")
  done
  local members_list
  members_list="$(IFS=,; echo "${members[*]}")"
  local n
  for n in "${nodes[@]}"; do
    local role http grpc="127.0.0.1:0"
    role="$(role_of "$n")"
    http="$(addr_of "$n" http)"
    [ "$role" = coordinator ] && grpc="$(addr_of "$n" grpc)"
    {
      echo "# $n: written by deploy/local-cluster.sh; rewritten at every 'up'."
      echo "data_dir = \"$dir/data/$n\""
      echo
      echo "[node]"
      echo "id = $(node_id "$n")"
      echo "http_addr = \"$http\""
      echo "grpc_addr = \"$grpc\""
      echo "heartbeat_interval_ms = 1000"
      echo
      echo "[cluster]"
      echo "secret_file = \"$dir/cluster.secret\""
      echo
      echo "[storage]"
      echo "url = \"file://$dir/lake\""
      echo
      echo "[catalog]"
      echo "endpoint = \"$(coordinator_urls)\""
      case "$role" in
        coordinator)
          echo
          echo "[coordinator]"
          echo "initial_members = [$members_list]"
          # A dead node's shards and partitions move within seconds, not the
          # production default's 10 s.
          echo "member_timeout_ms = 4000"
          ;;
        ingest)
          echo
          echo "[ingest]"
          echo "http_auth = \"token\""
          echo "flush_interval_ms = 500"
          echo
          echo "[ingest.kafka]"
          echo "brokers = \"$(addr_of broker kafka)\""
          echo "topics = [$(topic_list)]"
          echo "group_id = \"spoor-ingest\""
          echo "instance_id = \"spoor-ingest-$n\""
          echo
          echo "# A killed node restarted with its instance id takes its place in the"
          echo "# group at once; the old member must not expire first: tansu 0.6 keeps"
          echo "# an expired member in the group and hands it partitions nobody reads"
          echo "# (docs/development.md, known limits of the test broker)."
          echo "[ingest.kafka.properties]"
          echo "\"session.timeout.ms\" = \"45000\""
          echo
          echo "# The tenant is the x-spoor-tenant header (spoor gen sets it); HTTP"
          echo "# requests name their parser with ?source_type=."
          echo "[[ingest.sources]]"
          echo "topics = [\"http:*\"]"
          echo "source_type = \"json\""
          echo "tenant_from = \"header\""
          echo "tenant_header = \"x-spoor-tenant\""
          local s
          for s in "${sources[@]}"; do
            echo
            echo "[[ingest.sources]]"
            echo "topics = [\"spoor-gen-$s\"]"
            echo "source_type = \"$s\""
            echo "tenant_from = \"header\""
            echo "tenant_header = \"x-spoor-tenant\""
          done
          ;;
        worker)
          echo
          echo "[worker]"
          echo "commit_interval_ms = 500"
          ;;
        query)
          echo
          echo "[query]"
          echo "auth = \"token\""
          echo "flight_addr = \"$(addr_of "$n" flight)\""
          echo "postgres_addr = \"$(addr_of "$n" postgres)\""
          ;;
      esac
    } > "$dir/config/$n.toml"
  done
  {
    echo "BROKER=$(addr_of broker kafka)"
    echo "TOPICS=spoor-gen-{${sources[*]}}"
    echo "COORDINATORS=$(coordinator_urls)"
    for n in "${nodes[@]}"; do
      echo "$(echo "$n" | tr a-z A-Z)_HTTP=http://$(addr_of "$n" http)"
    done
    for n in c1 c2 c3; do echo "$(echo "$n" | tr a-z A-Z)_GRPC=http://$(addr_of "$n" grpc)"; done
    for n in q1 q2; do
      echo "$(echo "$n" | tr a-z A-Z)_FLIGHT=grpc://$(addr_of "$n" flight)"
      echo "$(echo "$n" | tr a-z A-Z)_POSTGRES=$(addr_of "$n" postgres)"
    done
  } > "$dir/ports.env"
}

start_node() {
  local n="$1"
  if alive "$n"; then say "$n is already running (pid $(pid_of "$n"))"; return; fi
  local log="$dir/logs/$n.log"
  echo "--- start $(date -u +%FT%TZ)" >> "$log"
  if [ "$n" = broker ]; then
    local bin
    bin="$(tansu_bin)"
    local port
    port="$(port_of broker kafka)"
    setsid "$bin" broker --storage-engine "memory://tansu/" \
      --listener-url "tcp://127.0.0.1:$port" --advertised-listener-url "tcp://127.0.0.1:$port" \
      >> "$log" 2>&1 < /dev/null &
  else
    local wrap=()
    # `ip netns exec` execs in place: the pid is spoor's.
    if [ "$netns" = 1 ] && [[ "$n" == c? ]]; then net_up; wrap=(ip netns exec "$(netns_of "$n")"); fi
    SPOOR_LOG__FORMAT=text setsid "${wrap[@]}" "$(spoor_bin)" "$(role_of "$n")" --config "$dir/config/$n.toml" \
      >> "$log" 2>&1 < /dev/null &
  fi
  echo $! > "$(pid_file "$n")"
}

wait_port() { # NAME PORT SECONDS
  local deadline=$((SECONDS + $3))
  while ! (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null; do
    alive "$1" || die "$1 exited while starting; its log ends:
$(tail -n 20 "$dir/logs/$1.log")"
    [ $SECONDS -lt $deadline ] || die "$1 did not listen on port $2 within $3 s; see $dir/logs/$1.log"
    sleep 0.2
  done
}

wait_healthy() { # NAME SECONDS
  local url deadline=$((SECONDS + $2))
  url="http://$(addr_of "$1" http)/health"
  until curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; do
    alive "$1" || die "$1 exited while starting; its log ends:
$(tail -n 20 "$dir/logs/$1.log")"
    [ $SECONDS -lt $deadline ] || die "$1 did not answer $url within $2 s; see $dir/logs/$1.log"
    sleep 0.3
  done
}

# The cluster status as JSON from a coordinator's HTTP API (the admin token).
cluster_status() { # NAME
  curl -fsS --max-time 5 -H "Authorization: Bearer $(cat "$dir/tokens/admin.token")" \
    "http://$(addr_of "$1" http)/v1/status"
}

leader() {
  local c id
  for c in "${coordinators[@]}"; do
    alive "$c" || continue
    id="$(cluster_status "$c" 2>/dev/null | python3 -c \
      'import json,sys; print(json.load(sys.stdin)["cluster"]["leader_id"])' 2>/dev/null)" || continue
    [ -n "$id" ] && [ "$id" != 0 ] && { echo "c$id"; return 0; }
  done
  return 1
}

spoor_cli() { "$(spoor_bin)" "$@"; }

first_alive_coordinator() {
  local c
  for c in "${coordinators[@]}"; do alive "$c" && { echo "http://$(addr_of "$c" grpc)"; return; }; done
  die "no coordinator is running"
}

up() {
  build
  [ -x "$(spoor_bin)" ] || die "no spoor binary at $(spoor_bin)"
  write_configs
  local n
  start_node broker
  wait_port broker "$(port_of broker kafka)" 30
  # The events topics, their partitions spread over the ingest nodes.
  local s
  for s in "${sources[@]}"; do
    "$(tansu_bin)" topic create "spoor-gen-$s" --partitions "$partitions" \
      --broker "tcp://$(addr_of broker kafka)" >> "$dir/logs/broker.log" 2>&1 ||
      say "topic spoor-gen-$s not created (it may exist already); see $dir/logs/broker.log"
  done
  net_up
  for n in "${coordinators[@]}"; do start_node "$n"; done
  for n in "${coordinators[@]}"; do wait_healthy "$n" 60; done
  # The first admin token, made with the cluster secret once a leader serves.
  local deadline=$((SECONDS + 60)) out
  if [ ! -s "$dir/tokens/admin.token" ]; then
    until out="$(spoor_cli token create --role admin --description "local cluster admin" \
        --cluster-secret-file "$dir/cluster.secret" --coordinator "$(first_alive_coordinator)" 2>&1)"; do
      [ $SECONDS -lt $deadline ] || die "could not create the admin token within 60 s: $out"
      sleep 0.5
    done
    (umask 077; printf '%s' "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])' \
      > "$dir/tokens/admin.token")
  fi
  local admin
  admin="$(cat "$dir/tokens/admin.token")"
  # Tenants, with an ingest and an analyst token each.
  local t
  IFS=, read -r -a tenant_list <<< "$tenants"
  for t in "${tenant_list[@]}"; do
    [ -n "$t" ] || continue
    out="$(spoor_cli tenant show "$t" --token "$admin" --coordinator "$(first_alive_coordinator)" 2>&1)" ||
      out="$(spoor_cli tenant create "$t" --token "$admin" --coordinator "$(first_alive_coordinator)" 2>&1)" ||
      die "creating tenant $t: $out"
    local kind
    for kind in ingest analyst; do
      [ -s "$dir/tokens/$t.$kind.token" ] && continue
      out="$(spoor_cli token create --role "$kind" --tenant "$t" --description "local cluster $kind" \
        --token "$admin" --coordinator "$(first_alive_coordinator)" 2>&1)" || die "creating the $kind token of $t: $out"
      (umask 077; printf '%s' "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])' \
        > "$dir/tokens/$t.$kind.token")
    done
  done
  for n in i1 i2 w1 w2 q1 q2; do start_node "$n"; done
  for n in i1 i2 w1 w2 q1 q2; do wait_healthy "$n" 60; done
  if [ "$rules" != none ] && [ -d "$rules" ]; then
    for t in "${tenant_list[@]}"; do
      [ -n "$t" ] || continue
      out="$(spoor_cli rules apply "$rules" --tenant "$t" --token "$admin" \
        --endpoint "http://$(addr_of q1 http)" 2>&1)" || die "applying $rules to $t: $out"
    done
  fi
  local lead
  lead="$(leader)" || die "the coordinators elected no leader"
  print_endpoints "$lead"
}

print_endpoints() {
  cat <<EOF
Spoor local cluster is up ($dir), Raft leader ${1}.
  Kafka (tansu)     $(addr_of broker kafka)  topics spoor-gen-{${sources[*]}}, $partitions partitions each; tenant in the x-spoor-tenant header
  coordinators gRPC $(coordinator_urls)
  ingest HTTP       http://$(addr_of i1 http)  http://$(addr_of i2 http)  (POST /v1/ingest/SOURCE, ingest token)
  workers HTTP      http://$(addr_of w1 http)  http://$(addr_of w2 http)  (/health, /metrics)
  query HTTP        http://$(addr_of q1 http)  http://$(addr_of q2 http)
  Flight SQL        grpc://$(addr_of q1 flight)  grpc://$(addr_of q2 flight)
  PostgreSQL        $(addr_of q1 postgres)  $(addr_of q2 postgres)  (password: a token)
  tenants           ${tenants}   tokens in $dir/tokens/
  logs              $dir/logs/
Try:
  eval "\$($0 env --dir $dir)"
  spoor gen --kafka $(addr_of broker kafka) --topic 'spoor-gen-{source}' --tenants ${tenants} --rate 200 --duration 60
  spoor sql "SELECT tenant, count(*) FROM events GROUP BY tenant"
  spoor status
  $0 down --dir $dir
EOF
}

status() {
  local n lead=""
  lead="$(leader 2>/dev/null)" || lead="none"
  printf '%-7s %-12s %-8s %-6s %s\n' NODE ROLE PID STATE HEALTH
  for n in broker "${nodes[@]}"; do
    local state="down" health="-" p
    p="$(pid_of "$n")"
    if alive "$n"; then
      state="up"
      [ "$(ps -o stat= -p "$p" 2>/dev/null | cut -c1)" = T ] && state="paused"
      cut_off "$n" && state="cut"
      if [ "$n" != broker ]; then
        health="$(curl -fsS --max-time 2 "http://$(addr_of "$n" http)/health" 2>/dev/null || echo unreachable)"
      fi
    fi
    printf '%-7s %-12s %-8s %-6s %s%s\n' "$n" "$(role_of "$n")" "${p:--}" "$state" "$health" \
      "$([ "$n" = "$lead" ] && echo '  (Raft leader)')"
  done
}

signal_node() { # NAME SIGNAL
  local p
  p="$(pid_of "$1")"
  alive "$1" || die "$1 is not running"
  kill "-$2" "$p"
}

stop_node() { # NAME SIGNAL SECONDS
  alive "$1" || return 0
  local p deadline=$((SECONDS + $3))
  p="$(pid_of "$1")"
  # A paused process cannot act on SIGTERM until it runs again.
  kill -CONT "$p" 2>/dev/null || true
  kill "-$2" "$p" 2>/dev/null || true
  while kill -0 "$p" 2>/dev/null; do
    if [ $SECONDS -ge $deadline ]; then
      say "$1 (pid $p) did not stop within $3 s: SIGKILL"
      kill -KILL "$p" 2>/dev/null || true
    fi
    sleep 0.2
  done
  rm -f "$(pid_file "$1")"
}

down() {
  local n
  # Stateless roles first, so they flush while the catalog still serves; the
  # broker last.
  for n in i1 i2 w1 w2 q1 q2; do stop_node "$n" TERM 30 & done
  wait
  for n in c1 c2 c3; do stop_node "$n" TERM 30 & done
  wait
  net_down
  stop_node broker TERM 10
  say "stopped; state kept in $dir (remove it to start afresh)"
}

case "$command" in
  up) up ;;
  down) down ;;
  status) status ;;
  leader) leader || die "no leader" ;;
  env)
    [ -s "$dir/tokens/admin.token" ] || die "no cluster in $dir (run up first)"
    echo "export SPOOR_ENDPOINT=http://$(addr_of q1 http)"
    echo "export SPOOR_TOKEN=$(cat "$dir/tokens/admin.token")"
    # Not SPOOR_*: spoor would read it as a config key.
    echo "export LOCAL_CLUSTER_BROKER=$(addr_of broker kafka)"
    ;;
  kill) role_of "$name" > /dev/null; signal_node "$name" KILL; sleep 0.2; rm -f "$(pid_file "$name")" ;;
  stop) role_of "$name" > /dev/null; stop_node "$name" TERM 30 ;;
  start)
    role_of "$name" > /dev/null
    start_node "$name"
    if [ "$name" = broker ]; then wait_port broker "$(port_of broker kafka)" 30; else wait_healthy "$name" 60; fi ;;
  pause) role_of "$name" > /dev/null; signal_node "$name" STOP ;;
  resume) role_of "$name" > /dev/null; signal_node "$name" CONT ;;
  partition) role_of "$name" > /dev/null; set_link "$name" down ;;
  heal) role_of "$name" > /dev/null; set_link "$name" up ;;
esac
