#!/bin/sh
# Checks sellergen: determinism, seed sensitivity, file contracts (headers,
# no self-links), ring ground truth against the links, hub sizes, and the
# jsonl format carrying exactly the csv content; then the heavy and
# adversarial profiles at 20000 sellers: shared-entity size tails, chains,
# big rings, device rotation and false labels, all against the links.
# Usage: test_sellergen.sh PATH/TO/sellergen
set -eu

GEN=${1:?usage: test_sellergen.sh PATH/TO/sellergen}
PY=/usr/bin/python3
HERE=$(cd "$(dirname "$0")" && pwd)
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
# Bad values: exit 2, naming the option.
for bad in "profile bogus" "shared-tail yes" "chain-fraction 0.31" \
	"big-rings -1" "big-rings 1000001" "rotate-devices 1" "camouflage 1.5" \
	"camouflage-ties 0" "camouflage-ties 9" "false-label-fraction 0.6" \
	"label-fraction x"; do
	set -- $bad
	rc=0
	"$GEN" "--$1" "$2" --out "$TMP/bad" 2>"$TMP/err" || rc=$?
	[ "$rc" = 2 ] || fail "--$1 $2: exit $rc, want 2"
	grep -q -- "--$1" "$TMP/err" || fail "--$1 $2: error does not name --$1"
done
# Every profile works down to one seller.
for p in classic heavy adversarial; do
	for n in 1 7 300; do
		"$GEN" --profile "$p" --sellers "$n" --out "$TMP/tiny" 2>/dev/null ||
			fail "--profile $p --sellers $n failed"
		[ "$(wc -l <"$TMP/tiny/truth.csv")" = $((n + 1)) ] ||
			fail "--profile $p --sellers $n: truth.csv rows"
	done
done

# Same seed twice (into a directory that does not exist yet): identical.
"$GEN" --sellers 2000 --seed 7 --out "$TMP/a/nested" 2>/dev/null
"$GEN" --sellers 2000 --seed 7 --out "$TMP/b" 2>/dev/null
for f in links.csv entities.csv truth.csv rings.csv hubs.csv chains.csv; do
	cmp -s "$TMP/a/nested/$f" "$TMP/b/$f" || fail "$f differs for the same seed"
done

# Another seed: different links.
"$GEN" --sellers 2000 --seed 8 --out "$TMP/c" 2>/dev/null
if cmp -s "$TMP/b/links.csv" "$TMP/c/links.csv"; then
	fail "links.csv identical for seeds 7 and 8"
fi

# Same options in jsonl.
"$GEN" --sellers 2000 --seed 7 --format jsonl --out "$TMP/j" 2>/dev/null

"$PY" - "$TMP/b" "$TMP/j" "$HERE" <<'EOF' || fail "content checks"
import collections, json, sys

d, jd, here = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path.insert(0, here)
from sellergen_files import read_all
TYPES = {"seller", "address", "payment_account", "device", "phone", "email",
         "ip"}

links, ents, truth, rings, hubs, chains = read_all(d)
assert not chains, "classic has no chains"

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
for key, ring, wh, labelled, kind, group in truth:
    assert (ring == "0") == (wh == ""), (key, ring, wh)
    assert kind in ("honest", "ring", "family"), kind
    assert (kind == "ring") == (ring != "0") and (kind == "honest") == \
        (group == "0"), (key, kind, group)
    assert kind != "ring" or group == ring, (key, ring, group)
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

labelled = {t[0] for t in truth if t[3] == "1"}
assert all(t[4] == "ring" for t in truth if t[3] == "1"), "classic false label"
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

# Heavy and adversarial profiles: the same seed twice gives identical
# files; then everything they promise, checked against the links.
for p in heavy adversarial; do
	"$GEN" --profile "$p" --sellers 20000 --seed 11 --out "$TMP/$p" 2>/dev/null
	"$GEN" --sellers 20000 --seed 11 --out "$TMP/$p.2" --profile "$p" 2>/dev/null
	for f in links.csv entities.csv truth.csv rings.csv hubs.csv chains.csv; do
		cmp -s "$TMP/$p/$f" "$TMP/$p.2/$f" ||
			fail "$p: $f differs for the same seed"
	done
	"$PY" - "$TMP/$p" "$p" "$HERE" <<'EOF' || fail "$p profile checks"
import collections, sys

d, profile, here = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path.insert(0, here)
from sellergen_files import read_all
adversarial = profile == "adversarial"
N = 20000

links, ents, truth, rings, hubs, chains = read_all(d)

sellers_of = collections.defaultdict(set)
seen_of = collections.defaultdict(list)   # entity -> observation times
for a_type, a_key, b_type, b_key, seen in links:
    assert a_type == "seller" and (a_type, a_key) != (b_type, b_key)
    assert 1735689600 <= int(seen) < 1767225600, seen
    sellers_of[(b_type, b_key)].add(a_key)
    seen_of[(b_type, b_key)].append(int(seen))

