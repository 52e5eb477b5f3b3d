/*
 * graphctl export: a cluster, an entity's neighbourhood or a snapshot's
 * riskiest clusters as GraphML (netgraph.h fetches, igraph writes), to a
 * file written atomically or to stdout.
 */
#include "netgraph.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define DEFAULT_TOP 20

const optspec export_opts[] = {
    {"out", true, O_OUT},
    {"o", true, O_OUT},
    {"snapshot", true, O_SNAPSHOT},
    {"hops", true, O_HOPS},
    {"min-risk", true, O_MIN_RISK},
    {"min-size", true, O_MIN_SIZE},
    {"top", true, O_TOP},
    {"max-sellers", true, O_MAX_SELLERS},
    {"max-links", true, O_MAX_LINKS},
    {"max-nodes", true, O_MAX_NODES},
    /* export ties: the projection's spec, and the edge list's format */
    {"evidence", true, O_EVIDENCE},
    {"weight", true, O_WEIGHT},
    {"cap", true, O_CAP},
    {"min-tie", true, O_MIN_TIE},
    {"since", true, O_SINCE},
    {"until", true, O_UNTIL},
    {"format", true, O_EDGE_FORMAT},
    {NULL, false, 0},
};

const char export_help[] =
    "usage: graphctl export cluster ID [--snapshot N] -o FILE\n"
    "       graphctl export entity TYPE KEY [--hops N] -o FILE\n"
    "       graphctl export snapshot [--snapshot N] [--min-risk X] [--top N] -o FILE\n"
    "       graphctl export ties [--format ncol|csv] [SPEC OPTIONS] -o FILE\n"
    "\n"
    "ties: the projected, weighted seller-seller ties a clustering job would\n"
    "cluster (ExportTies), for an engine outside graphd (Spark GraphFrames,\n"
    "cuGraph, python-igraph), each tie once, ascending seller ids. ncol\n"
    "(default): 'SELLER SELLER WEIGHT' lines, python-igraph's\n"
    "Graph.Read_Ncol(f, weights=True); csv: a 'src,dst,weight' header, then\n"
    "rows. Weights are exact (17 significant digits). SPEC OPTIONS as for\n"
    "graphctl cluster: --evidence, --weight TYPE=W, --cap TYPE=N, --min-tie W,\n"
    "--since T, --until T. Sellers with no tie are in no line. Bring a\n"
    "membership back with graphctl import.\n"
    "\n"
    "Otherwise:\n"
    "Writes the seller-entity graph investigators look at as GraphML, for\n"
    "Gephi, Cytoscape or yEd: sellers, and the shared entities (address,\n"
    "payment account, device, phone, e-mail, ip) that two or more of them\n"
    "link to, joined by their links (relation \"uses\"); direct seller-seller\n"
    "links are edges too (relation \"direct\").\n"
    "  cluster ID        the members of a cluster (GetCluster)\n"
    "  entity TYPE KEY   an entity's neighbourhood: for a seller, itself and\n"
    "                    the sellers linked to it within --hops steps\n"
    "                    (LinkedSellers, 1..3, default 1); for another entity,\n"
    "                    the sellers that use it, and with --hops 2 or 3 the\n"
    "                    sellers linked to those\n"
    "  snapshot          the riskiest clusters (ListClusters), at most --top\n"
    "                    (default 20) with risk >= --min-risk (default 0) and\n"
    "                    at least --min-size sellers (default 2), in one file\n"
    "Options:\n"
    "  -o, --out FILE    the output (required): written to FILE.tmp and\n"
    "                    renamed when complete; '-' = stdout\n"
    "  --snapshot N      the snapshot (default: the latest)\n"
    "  --max-sellers N   sellers per cluster or neighbourhood (default 500)\n"
    "  --max-links N     links read per seller (default 1000)\n"
    "  --max-nodes N     nodes in the file (default: no bound); the entities\n"
    "                    shared by the most sellers are kept first\n"
    "Whatever a bound cuts is said on stderr and in the graph attributes\n"
    "cut / cut_note. Vertex attributes: kind (seller|entity), type, key,\n"
    "labels (';'-separated), flagged, cluster_id, cluster_risk, seller_count,\n"
    "hub, evidence_weight, corroboration, evidence_context, users (sellers of\n"
    "the graph using an entity), first_seen, last_seen (unix seconds), hops\n"
    "(steps from a neighbourhood's root; -1 otherwise), graphd_id. Edge\n"
    "attributes: relation, first_seen, last_seen, count, weight (the evidence\n"
    "weight of the shared entity; direct links: the seller type weight).\n"
    "Evidence weights follow the evidence rule (graphd.proto EvidenceRule):\n"
    "an entity shared by n sellers weighs w(type) (1/(n-1) + (1 - 1/(n-1))\n"
    "c), where c (corroboration, 0..1) is how much of what its\n"
    "sellers share beyond it ties them to each other; 0 for hubs (over the\n"
    "hub cap) and for context (evidence_context: weight <= 0.2, a crowd that\n"
    "shares nothing else). They are the daemon's (GetEntity, one call per\n"
    "entity with 3 or more sellers under the cap), with the snapshot's rule,\n"
    "type weights and hub caps when its spec changed them; NaN when unknown.\n"
    "Errors from graphd (e.g. NOT_FOUND) are printed with their status: exit 1.\n";

