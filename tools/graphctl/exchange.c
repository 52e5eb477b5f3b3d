/*
 * graphctl export ties, graphctl import: the seller-seller ties out to an
 * engine outside graphd (ExportTies), and a membership it computed back in
 * as a snapshot (ImportSnapshot).
 */
#include "graphctl.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define M_TIES "/graphd.v1.SellerGraph/ExportTies"
#define M_IMPORT "/graphd.v1.SellerGraph/ImportSnapshot"

/* Rows an import message carries: 16 bytes each on the wire, ~1 MiB. */
#define IMPORT_BATCH 65536
/* The import's reply waits for its clustering job. */
#define IMPORT_DEADLINE_MS 3600000

int export_ties(ctl *c, const command *cmd, args *a) {
  int rc;
  if ((rc = no_more_args(cmd, a, 1)))
    return rc;
  if (a->snapshot || a->hops || a->have_min_risk || a->top)
    return usage_error(cmd, "--snapshot, --hops, --min-risk and --top are not for export ties");
  bool csv = a->edge_format && strcmp(a->edge_format, "csv") == 0;
  spec_buf sb;
  spec_from_args(a, &sb);
  Graphd__V1__ExportTiesRequest req = GRAPHD__V1__EXPORT_TIES_REQUEST__INIT;
  req.spec = &sb.spec;
  gc_status st;
  gc_sstream *s = NULL;
  double t0 = now_s();
  /* No deadline unless --timeout: the worker reads the whole graph first. */
  rc = gc_sstream_open(c->client, M_TIES, &req.base, a->timeout_set ? c->timeout_ms : 0, &s, &st);
  spec_buf_free(&sb);
  if (rc != 0)
    return report_status(c, &st);
  outfile of;
  if ((rc = outfile_open(&of, a->out))) {
    gc_sstream_free(s);
    return rc;
  }
  if (csv)
    fputs("src,dst,weight\n", of.f);
  uint64_t n = 0;
  for (;;) {
    ProtobufCMessage *m = NULL;
    if (gc_sstream_next(s, &graphd__v1__tie_batch__descriptor, &m, &st) != 0) {
      rc = report_status(c, &st);
      break;
    }
    if (!m)
      break;
    const Graphd__V1__TieBatch *b = (const Graphd__V1__TieBatch *)m;
    size_t k = b->n_seller_a;
    if (b->n_seller_b < k)
      k = b->n_seller_b;
    if (b->n_weight < k)
      k = b->n_weight;
    const char *sep = csv ? "," : " ";
    for (size_t i = 0; i < k; i++)
      fprintf(of.f, "%" PRIu64 "%s%" PRIu64 "%s%.17g\n", b->seller_a[i], sep, b->seller_b[i],
              sep, b->weight[i]);
    n += k;
    protobuf_c_message_free_unpacked(m, NULL);
  }
  gc_sstream_free(s);
  rc = outfile_close(&of, rc);
  if (!rc) {
    bool to_file = !outfile_is_stdout(a->out);
    fprintf(stderr, "graphctl: %" PRIu64 " ties in %.2f s%s%s\n", n, now_s() - t0,
            to_file ? " to " : "", to_file ? a->out : "");
  }
  return rc;
}

const optspec import_opts[] = {
    {"engine", true, O_ENGINE},       {"name", true, O_NAME},
    {"algorithm", true, O_ALGORITHM}, {"resolution", true, O_RESOLUTION},
    {"evidence", true, O_EVIDENCE},   {"weight", true, O_WEIGHT},
    {"cap", true, O_CAP},             {"min-tie", true, O_MIN_TIE},
    {"since", true, O_SINCE},         {"until", true, O_UNTIL},
    {"label", true, O_LABEL},         {NULL, false, 0},
};

const char import_help[] =
    "usage: graphctl import FILE [--engine NAME] [--name NAME] [SPEC OPTIONS]\n"
    "\n"
    "Makes a snapshot of a membership computed outside graphd\n"
    "(ImportSnapshot): graphd reads the graph, projects it under the spec,\n"
    "takes FILE's clusters instead of running an algorithm, gives them stable\n"
    "ids against the latest snapshot, and writes summaries, supply sources\n"
    "and drawings as a clustering job does. Waits for that job; prints it.\n"
    "FILE ('-' = stdin): one 'SELLER_ID CLUSTER' row a line, separated by a\n"
    "comma, tab or spaces; CLUSTER is any integer label. Blank lines and\n"
    "lines starting with '#' are skipped, and so is a first line that is not\n"
    "numbers (a header such as 'seller_id,cluster_id': graphctl assignments\n"
    "writes this format). Sellers the file does not name are singletons.\n"
    "  --engine NAME     who computed it, kept in the snapshot's manifest\n"
    "  --name NAME       the snapshot's name\n"
    "  SPEC OPTIONS      as for graphctl cluster; the projection options\n"
    "                    (--evidence, --weight, --cap, --min-tie, --since,\n"
    "                    --until) should be those the ties were exported with;\n"
    "                    --algorithm and --resolution only describe the run\n"
    "All or nothing: a row naming no seller of the graph, a seller given\n"
    "twice, or a bad line writes nothing; the error names the row (rows count\n"
    "from 0) or the line. Exit 1 if the job fails.\n";

