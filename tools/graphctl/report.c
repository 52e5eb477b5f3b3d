/*
 * graphctl report: one self-contained HTML page about a snapshot (no
 * external resources, no JavaScript): its manifest, the cluster size and
 * risk distributions as inline SVG plots, the riskiest clusters that hold
 * a flagged seller with their supply sources, and a drawing and member
 * list of each of them (netgraph.h fetches the seller-entity graph, igraph
 * lays it out with a fixed seed, this file draws it as SVG). A cluster
 * without a flagged seller is never listed as risky, however few there
 * are: the page says how many there were.
 *
 * Every text that comes from graphd (keys, labels, names) goes through
 * put_text(), which escapes it for HTML and SVG.
 *
 * Geometry: plots and drawings have fixed sizes, and each carries a frame
 * of its own colour (FRAME_*), so a screenshot can be checked by finding
 * the frames (tests/blackbox/test_report.py does).
 */
#include "netgraph.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define M_SNAPSHOT SVC "GetSnapshot"
#define M_CLUSTERS SVC "ListClusters"

#define DEFAULT_TOP 10
#define MEMBER_LIST_MAX 150 /* names per member list; the rest are counted */
#define LABEL_ALL_MAX 30    /* drawings up to this many nodes label every node */
#define DEFAULT_MAX_NODES 200
#define DEFAULT_MAX_CLUSTERS 100000
#define DRAW_SEED 1

/* Plot and drawing sizes (CSS pixels). */
#define PLOT_W 560
#define PLOT_H 320
#define DRAW_W 560
#define DRAW_H 470
#define LEGEND_H 62

/* Frame colours: unique in the page. */
#define FRAME_SIZE "#3d0a5c"
#define FRAME_RISK "#5c0a3d"
static const char *const frame_draw[] = {"#0a5c3d", "#0a3d5c", "#5c3d0a", "#3d5c0a"};
#define FRAME_DRAW_OTHER "#777777"

const optspec report_opts[] = {
    {"out", true, O_OUT},
    {"o", true, O_OUT},
    {"snapshot", true, O_SNAPSHOT},
    {"top", true, O_TOP},
    {"min-size", true, O_MIN_SIZE},
    {"max-nodes", true, O_MAX_NODES},
    {"max-clusters", true, O_MAX_CLUSTERS},
    {NULL, false, 0},
};

const char report_help[] =
    "usage: graphctl report [--snapshot N] [--top N] -o FILE.html\n"
    "\n"
    "Writes one self-contained HTML page (inline SVG, no scripts, nothing\n"
    "fetched from anywhere) about a snapshot: its manifest; the cluster size\n"
    "and risk distributions; the riskiest clusters that hold a flagged seller,\n"
    "with their supply sources (the shared evidence most of their sellers\n"
    "use); and a drawing and member list of each of those clusters: sellers\n"
    "and shared entities coloured by type, flagged sellers red and labelled,\n"
    "laid out by igraph (Fruchterman-Reingold, fixed seed: the same snapshot\n"
    "gives the same page).\n"
    "  -o, --out FILE     the output (required; '-' = stdout), written to\n"
    "                     FILE.tmp and renamed when complete\n"
    "  --snapshot N       the snapshot (default: the latest)\n"
    "  --top N            clusters in the table and drawn (default 10); only\n"
    "                     clusters with a flagged seller, so maybe fewer\n"
    "  --min-size N       only clusters of at least N sellers (default 2)\n"
    "  --max-nodes N      nodes per drawing (default 200); a larger cluster is\n"
    "                     cut (its most shared entities kept), and says so\n"
    "  --max-clusters N   clusters read for the distributions (default 100000)\n";

/* Type colours (Okabe-Ito palette), by graphd.v1.EntityType. */
static const char *const type_colour[8] = {
    "#bbbbbb", "#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#f0e442", "#8c564b",
};
/* Red, and far from every type colour (the address orange above all). */
#define FLAGGED_COLOUR "#d7191c"

static const char *tcolour(int t) {
  return t >= 1 && t <= 7 ? type_colour[t] : type_colour[0];
}

/* ------------------------------------------------------------------ */
/* Escaping                                                             */

/* Writes s escaped for HTML text and attribute values (& < > " '); control
 * characters become U+FFFD; at most max bytes of s (0 = all), then "…". */
static void put_text(FILE *f, const char *s, size_t max) {
  size_t n = 0;
  for (const unsigned char *p = (const unsigned char *)s; *p; p++, n++) {
    if (max && n >= max && (*p & 0xc0) != 0x80) {
      fputs("&#8230;", f);
      return;
    }
    switch (*p) {
    case '&': fputs("&amp;", f); break;
    case '<': fputs("&lt;", f); break;
    case '>': fputs("&gt;", f); break;
    case '"': fputs("&quot;", f); break;
    case '\'': fputs("&#39;", f); break;
    default:
      if (*p < 0x20 || *p == 0x7f)
        fputs("&#xFFFD;", f);
      else
        fputc(*p, f);
    }
  }
}

/* ------------------------------------------------------------------ */
/* Plots                                                                */

typedef struct bar {
  char label[48];
  uint64_t count;
} bar;