int run_export(ctl *c, const command *cmd, args *a) {
  int rc;
  if (a->npos < 1)
    return usage_error(cmd, "export needs what to export: cluster ID, entity TYPE KEY, "
                            "snapshot or ties");
  const char *what = a->pos[0];
  if (!a->out)
    return usage_error(cmd, "export needs -o FILE (or -o - for stdout)");
  if (strcmp(what, "ties") == 0)
    return export_ties(c, cmd, a);
  if (a->edge_format || a->evidence || a->nweights || a->ncaps || a->have_min_tie ||
      a->have_since || a->have_until)
    return usage_error(cmd, "--format, --evidence, --weight, --cap, --min-tie, --since and "
                            "--until are for export ties");
  ng_limits lim = {(uint32_t)a->max_sellers, (uint32_t)a->max_links, (uint32_t)a->max_nodes};
  ng_graph g;
  size_t nclusters = 0;
  if (strcmp(what, "cluster") == 0) {
    if (a->npos < 2)
      return usage_error(cmd, "export cluster needs a cluster ID");
    char *end;
    unsigned long long id = strtoull(a->pos[1], &end, 10);
    if (!a->pos[1][0] || *end || id == 0 || a->pos[1][0] == '-' || a->pos[1][0] == '+')
      return usage_error(cmd, "ID: expected a cluster id (1 or more), got '%s'", a->pos[1]);
    if ((rc = no_more_args(cmd, a, 2)))
      return rc;
    if (a->hops || a->have_min_risk || a->top)
      return usage_error(cmd, "--hops, --min-risk and --top are not for export cluster");
    ng_graph_init(&g);
    rc = ng_fetch_cluster(c, &g, a->snapshot, id, &lim);
  } else if (strcmp(what, "entity") == 0) {
    if (a->npos < 3)
      return usage_error(cmd, "export entity needs TYPE KEY");
    gd_etype t;
    if (gc_type_parse(a->pos[1], &t) != 0)
      return usage_error(cmd,
                         "unknown entity type '%s' (expected seller, address, "
                         "payment_account, device, phone, email or ip)",
                         a->pos[1]);
    if ((rc = no_more_args(cmd, a, 3)))
      return rc;
    if (a->hops > 3)
      return usage_error(cmd, "--hops: expected 1..3, got %ld", a->hops);
    if (a->snapshot || a->have_min_risk || a->top)
      return usage_error(cmd, "--snapshot, --min-risk and --top are not for export entity "
                              "(clusters are the latest snapshot's)");
    Graphd__V1__EntityRef ref = GRAPHD__V1__ENTITY_REF__INIT;
    ref.type = (Graphd__V1__EntityType)t;
    ref.key = a->pos[2];
    ng_graph_init(&g);
    rc = ng_fetch_entity(c, &g, &ref, a->hops ? (int)a->hops : 1, &lim);
  } else if (strcmp(what, "snapshot") == 0) {
    if ((rc = no_more_args(cmd, a, 1)))
      return rc;
    if (a->hops)
      return usage_error(cmd, "--hops is for export entity");
    ng_graph_init(&g);
    rc = ng_fetch_snapshot(c, &g, a->snapshot, a->have_min_risk ? a->min_risk : 0,
                           a->have_min_size ? a->min_size : 2,
                           a->top ? (uint32_t)a->top : DEFAULT_TOP, &lim, &nclusters);
  } else {
    return usage_error(cmd, "export: expected cluster, entity, snapshot or ties, got '%s'",
                       what);
  }
  if (rc) {
    ng_graph_free(&g);
    return rc;
  }
  ng_finish(&g, &lim);
  if ((rc = ng_fetch_evidence(c, &g))) {
    ng_graph_free(&g);
    return rc;
  }

  outfile of;
  if ((rc = outfile_open(&of, a->out))) {
    ng_graph_free(&g);
    return rc;
  }
  char err[256];
  if (ng_write_graphml(&g, of.f, err, sizeof err) != 0) {
    fprintf(stderr, "graphctl: writing GraphML: %s\n", err);
    rc = EX_IOERR;
  }
  rc = outfile_close(&of, rc);
  if (!rc) {
    size_t sellers = 0, direct = 0;
    for (size_t i = 0; i < g.nnodes; i++)
      sellers += g.nodes[i].seller;
    for (size_t i = 0; i < g.nedges; i++)
      direct += g.edges[i].direct;
    fprintf(stderr, "graphctl: %s: %zu sellers, %zu shared entities, %zu links%s%s\n",
            g.source, sellers, g.nnodes - sellers, g.nedges,
            outfile_is_stdout(a->out) ? "" : " to ", outfile_is_stdout(a->out) ? "" : a->out);
    if (g.cut)
      fprintf(stderr, "graphctl: cut: %s\n", g.cut_note);
    if (c->json && !outfile_is_stdout(a->out)) {
      json_object *o = jobj();
      jset(o, "source", jstr(g.source));
      jset(o, "snapshot_id", json_object_new_uint64(g.snapshot_id));
      jset(o, "sellers", json_object_new_uint64(sellers));
      jset(o, "entities", json_object_new_uint64(g.nnodes - sellers));
      jset(o, "edges", json_object_new_uint64(g.nedges));
      jset(o, "direct_links", json_object_new_uint64(direct));
      jset(o, "clusters", json_object_new_uint64(nclusters));
      jset(o, "cut", json_object_new_boolean(g.cut));
      jset(o, "cut_note", jstr(g.cut_note));
      jset(o, "file", jstr(a->out));
      print_json(o);
    }
  }
  ng_graph_free(&g);
  return rc;
}
