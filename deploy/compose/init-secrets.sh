#!/usr/bin/env sh
# Writes the compose cluster's secrets into ./secrets (beside this script),
# never over an existing file:
#   cluster_secret  the cluster secret every role presents to the coordinators
#   s3_access_key   MinIO's root user, also spoor's storage.s3.access_key_id
#   s3_secret_key   its password, spoor's storage.s3.secret_access_key_file
# The folder is private to you (0700); the files are 0644 so the containers'
# users (spoor runs as uid 10001) can read them through the bind mounts.
set -eu
dir="$(cd "$(dirname "$0")" && pwd)/secrets"
mkdir -p "$dir"
chmod 0700 "$dir"
write() {
  if [ ! -e "$dir/$1" ]; then
    printf '%s\n' "$2" > "$dir/$1"
    chmod 0644 "$dir/$1"
    echo "wrote $dir/$1"
  fi
}
random() { od -An -N32 -tx1 /dev/urandom | tr -d ' \n'; }
write cluster_secret "$(random)"
# Must equal storage.s3.access_key_id in config/*.toml.
write s3_access_key spoor
write s3_secret_key "$(random)"
