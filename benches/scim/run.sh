#!/usr/bin/env bash
# SCIM benchmark: GET /Users?filter=userName eq "…" and a member PATCH with
# N users stored, on tyk-idsync (SQLite and PostgreSQL) and on the reference
# Python server scim2-server, same machine, same wrk settings.
#   apt-get install -y wrk; python3 -m venv /tmp/refvenv && /tmp/refvenv/bin/pip install scim2-server
#   benches/scim/run.sh sqlite|postgres://…|reference [USERS] [DURATION]
set -euo pipefail
target=${1:?sqlite, a postgres:// URL, or reference}
users=${2:-100000}
duration=${3:-20s}
here=$(cd "$(dirname "$0")" && pwd)
wrk_opts=(-t2 -c16 "-d$duration")

if [ "$target" = reference ]; then
  base=""; port=8199; export SCIM_TOKEN=benchtoken
  # The reference server keeps users in memory and has no bulk load: seed it
  # over HTTP first with seed_users.lua until it holds $users users.
  SCIM_USER=$(curl -s -H "Authorization: Bearer $SCIM_TOKEN" \
    "http://127.0.0.1:$port/Users?count=1&startIndex=$((users / 2))&attributes=userName" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["Resources"][0]["userName"])')
  export SCIM_USER
  group=$(curl -s -XPOST -H "Authorization: Bearer $SCIM_TOKEN" -H 'Content-Type: application/scim+json' \
    -d '{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"bench-group"}' \
    "http://127.0.0.1:$port/Groups" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  member=$(curl -s -H "Authorization: Bearer $SCIM_TOKEN" \
    "http://127.0.0.1:$port/Users?filter=userName%20eq%20%22$SCIM_USER%22" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["Resources"][0]["id"])')
else
  base="/scim/v2"; port=8299
  url=$target; [ "$target" = sqlite ] && url="sqlite://$(mktemp -d)/bench.db"
  cargo build -q --release --example scim_server
  out=$(mktemp)
  "$here/../../target/release/examples/scim_server" "$url" "$port" "$users" > "$out" &
  server=$!; trap 'kill $server' EXIT
  until [ "$(wc -l < "$out")" -ge 2 ]; do sleep 1; done
  export SCIM_TOKEN=$(sed -n 1p "$out"); group=$(sed -n 2p "$out")
  export SCIM_USER="user$((users / 2))@bench.example"
  member=$(curl -s -H "Authorization: Bearer $SCIM_TOKEN" \
    "http://127.0.0.1:$port/scim/v2/Users?filter=userName%20eq%20%22$SCIM_USER%22" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["Resources"][0]["id"])')
fi
export SCIM_BASE=$base SCIM_GROUP=$group SCIM_MEMBER=$member
echo "== $target, $users users: GET filter userName eq"
wrk "${wrk_opts[@]}" -s "$here/get_user.lua" "http://127.0.0.1:$port" | grep RESULT
echo "== $target, $users users: PATCH group member add/remove"
wrk "${wrk_opts[@]}" -s "$here/patch_member.lua" "http://127.0.0.1:$port" | grep RESULT