/* A bar chart with a log10(1 + count) y axis. marker_x in [0, 1] draws a
 * dashed vertical line at that fraction of the x axis (< 0: none). */
static void put_bars(FILE *f, const char *id, const char *frame, const char *title,
                     const char *xlabel, const bar *bars, size_t n, const char *colour,
                     double marker_x, const char *marker_label) {
  const double L = 62, R = 16, T = 40, B = 64;
  const double pw = PLOT_W - L - R, ph = PLOT_H - T - B;
  uint64_t max = 1;
  for (size_t i = 0; i < n; i++)
    if (bars[i].count > max)
      max = bars[i].count;
  int decades = (int)ceil(log10((double)max + 1));
  if (decades < 1)
    decades = 1;
  double top = (double)decades;
  fprintf(f,
          "<svg id=\"%s\" class=\"plot\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" "
          "height=\"%d\" viewBox=\"0 0 %d %d\" role=\"img\">\n",
          id, PLOT_W, PLOT_H, PLOT_W, PLOT_H);
  fprintf(f,
          "<rect x=\"2\" y=\"2\" width=\"%d\" height=\"%d\" fill=\"#ffffff\" stroke=\"%s\" "
          "stroke-width=\"4\" shape-rendering=\"crispEdges\"/>\n",
          PLOT_W - 4, PLOT_H - 4, frame);
  fprintf(f, "<text x=\"%d\" y=\"24\" text-anchor=\"middle\" class=\"pt\">", PLOT_W / 2);
  put_text(f, title, 0);
  fputs("</text>\n", f);
  /* y axis, ticks at 1, 10, 100 ... */
  fprintf(f, "<g class=\"axis\"><line x1=\"%g\" y1=\"%g\" x2=\"%g\" y2=\"%g\"/>", L, T, L,
          T + ph);
  fprintf(f, "<line x1=\"%g\" y1=\"%g\" x2=\"%g\" y2=\"%g\"/>", L, T + ph, L + pw, T + ph);
  for (int d = 0; d <= decades; d++) {
    double v = pow(10, d);
    double y = T + ph - ph * log10(v + 1) / top;
    if (log10(v + 1) > top + 1e-9)
      break;
    fprintf(f,
            "<line x1=\"%g\" y1=\"%.1f\" x2=\"%g\" y2=\"%.1f\"/><line class=\"grid\" x1=\"%g\" "
            "y1=\"%.1f\" x2=\"%g\" y2=\"%.1f\"/><text x=\"%g\" y=\"%.1f\" "
            "text-anchor=\"end\">%.0f</text>",
            L - 5, y, L, y, L, y, L + pw, y, L - 8, y + 4, v);
  }
  fprintf(f,
          "<text x=\"16\" y=\"%g\" text-anchor=\"middle\" transform=\"rotate(-90 16 %g)\">"
          "clusters (log scale)</text>",
          T + ph / 2, T + ph / 2);
  fprintf(f, "<text x=\"%g\" y=\"%d\" text-anchor=\"middle\">", L + pw / 2, PLOT_H - 12);
  put_text(f, xlabel, 0);
  fputs("</text></g>\n", f);
  /* bars */
  double bw = n ? pw / (double)n : pw;
  for (size_t i = 0; i < n; i++) {
    double x = L + bw * (double)i;
    double h = ph * log10((double)bars[i].count + 1) / top;
    fprintf(f,
            "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\"><title>%s: "
            "%" PRIu64 " clusters</title></rect>",
            x + 1, T + ph - h, bw > 3 ? bw - 2 : bw, h, colour, bars[i].label, bars[i].count);
    if (bars[i].count && bw >= 14)
      fprintf(f, "<text class=\"bl\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%" PRIu64
                 "</text>",
              x + bw / 2, T + ph - h - 3, bars[i].count);
    bool show = n <= 12 || i % 4 == 0 || i == n - 1;
    if (show)
      fprintf(f, "<text class=\"xl\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>",
              n <= 12 ? x + bw / 2 : x, T + ph + 16, bars[i].label);
  }
  if (n > 12)
    fprintf(f, "<text class=\"xl\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">1</text>",
            L + pw, T + ph + 16);
  if (marker_x >= 0) {
    double x = L + pw * marker_x;
    fprintf(f,
            "<line x1=\"%.1f\" y1=\"%g\" x2=\"%.1f\" y2=\"%g\" stroke=\"#222\" "
            "stroke-dasharray=\"4 3\"/><text x=\"%.1f\" y=\"%g\" class=\"bl\" "
            "text-anchor=\"end\">- - - ",
            x, T - 4, x, T + ph, L + pw - 4, T + 8);
    put_text(f, marker_label, 0);
    fputs("</text>", f);
  }
  fputs("\n</svg>\n", f);
}

/* ------------------------------------------------------------------ */
/* Drawings                                                             */

static bool is_source(const Graphd__V1__ClusterSummary *s, uint64_t id) {
  for (size_t i = 0; s && i < s->n_top_shared; i++)
    if (s->top_shared[i]->entity && s->top_shared[i]->entity->id == id)
      return true;
  return false;
}

