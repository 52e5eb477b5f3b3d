"""Reads a sellergen output directory for test_sellergen.sh, checking every
file's header: the tables as lists of rows."""
import csv

HEADERS = {
    "links.csv": ["a_type", "a_key", "b_type", "b_key", "seen"],
    "entities.csv": ["type", "key", "labels"],
    "truth.csv": ["seller_key", "ring", "warehouse_key", "labelled", "kind", "group"],
    "rings.csv": ["ring", "size", "warehouse_key", "devices", "mule_accounts"],
    "hubs.csv": ["type", "key", "sellers"],
    "chains.csv": ["chain", "size", "phone_key", "email_key", "payment_key"],
}


def rows(d, name):
    with open(f"{d}/{name}", newline="") as f:
        r = csv.reader(f)
        got = next(r)
        assert got == HEADERS[name], f"{name}: header {got}"
        return list(r)


def read_all(d):
    """links, ents, truth, rings, hubs, chains."""
    return [rows(d, n) for n in ("links.csv", "entities.csv", "truth.csv", "rings.csv",
                                 "hubs.csv", "chains.csv")]
