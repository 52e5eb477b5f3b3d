#!/bin/sh
# Checks sellergen: determinism, seed sensitivity, file contracts (headers,
# no self-links), ring ground truth against the links, hub sizes, and the
# jsonl format carrying exactly the csv content.
# Usage: test_sellergen.sh PATH/TO/sellergen
set -eu

GEN=${1:?usage: test_sellergen.sh PATH/TO/sellergen}
PY=/usr/bin/python3
TMP=$(mktemp -d "${TMPDIR:-/tmp}/sellergen-test.XXXXXX")
trap 'rm -rf "$TMP"' EXIT INT TERM

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

"$GEN" --help >/dev/null || fail "--help did not exit 0"
if "$GEN" --sellers 0 --out "$TMP/bad" 2>/dev/null; then
	fail "--sellers 0 accepted"
fi
if "$GEN" --format xml --out "$TMP/bad" 2>/dev/null; then
	fail "--format xml accepted"
fi

# Same seed twice (into a directory that does not exist yet): identical.
"$GEN" --sellers 2000 --seed 7 --out "$TMP/a/nested" 2>/dev/null
"$GEN" --sellers 2000 --seed 7 --out "$TMP/b" 2>/dev/null
for f in links.csv entities.csv truth.csv rings.csv hubs.csv; do
	cmp -s "$TMP/a/nested/$f" "$TMP/b/$f" || fail "$f differs for the same seed"
done

# Another seed: different links.
"$GEN" --sellers 2000 --seed 8 --out "$TMP/c" 2>/dev/null
if cmp -s "$TMP/b/links.csv" "$TMP/c/links.csv"; then
	fail "links.csv identical for seeds 7 and 8"
fi

# Same options in jsonl.
"$GEN" --sellers 2000 --seed 7 --format jsonl --out "$TMP/j" 2>/dev/null

"$PY" - "$TMP/b" "$TMP/j" <<'EOF' || fail "content checks"
import collections, csv, json, sys

d, jd = sys.argv[1], sys.argv[2]
TYPES = {"seller", "address", "payment_account", "device", "phone", "email",
         "ip"}

def rows(name, header):
    with open(f"{d}/{name}", newline="") as f:
        r = csv.reader(f)
        got = next(r)
        assert got == header, f"{name}: header {got}"
        return list(r)

links = rows("links.csv", ["a_type", "a_key", "b_type", "b_key", "seen"])
ents = rows("entities.csv", ["type", "key", "labels"])
truth = rows("truth.csv", ["seller_key", "ring", "warehouse_key", "labelled"])
rings = rows("rings.csv",
             ["ring", "size", "warehouse_key", "devices", "mule_accounts"])
hubs = rows("hubs.csv", ["type", "key", "sellers"])

sellers_of = collections.defaultdict(set)
for a_type, a_key, b_type, b_key, seen in links:
    assert a_type in TYPES and b_type in TYPES, (a_type, b_type)
    assert a_key and b_key
    assert (a_type, a_key) != (b_type, b_key), f"self-link {a_type},{a_key}"
    assert 1735689600 <= int(seen) < 1767225600, seen
    if a_type == "seller":
        sellers_of[(b_type, b_key)].add(a_key)

assert len(truth) == 2000, len(truth)
members = collections.defaultdict(list)
for key, ring, wh, labelled in truth:
    assert (ring == "0") == (wh == ""), (key, ring, wh)
    members[int(ring)].append(key)
assert rings, "no rings at 2000 sellers"
for ring, size, wh, devices, mules in rings:
    m = members[int(ring)]
    assert len(m) == int(size), f"ring {ring}: truth {len(m)} != {size}"
    assert 5 <= len(m) <= 100, f"ring {ring} size {len(m)}"
    used = sellers_of[("address", wh)] & set(m)
    assert len(used) >= 0.8 * len(m), f"ring {ring}: warehouse {len(used)}/{len(m)}"
    for dev in devices.split(";"):
        assert sellers_of[("device", dev)] & set(m), f"unused device {dev}"
assert sum(len(v) for k, v in members.items() if k) == 40, "ring sellers"

labelled = {k for k, _, _, l in truth if l == "1"}
cf = {k for t, k, l in ents if "counterfeit" in l.split(";")}
assert labelled == cf, "entities.csv counterfeit labels != truth.csv"
assert all(t == "seller" and l for t, k, l in ents)

for t, key, n in hubs:
    assert len(sellers_of[(t, key)]) == int(n), f"hub {key}: {n}"
assert max(int(n) for t, k, n in hubs if t == "address") >= 100, "no big hub"

# jsonl: every line parses and carries exactly the csv content.
with open(f"{jd}/links.jsonl") as f:
    jl = [json.loads(line) for line in f]
assert [[o["a_type"], o["a_key"], o["b_type"], o["b_key"], str(o["seen"])]
        for o in jl] == links, "links.jsonl != links.csv"
assert all(isinstance(o["seen"], int) for o in jl)
with open(f"{jd}/entities.jsonl") as f:
    je = [json.loads(line) for line in f]
assert [[o["type"], o["key"], ";".join(o["labels"])] for o in je] == ents, \
    "entities.jsonl != entities.csv"
print(f"ok: {len(links)} links, {len(rings)} rings, {len(hubs)} hubs")
EOF
echo "sellergen: all checks passed"