static void put_legend(FILE *f, double y) {
  static const char *const names[8] = {"", "seller", "address", "payment account", "device",
                                        "phone", "e-mail", "ip"};
  double x = 12;
  fprintf(f, "<g class=\"legend\" transform=\"translate(0 %.0f)\">", y);
  for (int t = 1; t <= 7; t++) {
    if (t == 1)
      fprintf(f, "<circle cx=\"%.0f\" cy=\"12\" r=\"6\" fill=\"%s\" stroke=\"#333\"/>", x + 6,
              tcolour(t));
    else
      fprintf(f, "<rect x=\"%.0f\" y=\"6\" width=\"12\" height=\"12\" fill=\"%s\" "
                 "stroke=\"#333\"/>",
              x, tcolour(t));
    fprintf(f, "<text x=\"%.0f\" y=\"16\">%s</text>", x + 16, names[t]);
    x += 16 + 7.2 * (double)strlen(names[t]) + 14;
  }
  fprintf(f,
          "<circle cx=\"18\" cy=\"38\" r=\"6\" fill=\"%s\" stroke=\"#000\" stroke-width=\"2.5\"/>"
          "<text x=\"28\" y=\"42\">flagged seller</text>"
          "<rect x=\"132\" y=\"32\" width=\"12\" height=\"12\" fill=\"#ffffff\" stroke=\"#333\" "
          "stroke-dasharray=\"3 2\"/><text x=\"150\" y=\"42\">hub (not evidence)</text>"
          "<line x1=\"290\" y1=\"38\" x2=\"316\" y2=\"38\" stroke=\"#333\" "
          "stroke-dasharray=\"5 3\" stroke-width=\"1.5\"/><text x=\"322\" y=\"42\">direct "
          "seller link</text>",
          FLAGGED_COLOUR);
  fputs("</g>", f);
}

static void put_node_title(FILE *f, const ng_node *n) {
  char t1[32], t2[32];
  fputs("<title>", f);
  fprintf(f, "%s ", gd_type_name(n->type));
  put_text(f, n->key, 0);
  if (n->labels[0]) {
    fputs(" [", f);
    put_text(f, n->labels, 0);
    fputs("]", f);
  }
  if (!n->seller)
    fprintf(f, " — used by %" PRIu32 " sellers here, %" PRIu64 " overall%s", n->users,
            n->seller_count, n->hub ? " (hub)" : "");
  fprintf(f, "; seen %s .. %s</title>", gc_time_format(n->first_seen, t1, sizeof t1),
          gc_time_format(n->last_seen, t2, sizeof t2));
}

/* The drawing of one cluster: an SVG of DRAW_W x DRAW_H. */
static int put_drawing(FILE *f, const ng_graph *g, const Graphd__V1__ClusterSummary *s,
                       size_t index) {
  char err[256];
  double *xy = xcalloc(2 * (g->nnodes ? g->nnodes : 1), sizeof *xy);
  if (ng_layout(g, DRAW_SEED, xy, err, sizeof err) != 0) {
    free(xy);
    fprintf(stderr, "graphctl: layout of cluster %" PRIu64 ": %s\n", s->id, err);
    return EXIT_SOFTWARE;
  }
  const char *frame = index < sizeof frame_draw / sizeof frame_draw[0] ? frame_draw[index]
                                                                        : FRAME_DRAW_OTHER;
  const double pad = 26, area_h = DRAW_H - LEGEND_H;
  fprintf(f,
          "<svg id=\"draw-%" PRIu64 "\" class=\"drawing%s\" xmlns=\"http://www.w3.org/2000/svg\" "
          "width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" role=\"img\">\n",
          s->id, g->nnodes > LABEL_ALL_MAX ? " big" : "", DRAW_W, DRAW_H, DRAW_W, DRAW_H);
  fprintf(f,
          "<rect x=\"2\" y=\"2\" width=\"%d\" height=\"%d\" fill=\"#ffffff\" stroke=\"%s\" "
          "stroke-width=\"4\" shape-rendering=\"crispEdges\"/>\n",
          DRAW_W - 4, DRAW_H - 4, frame);
#define PX(i) (pad + xy[2 * (i)] * (DRAW_W - 2 * pad))
#define PY(i) (pad + xy[2 * (i) + 1] * (area_h - 2 * pad))
  fputs("<g class=\"edges\">", f);
  for (size_t i = 0; i < g->nedges; i++) {
    const ng_edge *e = &g->edges[i];
    fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"%s/>", PX(e->a), PY(e->a),
            PX(e->b), PY(e->b), e->direct ? " class=\"direct\"" : "");
  }
  fputs("</g>\n<g class=\"nodes\">", f);
  double r = g->nnodes > 120 ? 4.5 : g->nnodes > 50 ? 6 : 8;
  for (size_t i = 0; i < g->nnodes; i++) {
    const ng_node *n = &g->nodes[i];
    if (n->seller) {
      fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"%.1f\" fill=\"%s\" %s>", PX(i), PY(i), r,
              n->flagged ? FLAGGED_COLOUR : tcolour(n->type),
              n->flagged ? "stroke=\"#000\" stroke-width=\"2.5\" class=\"flagged\""
                         : "stroke=\"#333\"");
      put_node_title(f, n);
      fputs("</circle>", f);
    } else {
      double side = 2 * r;
      fprintf(f,
              "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\" "
              "stroke=\"#333\"%s>",
              PX(i) - r, PY(i) - r, side, side, n->hub ? "#ffffff" : tcolour(n->type),
              n->hub ? " stroke-dasharray=\"3 2\"" : "");
      put_node_title(f, n);
      fputs("</rect>", f);
    }
  }
  fputs("</g>\n<g class=\"labels\">", f);
  for (size_t i = 0; i < g->nnodes; i++) {
    const ng_node *n = &g->nodes[i];
    bool label = g->nnodes <= LABEL_ALL_MAX || (n->seller ? n->flagged : is_source(s, n->id));
    if (!label)
      continue;
    bool right = xy[2 * i] > 0.7; /* near the right edge: text to the left */
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\"%s%s>", right ? PX(i) - r - 2 : PX(i) + r + 2,
            PY(i) - r, n->seller ? n->flagged ? " class=\"fl\"" : "" : " class=\"src\"",
            right ? " text-anchor=\"end\"" : "");
    put_text(f, n->key, 28);
    fputs("</text>", f);
  }
  fputs("</g>\n", f);