/* Parses one row; false on a malformed line. */
static bool parse_row(char *line, uint64_t *ret_seller, int64_t *ret_label) {
  char *p = line, *end;
  while (isspace((unsigned char)*p))
    p++;
  if (!isdigit((unsigned char)*p))
    return false;
  errno = 0;
  unsigned long long s = strtoull(p, &end, 10);
  if (errno || end == p)
    return false;
  p = end;
  while (isspace((unsigned char)*p))
    p++;
  if (*p == ',')
    p++;
  while (isspace((unsigned char)*p))
    p++;
  long long l = strtoll(p, &end, 10);
  if (errno || end == p)
    return false;
  p = end;
  while (isspace((unsigned char)*p))
    p++;
  if (*p)
    return false;
  *ret_seller = s;
  *ret_label = l;
  return true;
}

int run_import(ctl *c, const command *cmd, args *a) {
  int rc;
  if (a->npos < 1)
    return usage_error(cmd, "import needs FILE (or - for stdin)");
  if ((rc = no_more_args(cmd, a, 1)))
    return rc;
  const char *path = a->pos[0];
  FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
  if (!f) {
    fprintf(stderr, "graphctl: %s: %s\n", path, strerror(errno));
    return EXIT_NOINPUT;
  }
  uint64_t *sellers = NULL, n = 0, cap = 0;
  int64_t *labels = NULL;
  char *line = NULL;
  size_t lcap = 0;
  ssize_t len;
  uint64_t lineno = 0;
  bool first = true;
  rc = EXIT_OK;
  while ((len = getline(&line, &lcap, f)) > 0) {
    lineno++;
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
      line[--len] = 0;
    char *p = line;
    while (isspace((unsigned char)*p))
      p++;
    if (!*p || *p == '#')
      continue;
    uint64_t s;
    int64_t l;
    if (!parse_row(p, &s, &l)) {
      if (first && !isdigit((unsigned char)*p)) {
        first = false; /* a header */
        continue;
      }
      fprintf(stderr, "graphctl: %s:%" PRIu64 ": expected 'SELLER_ID CLUSTER', got '%.80s'\n",
              path, lineno, p);
      rc = EXIT_DATAERR;
      break;
    }
    first = false;
    if (n == cap) {
      cap = cap ? cap * 2 : 65536;
      uint64_t *ns = realloc(sellers, cap * sizeof *ns);
      int64_t *nl = ns ? realloc(labels, cap * sizeof *nl) : NULL;
      if (ns)
        sellers = ns;
      if (!ns || !nl)
        die_nomem();
      labels = nl;
    }
    sellers[n] = s;
    labels[n] = l;
    n++;
  }
  free(line);
  if (f != stdin)
    fclose(f);
  if (!rc && n == 0) {
    fprintf(stderr, "graphctl: %s: no rows\n", path);
    rc = EXIT_DATAERR;
  }
  if (rc) {
    free(sellers);
    free(labels);
    return rc;
  }
  spec_buf sb;
  spec_from_args(a, &sb);
  Graphd__V1__ImportHeader h = GRAPHD__V1__IMPORT_HEADER__INIT;
  h.spec = &sb.spec;
  h.engine = (char *)(a->engine ? a->engine : "");
  h.rows = n;
  gc_stream_opts so = {.deadline_ms = a->timeout_set ? (int)c->timeout_ms : IMPORT_DEADLINE_MS};
  gc_stream *s = NULL;
  gc_status st;
  double t0 = now_s();
  if (gc_stream_open(c->client, M_IMPORT, &so, &s, &st) != 0) {
    rc = report_status(c, &st);
  } else {
    for (uint64_t i = 0; i < n && !rc; i += IMPORT_BATCH) {
      uint64_t k = n - i < IMPORT_BATCH ? n - i : IMPORT_BATCH;
      Graphd__V1__ImportSnapshotRequest m = GRAPHD__V1__IMPORT_SNAPSHOT_REQUEST__INIT;
      m.header = i == 0 ? &h : NULL;
      m.seller_ids = sellers + i;
      m.n_seller_ids = k;
      m.clusters = labels + i;
      m.n_clusters = k;
      if (gc_stream_send(s, &m.base, &st) != 0)
        rc = report_status(c, &st);
    }
    ProtobufCMessage *reply = NULL;
    if (!rc) {
      if (gc_stream_finish(s, &graphd__v1__job__descriptor, &reply, &st) != 0)
        rc = report_status(c, &st);
      else {
        fprintf(stderr, "graphctl: %" PRIu64 " rows imported in %.2f s\n", n, now_s() - t0);
        rc = job_exit(c, (const Graphd__V1__Job *)reply);
        protobuf_c_message_free_unpacked(reply, NULL);
      }
    }
    gc_stream_free(s);
  }
  spec_buf_free(&sb);
  free(sellers);
  free(labels);
  return rc;
}