# truth: kinds, groups (one kind each, unique numbers), ring columns
assert len(truth) == N, len(truth)
by_group = collections.defaultdict(list)
kind_of_group = {}
for key, ring, wh, labelled, kind, group in truth:
    assert kind in ("honest", "ring", "family", "chain"), kind
    assert (kind == "ring") == (ring != "0") == (wh != ""), (key, kind, ring)
    assert (kind == "honest") == (group == "0"), (key, kind, group)
    assert kind != "ring" or group == ring, (key, ring, group)
    assert kind_of_group.setdefault(group, kind) == kind, f"group {group}"
    by_group[group].append(key)
kinds = collections.Counter(t[4] for t in truth)
assert kinds["chain"] >= 0.02 * N and kinds["family"] > 0, kinds

# rings: sizes, a big ring on its warehouse, every pool device and mule
# used by members only, and (adversarial) pool A seen before pool B
big = 0
for ring, size, wh, devices, mules in rings:
    m = set(by_group[ring])
    assert len(m) == int(size) and 5 <= len(m) <= 300, (ring, size)
    share = len(sellers_of[("address", wh)] & m) / len(m)
    assert share >= 0.85, f"ring {ring}: warehouse {share:.2f}"
    big += len(m) >= 100
    devs = devices.split(";")
    ndev = min(1 + len(m) // 12, 32)
    assert len(devs) == ndev * (2 if adversarial else 1), (ring, len(devs))
    for e in [("device", x) for x in devs] + \
             [("payment_account", x) for x in mules.split(";")]:
        assert sellers_of[e] and sellers_of[e] <= m, f"ring {ring}: {e}"
    if adversarial:
        a, b = devs[:ndev], devs[ndev:]
        last_a = max(t for x in a for t in seen_of[("device", x)])
        first_b = min(t for x in b for t in seen_of[("device", x)])
        assert last_a < first_b, f"ring {ring}: pool A after pool B"
assert big >= 1, "no ring of 100+ members"

# shared addresses and IPs: exact counts, at most one of each per seller,
# and address sizes covering 2..400 without a gap
per_seller = collections.Counter()
sizes = collections.defaultdict(list)
for t, key, n in hubs:
    got = sellers_of[(t, key)]
    assert len(got) == int(n) >= 2, f"hub {key}: {n} != {len(got)}"
    sizes[t].append(int(n))
    per_seller.update((t, s) for s in got)
assert max(per_seller.values()) == 1, "a seller with two shared addresses"
for lo, hi in [(2, 5), (6, 19), (20, 49), (50, 149), (150, 400)]:
    c = sum(lo <= k <= hi for k in sizes["address"])
    assert c >= 1, f"no shared address of {lo}..{hi} sellers"
assert sum(2 <= k <= 10 for k in sizes["address"]) >= 100, "few small"
assert sum(20 <= k <= 400 for k in sizes["address"]) >= 20, "few mid-size"
addr_users = sum(sizes["address"]) / N
ip_users = sum(sizes["ip"]) / N
assert 0.25 <= addr_users <= 0.33 and 0.35 <= ip_users <= 0.45, \
    (addr_users, ip_users)

# chains: 10-40 shops, all linked to the same >= 2 shared entities
assert chains, "no chains"
for chain, size, phone, email, pay in chains:
    m = set(by_group[chain])
    assert kind_of_group[chain] == "chain" and len(m) == int(size), chain
    assert 10 <= len(m) <= 40, f"chain {chain}: {len(m)}"
    keys = [(t, k) for t, k in (("phone", phone), ("email", email),
                                ("payment_account", pay)) if k]
    assert len(keys) >= 2, f"chain {chain}: {keys}"
    for e in keys:
        assert sellers_of[e] == m, f"chain {chain}: {e}"

# labels: entities.csv agrees with truth; false labels only when asked
labelled = {t[0] for t in truth if t[3] == "1"}
cf = {k for t, k, l in ents if "counterfeit" in l.split(";")}
assert labelled == cf, "entities.csv counterfeit labels != truth.csv"
false = sum(1 for t in truth if t[3] == "1" and t[4] != "ring")
share = false / len(labelled)
if adversarial:
    assert 0.05 <= share <= 0.15, f"false labels {false}/{len(labelled)}"
else:
    assert false == 0, f"{false} false labels"
print(f"ok {profile}: {len(links)} links, {len(rings)} rings ({big} big), "
      f"{len(chains)} chains, {len(sizes['address'])} shared addresses "
      f"(max {max(sizes['address'])}), {false}/{len(labelled)} false labels")
EOF
done
echo "sellergen: all checks passed"