#undef PX
#undef PY
  fprintf(f, "<line x1=\"2\" y1=\"%.0f\" x2=\"%d\" y2=\"%.0f\" stroke=\"#dddddd\"/>", area_h,
          DRAW_W - 2, area_h);
  put_legend(f, area_h + 4);
  fputs("\n</svg>\n", f);
  free(xy);
  return EXIT_OK;
}

/* ------------------------------------------------------------------ */
/* Page                                                                 */

static const char css[] =
    "body{font-family:'DejaVu Sans',Arial,sans-serif;font-size:14px;color:#222;margin:16px;"
    "max-width:1180px;background:#fff}\n"
    "h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:22px 0 8px;border-bottom:"
    "1px solid #ccc}h3{font-size:15px;margin:0 0 4px}\n"
    "table{border-collapse:collapse}td,th{padding:3px 8px;text-align:left;vertical-align:top;"
    "border-bottom:1px solid #eee}th{background:#f4f4f4}\n"
    "table.kv td:first-child{color:#555;white-space:nowrap}\n"
    "td.num{text-align:right;font-variant-numeric:tabular-nums}\n"
    ".plots,.drawings{display:flex;flex-wrap:wrap;gap:20px}\n"
    ".card{width:560px}.note{color:#a33}.sub{color:#555;margin:0}\n"
    ".sw{display:inline-block;width:10px;height:10px;border:1px solid #333;margin-right:4px}\n"
    "svg text{font-family:'DejaVu Sans',Arial,sans-serif;font-size:11px;fill:#222}\n"
    "svg .pt{font-size:14px;font-weight:bold}svg .axis line{stroke:#333}\n"
    "svg line.grid{stroke:#e4e4e4}svg .bl{font-size:10px}svg .xl{font-size:10px}\n"
    "svg .edges line{stroke:#9a9a9a;stroke-width:1}\n"
    "svg .edges line.direct{stroke:#333;stroke-dasharray:5 3;stroke-width:1.5}\n"
    "svg .labels text{font-size:10px}svg .labels text.src{font-weight:bold}\n"
    "svg .labels text.fl{fill:#a00000}\n"
    "svg.big .edges line{stroke:#b4b4b4;stroke-width:0.6}\n"
    "p.members{font-size:12px;margin:4px 0 0;line-height:1.5}\n"
    "p.members .fl{color:#a00000;font-weight:bold}p.members .lb{color:#666}\n"
    "ul.src{margin:0;padding-left:16px}\n";

static void kv(FILE *f, const char *k, const char *v) {
  fprintf(f, "<tr><td>%s</td><td>", k);
  put_text(f, v, 0);
  fputs("</td></tr>\n", f);
}

