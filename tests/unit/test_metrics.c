/* metrics/: label escaping, HOST:PORT parsing, and the exposition text of
 * the registry fed through its hooks (no store, writer or jobs). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/listen.h"
#include "metrics/metrics.h"
#include "tap.h"

static void test_escape(void) {
  char buf[64];
  CHECK_EQ_U(gd_metrics_escape_label(buf, sizeof buf, "plain"), 5);
  CHECK_STR(buf, "plain");
  CHECK_EQ_U(gd_metrics_escape_label(buf, sizeof buf, "a\\b\"c\nd"), 10);
  CHECK_STR(buf, "a\\\\b\\\"c\\nd");
  /* Too small: truncated, NUL-terminated, the full length returned. */
  CHECK_EQ_U(gd_metrics_escape_label(buf, 4, "\"\"\""), 6);
  CHECK_EQ_U(strlen(buf), 3);
  CHECK_EQ_U(gd_metrics_escape_label(NULL, 0, "x\""), 3);
}

static void test_parse_listen(void) {
  char host[64];
  int port = -1;
  gd_err err;
  CHECK(gd_listen_parse("127.0.0.1:9464", host, sizeof host, &port, &err) == GD_OK);
  CHECK_STR(host, "127.0.0.1");
  CHECK_EQ_U(port, 9464);
  CHECK(gd_listen_parse("[::1]:0", host, sizeof host, &port, &err) == GD_OK);
  CHECK_STR(host, "::1");
  CHECK_EQ_U(port, 0);
  CHECK(gd_listen_parse("localhost:65535", host, sizeof host, &port, &err) == GD_OK);
  const char *bad[] = {"", "9464", ":9464", "h:", "h:65536", "h:-1", "h:+1", "h:1x", "::1:80",
                       "[]:80"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    int rc = gd_listen_parse(bad[i], host, sizeof host, &port, &err);
    CHECK(rc == GD_EINVALID);
    if (rc != GD_EINVALID)
      fprintf(stderr, "  accepted '%s'\n", bad[i]);
  }
}

static const gd_method methods[] = {
    {.path = "/t.S/A", .kind = GD_RPC_UNARY, .role = GD_ROLE_NONE},
    {.path = "/t.S/B\"q", .kind = GD_RPC_UNARY, .role = GD_ROLE_NONE},
};

/* The value of the sample line that starts with `series ` (-1 if none). */
static double value(const char *text, const char *series) {
  size_t n = strlen(series);
  for (const char *p = text; p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
    if (!strncmp(p, series, n) && p[n] == ' ')
      return strtod(p + n + 1, NULL);
  return -1;
}

static void test_render(void) {
  gd_metrics *m;
  gd_metrics_opts o = {methods, 2, "1.2\"3"};
  CHECK(gd_metrics_new(&o, &m, NULL) == GD_OK);
  gd_metrics_call_begin(m, 0);
  gd_metrics_call_begin(m, 0);
  gd_metrics_call_begin(m, 1);
  gd_metrics_call_begin(m, 2);
  gd_metrics_call_end(m, 0, 0, 50000);       /* 50 us */
  gd_metrics_call_end(m, 0, 5, 3000000);     /* NOT_FOUND, 3 ms */
  gd_metrics_call_end(m, 2, 12, 1000);       /* unknown method: UNIMPLEMENTED */
  gd_metrics_commit(m, 3, 7000000);
  gd_metrics_commit(m, 1, 2000000);
  gd_metrics_job_stage(m, "start", 0.05);
  gd_metrics_job_stage(m, "cluster", 2.0);
  size_t len = 0;
  char *t = gd_metrics_render(m, &len);
  CHECK(t && strlen(t) == len);
  if (!t)
    return;
  CHECK(value(t, "graphd_build_info{version=\"1.2\\\"3\"}") == 1);
  CHECK(value(t, "graphd_calls_total{method=\"/t.S/A\",code=\"OK\"}") == 1);
  CHECK(value(t, "graphd_calls_total{method=\"/t.S/A\",code=\"NOT_FOUND\"}") == 1);
  CHECK(value(t, "graphd_calls_total{method=\"unknown\",code=\"UNIMPLEMENTED\"}") == 1);
  CHECK(value(t, "graphd_calls_total{method=\"/t.S/B\\\"q\",code=\"OK\"}") == -1);
  CHECK(value(t, "graphd_calls_in_flight") == 1);
  /* Cumulative buckets, +Inf == _count. */
  CHECK(value(t, "graphd_call_duration_seconds_bucket{method=\"/t.S/A\",le=\"0.0001\"}") == 1);
  CHECK(value(t, "graphd_call_duration_seconds_bucket{method=\"/t.S/A\",le=\"0.0025\"}") == 1);
  CHECK(value(t, "graphd_call_duration_seconds_bucket{method=\"/t.S/A\",le=\"0.005\"}") == 2);
  CHECK(value(t, "graphd_call_duration_seconds_bucket{method=\"/t.S/A\",le=\"+Inf\"}") == 2);
  CHECK(value(t, "graphd_call_duration_seconds_count{method=\"/t.S/A\"}") == 2);
  double sum = value(t, "graphd_call_duration_seconds_sum{method=\"/t.S/A\"}");
  CHECK(sum > 0.00304 && sum < 0.00306);
  CHECK(value(t, "graphd_call_duration_seconds_count{method=\"/t.S/B\\\"q\"}") == -1);
  CHECK(value(t, "graphd_writer_batch_ops_bucket{le=\"1\"}") == 1);
  CHECK(value(t, "graphd_writer_batch_ops_bucket{le=\"2\"}") == 1);
  CHECK(value(t, "graphd_writer_batch_ops_bucket{le=\"4\"}") == 2);
  CHECK(value(t, "graphd_writer_batch_ops_sum") == 4);
  CHECK(value(t, "graphd_writer_commit_duration_seconds_bucket{le=\"0.0025\"}") == 1);
  CHECK(value(t, "graphd_writer_commit_duration_seconds_bucket{le=\"0.01\"}") == 2);
  CHECK(value(t, "graphd_job_stage_duration_seconds_bucket{stage=\"start\",le=\"0.1\"}") == 1);
  CHECK(value(t, "graphd_job_stage_duration_seconds_bucket{stage=\"cluster\",le=\"2.5\"}") == 1);
  CHECK(value(t, "graphd_job_stage_duration_seconds_bucket{stage=\"cluster\",le=\"1\"}") == 0);
  CHECK(value(t, "graphd_refused_total{reason=\"result_cap\"}") == 0);
  CHECK(strstr(t, "# TYPE graphd_calls_total counter\n") != NULL);
  CHECK(strstr(t, "# TYPE graphd_call_duration_seconds histogram\n") != NULL);
  CHECK(t[len - 1] == '\n');
  free(t);
  gd_metrics_free(m);
}

TAP_MAIN(T(test_escape), T(test_parse_listen), T(test_render))
