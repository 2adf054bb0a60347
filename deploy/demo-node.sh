#!/bin/sh
# `make demo`'s last step: the demo's colour cine loops (demo-data --dicom --screen jpeg) through the DICOM node as a
# modality sends them — DCMTK's storescu proposing JPEG baseline — with each result SR forwarded to Orthanc where
# Debian's orthanc is installed. Prints each loop's decision and views, and what Orthanc holds. Usage:
#   deploy/demo-node.sh DEMO_DIR ENGINE [DCUBE_EDGE [PYTHON]]
set -eu
demo=$1
engine=$2
dcube=${3:-dcube-edge}
python=${4:-python3}
if ! command -v storescu >/dev/null 2>&1; then
  echo "demo-node: DCMTK's storescu is not installed (apt-get install dcmtk): the node's step is skipped"
  exit 0
fi
work="$demo/node"
rm -rf "$work"
mkdir -p "$work"
dicom_port=${DEMO_DICOM_PORT:-11190}
http_port=${DEMO_HTTP_PORT:-8190}
orthanc_dicom=${DEMO_ORTHANC_DICOM_PORT:-4290}
orthanc_http=${DEMO_ORTHANC_HTTP_PORT:-8290}
pids=""
cleanup() { for p in $pids; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

forward=""
if command -v Orthanc >/dev/null 2>&1; then
  mkdir -p "$work/orthanc"
  cat > "$work/orthanc/orthanc.json" <<EOF
{"Name": "dcube-demo-pacs", "StorageDirectory": "$work/orthanc/db", "IndexDirectory": "$work/orthanc/db",
 "HttpPort": $orthanc_http, "DicomPort": $orthanc_dicom, "DicomAet": "ORTHANC", "RemoteAccessAllowed": false,
 "AuthenticationEnabled": false, "Plugins": []}
EOF
  Orthanc "$work/orthanc/orthanc.json" > "$work/orthanc/orthanc.log" 2>&1 &
  pids="$pids $!"
  forward="--forward ORTHANC@127.0.0.1:$orthanc_dicom"
else
  echo "demo-node: Orthanc is not installed (apt-get install orthanc): the results stay in the node"
fi

# shellcheck disable=SC2086  # $forward is two words or none
"$dcube" serve "$engine" --spool "$work/spool" --dicom-port "$dicom_port" --http-port "$http_port" \
  --allow-ae SCANNER $forward > "$work/serve.log" 2>&1 &
pids="$pids $!"
tries=0
until curl -sf "http://127.0.0.1:$http_port/readyz" >/dev/null; do
  tries=$((tries + 1))
  if [ "$tries" -gt 120 ]; then echo "demo-node: the node did not get ready; see $work/serve.log"; exit 1; fi
  sleep 0.5
done

loops=$(find "$demo/loops" -name '*.dcm' | sort)
# shellcheck disable=SC2086  # one argument per file
storescu -xy -aet SCANNER -aec DCUBE 127.0.0.1 "$dicom_port" $loops
for f in $loops; do
  uid=$(dcmdump +P SOPInstanceUID "$f" | sed 's/.*\[\(.*\)\].*/\1/')
  tries=0
  while :; do
    body=$(curl -sf "http://127.0.0.1:$http_port/v1/results/$uid" || true)
    if echo "$body" | grep -q '"result_sr": "' && { [ -z "$forward" ] || echo "$body" | grep -q '"forwarded": true'; }; then
      break
    fi
    tries=$((tries + 1))
    if [ "$tries" -gt 240 ]; then echo "demo-node: no result for $f; see $work/serve.log"; exit 1; fi
    sleep 0.5
  done
  echo "$body" > "$work/$(basename "$f" .dcm).result.json"
  "$python" - "$f" "$work/$(basename "$f" .dcm).result.json" <<'EOF'
import collections, json, sys
r = json.load(open(sys.argv[2]))
called = collections.Counter(v["label"] for v in r["frames"])
print(f"{sys.argv[1]}: {r['label']} ({r['number_of_frames']} frames, {r['regions']}; {len(r['frames'])} views, "
      f"called {', '.join(f'{c} {n}' for c, n in called.most_common())}, combined by {r['instance_policy']}); "
      f"SR {r['result_sr']}")
EOF
done
if [ -n "$forward" ]; then
  curl -sf "http://127.0.0.1:$orthanc_http/tools/find" -d '{"Level": "Instance", "Query": {"Modality": "SR"}}' |
    "$python" -c 'import json, sys; print(f"demo-node: Orthanc holds {len(json.load(sys.stdin))} result SR(s)")'
fi