static void put_manifest(FILE *f, const Graphd__V1__SnapshotManifest *m) {
  char b[1024], t[40];
  const Graphd__V1__ClusteringSpec *sp = m->spec;
  fputs("<section id=\"manifest\"><h2>Manifest</h2><table class=\"kv\">\n", f);
  snprintf(b, sizeof b, "%" PRIu64, m->id);
  kv(f, "snapshot", b);
  kv(f, "name", sp && sp->name[0] ? sp->name : "-");
  kv(f, "created", gc_time_format(m->created_at, t, sizeof t));
  char it[32], res[32];
  if (sp && sp->iterations)
    snprintf(it, sizeof it, "%" PRIu32, sp->iterations);
  else
    snprintf(it, sizeof it, "default");
  if (sp && sp->resolution > 0)
    snprintf(res, sizeof res, "%g", sp->resolution);
  else
    snprintf(res, sizeof res, "default");
  snprintf(b, sizeof b, "%s, resolution %s, seed %" PRIu64 ", iterations %s, min tie weight %g",
           algo_name(sp ? sp->algorithm : 0), res, m->seed, it, sp ? sp->min_tie_weight : 0);
  kv(f, "algorithm", b);
  b[0] = 0;
  for (size_t i = 0; sp && i < sp->n_flagged_labels; i++)
    snprintf(b + strlen(b), sizeof b - strlen(b), "%s%s", i ? ", " : "", sp->flagged_labels[i]);
  kv(f, "flagged labels", b[0] ? b : "counterfeit (default)");
  b[0] = 0;
  for (size_t i = 0; sp && i < sp->n_type_weights; i++)
    snprintf(b + strlen(b), sizeof b - strlen(b), "%s%s=%g", i ? ", " : "",
             gd_type_name((int)sp->type_weights[i]->type), sp->type_weights[i]->weight);
  for (size_t i = 0; sp && i < sp->n_hub_caps; i++)
    snprintf(b + strlen(b), sizeof b - strlen(b), "%scap %s=%" PRIu64, b[0] ? ", " : "",
             gd_type_name((int)sp->hub_caps[i]->type), sp->hub_caps[i]->max_sellers);
  if (sp && sp->window && (sp->window->since || sp->window->until)) {
    char t1[40], t2[40];
    snprintf(b + strlen(b), sizeof b - strlen(b), "%swindow %s .. %s", b[0] ? ", " : "",
             gc_time_format(sp->window->since, t1, sizeof t1),
             gc_time_format(sp->window->until, t2, sizeof t2));
  }
  kv(f, "weights, caps, window", b[0] ? b : "defaults");
  kv(f, "input checksum (SHA-256)", m->input_checksum);
  snprintf(b, sizeof b, "%" PRIu64 " sellers, %" PRIu64 " flagged (base rate p = %.4f), %" PRIu64
                        " ties, %" PRIu64 " hubs skipped",
           m->sellers, m->flagged_sellers, m->risk_base_rate, m->ties, m->hubs_skipped);
  kv(f, "input", b);
  snprintf(b, sizeof b, "%" PRIu64 " clusters, objective %.6g, modularity %.4f", m->clusters,
           m->objective, m->modularity);
  kv(f, "result", b);
  b[0] = 0;
  for (size_t i = 0; i < m->n_timings; i++)
    snprintf(b + strlen(b), sizeof b - strlen(b), "%s%s %.3f s", i ? ", " : "",
             m->timings[i]->stage, m->timings[i]->seconds);
  kv(f, "stage times", b[0] ? b : "-");
  char hb[64];
  kv(f, "worker peak memory", human_bytes(m->peak_rss_bytes, hb, sizeof hb));
  if (m->previous_snapshot_id)
    snprintf(b, sizeof b, "%" PRIu64, m->previous_snapshot_id);
  kv(f, "previous snapshot", m->previous_snapshot_id ? b : "-");
  fputs("</table></section>\n", f);
}

/* Sizes and risks of the clusters with 2+ sellers (ListClusters by size). */
typedef struct dist {
  uint64_t *size;
  double *risk;
  size_t n, cap;
  size_t n_flagged; /* of them, clusters with a flagged seller */
  bool cut;
} dist;

/* One page of ListClusters of snapshot sid (token "" = the first). */
static int list_page(ctl *c, uint64_t sid, Graphd__V1__ClusterOrder order, uint64_t min_size,
                     size_t limit, char *token, Graphd__V1__ListClustersReply **ret) {
  Graphd__V1__ListClustersRequest req = GRAPHD__V1__LIST_CLUSTERS_REQUEST__INIT;
  req.snapshot_id = sid;
  req.order = order;
  req.min_size = min_size;
  req.limit = (uint32_t)(limit < 1000 ? limit : 1000);
  req.page_token = token;
  *ret = NULL;
  return rpc(c, M_CLUSTERS, &req.base, &graphd__v1__list_clusters_reply__descriptor,
             (ProtobufCMessage **)ret);
}

static int read_dist(ctl *c, uint64_t sid, size_t max, dist *d) {
  char token[512] = "";
  for (;;) {
    Graphd__V1__ListClustersReply *rep;
    int rc = list_page(c, sid, GRAPHD__V1__CLUSTER_ORDER__CLUSTER_ORDER_SIZE, 2, max - d->n,
                       token, &rep);
    if (rc)
      return rc;
    if (d->n + rep->n_clusters > d->cap) {
      d->cap = 2 * (d->n + rep->n_clusters);
      d->size = realloc(d->size, d->cap * sizeof *d->size);
      d->risk = realloc(d->risk, d->cap * sizeof *d->risk);
      if (!d->size || !d->risk)
        die_nomem();
    }
    for (size_t i = 0; i < rep->n_clusters; i++) {
      d->size[d->n] = rep->clusters[i]->size;
      d->risk[d->n++] = rep->clusters[i]->risk;
      d->n_flagged += rep->clusters[i]->flagged > 0;
    }
    snprintf(token, sizeof token, "%s", rep->next_page_token);
    graphd__v1__list_clusters_reply__free_unpacked(rep, NULL);
    if (!token[0])
      return EXIT_OK;
    if (d->n >= max) {
      d->cut = true;
      return EXIT_OK;
    }
  }
}

/*
 * The riskiest clusters of at least min_size sellers that hold a flagged
 * seller, riskiest first: ListClusters by risk, paged, passing over the
 * clusters without one, until top are found, the list ends or max
 * clusters were read (then *cut). The summaries point into the reply
 * pages kept in t->pages (free with free_top).
 */
typedef struct toplist {
  const Graphd__V1__ClusterSummary **c;
  size_t n;
  Graphd__V1__ListClustersReply **pages;
  size_t npages;
  bool cut;
} toplist;

static void free_top(toplist *t) {
  for (size_t i = 0; i < t->npages; i++)
    graphd__v1__list_clusters_reply__free_unpacked(t->pages[i], NULL);
  free(t->pages);
  free(t->c);
}

static int read_top(ctl *c, uint64_t sid, uint64_t min_size, size_t top, size_t max,
                    toplist *t) {
  char token[512] = "";
  size_t read = 0;
  t->c = xcalloc(top ? top : 1, sizeof *t->c);
  while (t->n < top) {
    Graphd__V1__ListClustersReply *rep;
    int rc = list_page(c, sid, GRAPHD__V1__CLUSTER_ORDER__CLUSTER_ORDER_RISK, min_size,
                       top - t->n < 20 ? 100 : 1000, token, &rep);
    if (rc)
      return rc;
    size_t before = t->n;
    for (size_t i = 0; i < rep->n_clusters && t->n < top; i++)
      if (rep->clusters[i]->flagged > 0)
        t->c[t->n++] = rep->clusters[i];
    read += rep->n_clusters;
    snprintf(token, sizeof token, "%s", rep->next_page_token);
    if (t->n > before) {
      t->pages = realloc(t->pages, (t->npages + 1) * sizeof *t->pages);
      if (!t->pages)
        die_nomem();
      t->pages[t->npages++] = rep;
    } else {
      graphd__v1__list_clusters_reply__free_unpacked(rep, NULL);
    }
    if (!token[0])
      break;
    if (read >= max && t->n < top) {
      t->cut = true;
      break;
    }
  }
  return EXIT_OK;
}

/* The members of a drawn cluster, flagged first, then by key, with their
 * labels: at most MEMBER_LIST_MAX names, the rest counted. */
typedef struct member_ref {
  const ng_node *n;
} member_ref;

static int cmp_member(const void *pa, const void *pb) {
  const ng_node *a = ((const member_ref *)pa)->n, *b = ((const member_ref *)pb)->n;
  if (a->flagged != b->flagged)
    return a->flagged ? -1 : 1;
  return strverscmp(a->key, b->key); /* s9 before s10 */
}

static void put_members(FILE *f, const ng_graph *g, const Graphd__V1__ClusterSummary *s) {
  member_ref *m = xcalloc(g->nnodes ? g->nnodes : 1, sizeof *m);
  size_t n = 0;
  for (size_t i = 0; i < g->nnodes; i++)
    if (g->nodes[i].seller)
      m[n++].n = &g->nodes[i];
  qsort(m, n, sizeof *m, cmp_member);
  fprintf(f, "<p class=\"members\" id=\"members-%" PRIu64 "\"><b>Members</b> (%" PRIu64
             ", flagged first): ",
          s->id, s->size);
  size_t shown = n < MEMBER_LIST_MAX ? n : MEMBER_LIST_MAX;
  for (size_t i = 0; i < shown; i++) {
    const ng_node *x = m[i].n;
    fputs(i ? ", " : "", f);
    fputs(x->flagged ? "<span class=\"fl\">" : "<span>", f);
    put_text(f, x->key, 0);
    fputs("</span>", f);
    if (x->labels[0]) {
      fputs(" <span class=\"lb\">[", f);
      put_text(f, x->labels, 60);
      fputs("]</span>", f);
    }
  }
  if (s->size > shown)
    fprintf(f, " &#8230; and %" PRIu64 " more (graphctl cluster %" PRIu64 " lists them all)",
            s->size - shown, s->id);
  fputs(".</p>\n", f);
  free(m);
}

static void put_distributions(FILE *f, const Graphd__V1__SnapshotManifest *m, const dist *d) {
  /* Sizes: 1, 2, 3-4, 5-8, ... */
  bar sb[40];
  size_t nsb = 2;
  memset(sb, 0, sizeof sb);
  snprintf(sb[0].label, sizeof sb[0].label, "1");
  snprintf(sb[1].label, sizeof sb[1].label, "2");
  uint64_t in_multi = 0, maxsize = 2;
  for (size_t i = 0; i < d->n; i++) {
    in_multi += d->size[i];
    if (d->size[i] > maxsize)
      maxsize = d->size[i];
  }
  for (uint64_t lo = 3, hi = 4; lo <= maxsize && nsb < 40; lo = hi + 1, hi *= 2, nsb++) {
    if (hi > lo)
      snprintf(sb[nsb].label, sizeof sb[nsb].label, "%" PRIu64 "-%" PRIu64, lo, hi);
    else
      snprintf(sb[nsb].label, sizeof sb[nsb].label, "%" PRIu64, lo);
  }
  for (size_t i = 0; i < d->n; i++) {
    uint64_t s = d->size[i];
    size_t b = s <= 2 ? (size_t)s - 1 : 2;
    for (uint64_t hi = 4; s > hi && b < nsb - 1; hi *= 2)
      b++;
    sb[b].count++;
  }
  uint64_t singles = m->clusters > d->n ? m->clusters - d->n : 0;
  sb[0].count = d->cut ? 0 : singles;
  /* Risks: 20 bins of 0.05. */
  bar rb[20];
  memset(rb, 0, sizeof rb);
  for (int i = 0; i < 20; i++)
    snprintf(rb[i].label, sizeof rb[i].label, "%.2f", i * 0.05);
  for (size_t i = 0; i < d->n; i++) {
    int b = (int)(d->risk[i] * 20);
    rb[b < 0 ? 0 : b > 19 ? 19 : b].count++;
  }
  char mk[64];
  snprintf(mk, sizeof mk, "base rate p = %.4f", m->risk_base_rate);
  fputs("<section id=\"distributions\"><h2>Distributions</h2><div class=\"plots\">\n", f);
  put_bars(f, "plot-size", FRAME_SIZE, "Cluster sizes", "cluster size (sellers)", sb, nsb,
           "#0072b2", -1, NULL);
  put_bars(f, "plot-risk", FRAME_RISK, "Cluster risk (clusters of 2+ sellers)",
           "risk = (flagged + 5p) / (size + 5)", rb, 20, "#d55e00",
           m->risk_base_rate >= 0 && m->risk_base_rate <= 1 ? m->risk_base_rate : -1, mk);
  fputs("</div>\n", f);
  fprintf(f,
          "<p id=\"dist-note\">%" PRIu64 " clusters: %zu of 2 or more sellers (%" PRIu64
          " sellers; %zu of these clusters hold a flagged seller), %" PRIu64 " singletons.",
          m->clusters, d->n, in_multi, d->n_flagged, singles);
  if (d->cut)
    fprintf(f, " <span class=\"note\">Cut: only the %zu largest clusters were read "
               "(--max-clusters); singletons are not shown.</span>",
            d->n);
  fputs("</p></section>\n", f);
}

static void put_sources(FILE *f, const Graphd__V1__ClusterSummary *s) {
  if (!s->n_top_shared) {
    fputs("-", f);
    return;
  }
  fputs("<ul class=\"src\">", f);
  for (size_t i = 0; i < s->n_top_shared; i++) {
    const Graphd__V1__SupplySource *x = s->top_shared[i];
    if (!x->entity)
      continue;
    fprintf(f, "<li><span class=\"sw\" style=\"background:%s\"></span>%s ",
            tcolour((int)x->entity->type), gd_type_name((int)x->entity->type));
    fputs("<b>", f);
    put_text(f, x->entity->key, 80);
    fprintf(f, "</b>: %" PRIu64 " of %" PRIu64 " sellers, %" PRIu64 " overall%s</li>",
            x->cluster_sellers, s->size, x->total_sellers,
            x->entity->over_hub_cap ? " (hub)" : "");
  }
  fputs("</ul>", f);
}

int run_report(ctl *c, const command *cmd, args *a) {
  int rc;
  if ((rc = no_more_args(cmd, a, 0)))
    return rc;
  if (!a->out)
    return usage_error(cmd, "report needs -o FILE.html (or -o - for stdout)");
  size_t top = a->top ? (size_t)a->top : DEFAULT_TOP;
  uint32_t max_nodes = a->max_nodes ? (uint32_t)a->max_nodes : DEFAULT_MAX_NODES;
  size_t max_clusters = a->max_clusters ? (size_t)a->max_clusters : DEFAULT_MAX_CLUSTERS;
  uint64_t min_size = a->have_min_size ? a->min_size : 2;

  Graphd__V1__SnapshotRequest sreq = GRAPHD__V1__SNAPSHOT_REQUEST__INIT;
  sreq.snapshot_id = a->snapshot;
  Graphd__V1__SnapshotManifest *m = NULL;
  if ((rc = rpc(c, M_SNAPSHOT, &sreq.base, &graphd__v1__snapshot_manifest__descriptor,
                (ProtobufCMessage **)&m)))
    return rc;
  dist d = {0};
  toplist tops = {0};
  ng_graph *graphs = NULL;
  size_t ngraphs = 0;
  outfile of = {0};
  if ((rc = read_dist(c, m->id, max_clusters, &d)))
    goto out;
  if ((rc = read_top(c, m->id, min_size, top, max_clusters, &tops)))
    goto out;
  /* Fetch every drawing before the file is created: a daemon error leaves
   * no file behind. */
  graphs = xcalloc(tops.n + 1, sizeof *graphs);
  ng_limits lim = {max_nodes - max_nodes / 4, 1000, max_nodes};
  for (size_t i = 0; i < tops.n; i++) {
    ng_graph_init(&graphs[i]);
    ngraphs++;
    if ((rc = ng_fetch_cluster(c, &graphs[i], m->id, tops.c[i]->id, &lim)))
      goto out;
    ng_finish(&graphs[i], &lim);
  }

  if ((rc = outfile_open(&of, a->out)))
    goto out;
  FILE *f = of.f;
  fprintf(f, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
             "<title>graphd snapshot %" PRIu64 ": riskiest clusters</title>\n<style>\n%s</style>"
             "</head>\n<body>\n",
          m->id, css);
  fprintf(f, "<h1>graphd snapshot %" PRIu64, m->id);
  if (m->spec && m->spec->name[0]) {
    fputs(" &#8220;", f);
    put_text(f, m->spec->name, 0);
    fputs("&#8221;", f);
  }
  char t[40];
  /* The snapshot and its input checksum name the data; the address graphctl
   * read it from (often a loader's throwaway port) names nothing. */
  fprintf(f, ": riskiest clusters</h1>\n<p class=\"sub\">Created %s by %s; %" PRIu64
             " sellers in %" PRIu64 " clusters. Generated by graphctl report from snapshot %"
             PRIu64 " of the graph with input checksum %.12s&#8230;</p>\n",
          gc_time_format(m->created_at, t, sizeof t), algo_name(m->spec ? m->spec->algorithm : 0),
          m->sellers, m->clusters, m->id, m->input_checksum);
  put_manifest(f, m);
  put_distributions(f, m, &d);

  fprintf(f, "<section id=\"top\"><h2>The %zu riskiest clusters", tops.n);
  if (min_size > 1)
    fprintf(f, " of %" PRIu64 " or more sellers", min_size);
  fputs(" with a flagged seller</h2>\n<p id=\"top-note\">", f);
  if (tops.n < top)
    fprintf(f, "Only %zu cluster%s of %" PRIu64 " or more sellers %s a flagged seller%s; "
               "clusters without one are not listed as risky. ",
            tops.n, tops.n == 1 ? "" : "s", min_size > 1 ? min_size : 1,
            tops.n == 1 ? "holds" : "hold",
            tops.cut ? " among the clusters read (--max-clusters)" : "");
  fputs("Supply sources: the shared evidence most of a cluster's sellers use and few others "
        "do (ranked by users in the cluster&#178; / all users; hubs and crowds are not "
        "evidence and never listed).</p>\n",
        f);
  fputs("<table id=\"top-table\"><tr><th>#</th><th>cluster</th><th>sellers</th><th>flagged</th>"
        "<th>risk</th><th>cohesion</th><th>supply sources</th></tr>\n",
        f);
  for (size_t i = 0; i < tops.n; i++) {
    const Graphd__V1__ClusterSummary *s = tops.c[i];
    fprintf(f,
            "<tr><td class=\"num\">%zu</td><td><a href=\"#c%" PRIu64 "\">%" PRIu64
            "</a></td><td class=\"num\">%" PRIu64 "</td><td class=\"num\">%" PRIu64
            "</td><td class=\"num\">%.3f</td><td class=\"num\">%.3f</td><td>",
            i + 1, s->id, s->id, s->size, s->flagged, s->risk, s->cohesion);
    put_sources(f, s);
    fputs("</td></tr>\n", f);
  }
  fputs("</table></section>\n", f);

  fputs("<section id=\"drawings\"><h2>Drawings</h2>\n<p>Sellers (circles) and the entities two "
        "or more of them share (squares), coloured by type; flagged sellers in red with a "
        "black ring; supply sources and flagged sellers labelled (every node in a small "
        "drawing). Layout: igraph Fruchterman-Reingold, seed 1, widely shared entities pulling "
        "least. Hover for keys and times; each drawing's members are listed below it.</p>\n"
        "<div class=\"drawings\">\n",
        f);
  for (size_t i = 0; i < tops.n && rc == EXIT_OK; i++) {
    const Graphd__V1__ClusterSummary *s = tops.c[i];
    const ng_graph *g = &graphs[i];
    size_t sellers = 0, flagged = 0;
    for (size_t k = 0; k < g->nnodes; k++) {
      sellers += g->nodes[k].seller;
      flagged += g->nodes[k].seller && g->nodes[k].flagged;
    }
    fprintf(f,
            "<div class=\"card\" id=\"c%" PRIu64 "\"><h3>%zu. Cluster %" PRIu64 ": %" PRIu64
            " sellers, %" PRIu64 " flagged, risk %.3f</h3>\n<p class=\"sub\">%zu sellers and %zu "
            "shared entities drawn, %zu links.",
            s->id, i + 1, s->id, s->size, s->flagged, s->risk, sellers, g->nnodes - sellers,
            g->nedges);
    if (g->cut) {
      fputs(" <span class=\"note\">Cut: ", f);
      put_text(f, g->cut_note, 0);
      fputs(".</span>", f);
    }
    fputs("</p>\n", f);
    rc = put_drawing(f, g, s, i);
    put_members(f, g, s);
    fputs("</div>\n", f);
  }
  fputs("</div></section>\n</body></html>\n", f);
  rc = outfile_close(&of, rc);
  if (!rc)
    fprintf(stderr, "graphctl: report of snapshot %" PRIu64 ": %zu clusters drawn%s%s\n", m->id,
            tops.n, outfile_is_stdout(a->out) ? "" : " to ",
            outfile_is_stdout(a->out) ? "" : a->out);
out:
  for (size_t i = 0; i < ngraphs; i++)
    ng_graph_free(&graphs[i]);
  free(graphs);
  free_top(&tops);
  free(d.size);
  free(d.risk);
  graphd__v1__snapshot_manifest__free_unpacked(m, NULL);
  return rc;
}
