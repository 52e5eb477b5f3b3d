/*
 * Unit tests of the ingest file parser (tools/common/ingest.h).
 *
 * Each input is parsed several times, fed whole and in chunks of 1, 2, 3,
 * 7 and 64 bytes, and every run must produce the same records (rendered as
 * text, one line per record) and the same error. A tiny CHECK macro prints
 * file:line of each failure and counts them; the exit status is 1 when any
 * check failed.
 */
#include "ingest.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;
static int checks;

#define CHECK(cond)                                                        \
  do {                                                                     \
    checks++;                                                              \
    if (!(cond)) {                                                         \
      failures++;                                                          \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__,     \
              #cond);                                                      \
    }                                                                      \
  } while (0)

#define CHECK_STR(got, want)                                               \
  do {                                                                     \
    checks++;                                                              \
    const char *g_ = (got), *w_ = (want);                                  \
    if (strcmp(g_, w_) != 0) {                                             \
      failures++;                                                          \
      fprintf(stderr, "%s:%d: CHECK_STR failed: %s\n  got:  \"%s\"\n  want: \"%s\"\n", \
              __FILE__, __LINE__, #got, g_, w_);                           \
    }                                                                      \
  } while (0)

/* ---- rendering records as text ---- */

typedef struct out {
  char buf[16384];
  size_t len;
  int stop_after; /* > 0: callback returns 1 after this many records */
  int seen;
} out;

static void outf(out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void outf(out *o, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(o->buf + o->len, sizeof o->buf - o->len, fmt, ap);
  va_end(ap);
  if (n > 0)
    o->len += (size_t)n;
  if (o->len >= sizeof o->buf)
    o->len = sizeof o->buf - 1;
}

static int on_record(void *ud, const gc_ingest_record *r) {
  out *o = ud;
  if (r->kind == GC_INGEST_LINK) {
    outf(o, "%lu L %s:%s %s:%s %lld\n", r->line,
         gd_type_name(r->link.a_type), r->link.a_key,
         gd_type_name(r->link.b_type), r->link.b_key,
         (long long)r->link.seen);
  } else {
    outf(o, "%lu E %s:%s [", r->line, gd_type_name(r->entity.type),
         r->entity.key);
    for (size_t i = 0; i < r->entity.n_labels; i++)
      outf(o, "%s%s", i ? "|" : "", r->entity.labels[i]);
    outf(o, "] {");
    for (size_t i = 0; i < r->entity.n_attrs; i++)
      outf(o, "%s%s=%s", i ? "|" : "", r->entity.attrs[i].name,
           r->entity.attrs[i].value);
    outf(o, "} %lld\n", (long long)r->entity.seen);
  }
  o->seen++;
  return o->stop_after > 0 && o->seen >= o->stop_after;
}

typedef struct result {
  int rc;
  char records[16384];
  char error[1024];
  unsigned long err_line;
  char err_field[192];
  gc_ingest_format format;
} result;

static void parse_chunked(const char *name, gc_ingest_format fmt,
                          const char *input, size_t len, size_t chunk,
                          int stop_after, result *res) {
  out o;
  memset(&o, 0, sizeof o);
  o.stop_after = stop_after;
  gc_ingest_parser *p = gc_ingest_parser_new(name, fmt, on_record, &o);
  if (!p) {
    fprintf(stderr, "gc_ingest_parser_new failed\n");
    exit(2);
  }
  int rc = 0;
  size_t off = 0;
  while (rc == 0 && off < len) {
    size_t n = chunk == 0 || len - off < chunk ? len - off : chunk;
    rc = gc_ingest_parser_feed(p, input + off, n);
    off += n;
  }
  if (rc == 0)
    rc = gc_ingest_parser_finish(p);
  res->rc = rc;
  memcpy(res->records, o.buf, o.len + 1);
  snprintf(res->error, sizeof res->error, "%s", gc_ingest_parser_error(p));
  res->err_line = gc_ingest_parser_error_line(p);
  snprintf(res->err_field, sizeof res->err_field, "%s",
           gc_ingest_parser_error_field(p));
  res->format = gc_ingest_parser_format(p);
  gc_ingest_parser_free(p);
}

/* Parses input whole and in several chunk sizes; checks all runs agree;
 * returns the whole-input result. */
static result parse_all(const char *name, gc_ingest_format fmt,
                        const char *input, size_t len, int line) {
  static const size_t chunks[] = {1, 2, 3, 7, 64};
  result whole;
  parse_chunked(name, fmt, input, len, 0, 0, &whole);
  for (size_t i = 0; i < sizeof chunks / sizeof chunks[0]; i++) {
    result r;
    parse_chunked(name, fmt, input, len, chunks[i], 0, &r);
    checks++;
    if (r.rc != whole.rc || strcmp(r.records, whole.records) != 0 ||
        strcmp(r.error, whole.error) != 0) {
      failures++;
      fprintf(stderr,
              "%s:%d: chunk size %zu differs from whole input:\n"
              "  whole rc=%d err=\"%s\" records:\n%s  chunked rc=%d err=\"%s\" "
              "records:\n%s",
              __FILE__, line, chunks[i], whole.rc, whole.error, whole.records,
              r.rc, r.error, r.records);
    }
  }
  return whole;
}

#define PARSE(name, fmt, input) parse_all(name, fmt, input, strlen(input), __LINE__)

/* Expects success with exactly these records. */
#define EXPECT_OK(name, fmt, input, want)                                  \
  do {                                                                     \
    result r_ = PARSE(name, fmt, input);                                   \
    CHECK(r_.rc == GC_INGEST_OK);                                          \
    if (r_.rc != GC_INGEST_OK)                                             \
      fprintf(stderr, "  error: %s\n", r_.error);                          \
    CHECK_STR(r_.records, want);                                           \
  } while (0)

/* Expects a data error with this full message (which holds the line), and
 * exactly these records delivered before it. */
#define EXPECT_ERR(name, fmt, input, want_records, want_error)             \
  do {                                                                     \
    result r_ = PARSE(name, fmt, input);                                   \
    CHECK(r_.rc == GC_INGEST_EDATA);                                       \
    CHECK_STR(r_.error, want_error);                                       \
    CHECK_STR(r_.records, want_records);                                   \
  } while (0)

/* ---- tests ---- */

static void test_links_csv(void) {
  EXPECT_OK("links.csv", GC_INGEST_AUTO,
            "a_type,a_key,b_type,b_key,seen\n"
            "seller,s17,device,d-9f2a,1735689600\n"
            "SELLER,s18,Phone,+49 30 1234,\n"
            "\n"
            "   \n"
            "entity_type_seller,s19,ENTITY_TYPE_IP,10.0.0.1,2025-03-01\n"
            "seller,s20,payment_account,iban-1,2025-03-01T12:00:00Z\n",
            "2 L seller:s17 device:d-9f2a 1735689600\n"
            "3 L seller:s18 phone:+49 30 1234 0\n"
            "6 L seller:s19 ip:10.0.0.1 1740787200\n"
            "7 L seller:s20 payment_account:iban-1 1740830400\n");

  /* Columns in another order, no seen column, no final line break. */
  EXPECT_OK("x.csv", GC_INGEST_CSV,
            " B_KEY , b_type,a_key,A_TYPE\n"
            "e@x.org,email,s1,seller",
            "2 L seller:s1 email:e@x.org 0\n");

  /* A header alone, an empty input and a blank input are fine. */
  EXPECT_OK("h.csv", GC_INGEST_CSV, "a_type,a_key,b_type,b_key\n", "");
  EXPECT_OK("e.csv", GC_INGEST_CSV, "", "");
  EXPECT_OK("b.csv", GC_INGEST_AUTO, "\n\n  \n", "");

  result r = PARSE("d.txt", GC_INGEST_AUTO, "a_type,a_key,b_type,b_key\n");
  CHECK(r.format == GC_INGEST_CSV);
}

static void test_entities_csv(void) {
  EXPECT_OK("entities.csv", GC_INGEST_AUTO,
            "type,key,labels,country,name\n"
            "seller,s17,counterfeit;watch,DE,Acme GmbH\n"
            "device,d-1,,,\n"
            "seller,s18, a ; ;b ;,FR,\n",
            "2 E seller:s17 [counterfeit|watch] {country=DE|name=Acme GmbH} 0\n"
            "3 E device:d-1 [] {} 0\n"
            "4 E seller:s18 [a|b] {country=FR} 0\n");

  /* seen column; no labels column; attribute names keep their case. */
  EXPECT_OK("e2.csv", GC_INGEST_CSV,
            "Key,TYPE,Seen,Shop Name\n"
            "s1,seller,1700000000,Bob's\n",
            "2 E seller:s1 [] {Shop Name=Bob's} 1700000000\n");
}

static void test_quoting(void) {
  EXPECT_OK("q.csv", GC_INGEST_CSV,
            "type,key,labels,address\n"
            "\"seller\",\"s,1\",\"a;b\",\"1 Main St, Springfield\"\n"
            "seller,\"say \"\"hi\"\"\",,\"\"\n"
            "seller,s3,,\"two\nlines\"\n"
            "seller,s4,,\"\"\"\"\n"
            "seller,5\" screen,,x\n",
            "2 E seller:s,1 [a|b] {address=1 Main St, Springfield} 0\n"
            "3 E seller:say \"hi\" [] {} 0\n"
            "4 E seller:s3 [] {address=two\nlines} 0\n"
            "6 E seller:s4 [] {address=\"} 0\n"
            "7 E seller:5\" screen [] {address=x} 0\n");

  /* Quoted header names. */
  EXPECT_OK("qh.csv", GC_INGEST_CSV,
            "\"a_type\",\"a_key\",\"b_type\",\"b_key\"\n"
            "seller,s1,seller,s2\n",
            "2 L seller:s1 seller:s2 0\n");
}

static void test_crlf(void) {
  EXPECT_OK("crlf.csv", GC_INGEST_AUTO,
            "a_type,a_key,b_type,b_key,seen\r\n"
            "seller,s1,device,d1,5\r\n"
            "\r\n"
            "seller,s2,device,d2,\r\n",
            "2 L seller:s1 device:d1 5\n"
            "4 L seller:s2 device:d2 0\n");

  /* CRLF inside a quoted field: the line break is kept as '\n'; the final
   * quoted field ends right before CRLF. */
  EXPECT_OK("crlf2.csv", GC_INGEST_CSV,
            "type,key,note\r\n"
            "seller,s1,\"a\r\nb\"\r\n"
            "seller,s2,\"c\"\r\n",
            "2 E seller:s1 [] {note=a\nb} 0\n"
            "4 E seller:s2 [] {note=c} 0\n");

  EXPECT_OK("crlf.jsonl", GC_INGEST_AUTO,
            "{\"type\":\"seller\",\"key\":\"s1\"}\r\n\r\n"
            "{\"type\":\"ip\",\"key\":\"1.2.3.4\"}\r\n",
            "1 E seller:s1 [] {} 0\n"
            "3 E ip:1.2.3.4 [] {} 0\n");
}

static void test_bom(void) {
  EXPECT_OK("bom.csv", GC_INGEST_AUTO,
            "\xef\xbb\xbf" "a_type,a_key,b_type,b_key\n"
            "seller,s1,seller,s2\n",
            "2 L seller:s1 seller:s2 0\n");
}

static void test_jsonl(void) {
  EXPECT_OK("g.jsonl", GC_INGEST_AUTO,
            "{\"a_type\":\"seller\",\"a_key\":\"s17\",\"b_type\":\"device\","
            "\"b_key\":\"d-9f2a\",\"seen\":1735689600}\n"
            "\n"
            "  {\"type\":\"SELLER\",\"key\":\"s17\",\"labels\":[\"counterfeit\","
            "\"watch\"],\"attributes\":{\"country\":\"DE\",\"rating\":4.5,"
            "\"n\":3,\"ok\":true,\"gone\":null},\"seen\":\"2025-03-01\"}  \n"
            "{\"a_type\":\"ENTITY_TYPE_PHONE\",\"a_key\":12345,\"b_type\":\"ip\","
            "\"b_key\":\"::1\"}\n"
            "{\"type\":\"email\",\"key\":\"a@b.c\",\"labels\":null,\"seen\":null}\n"
            "{\"type\":\"email\",\"key\":\"x@b.c\",\"seen\":17.0,"
            "\"attributes\":{\"e\":\"\"}}",
            "1 L seller:s17 device:d-9f2a 1735689600\n"
            "3 E seller:s17 [counterfeit|watch] {country=DE|rating=4.5|n=3|ok=true} 1740787200\n"
            "4 L phone:12345 ip:::1 0\n"
            "5 E email:a@b.c [] {} 0\n"
            "6 E email:x@b.c [] {e=} 17\n");

  result r = PARSE("-", GC_INGEST_AUTO, "{\"type\":\"ip\",\"key\":\"1.1.1.1\"}\n");
  CHECK(r.format == GC_INGEST_JSONL);
  CHECK(r.rc == GC_INGEST_OK);
}

static void test_csv_errors(void) {
  /* Unknown type, in each type column. */
  EXPECT_ERR("links.csv", GC_INGEST_CSV,
             "a_type,a_key,b_type,b_key,seen\n"
             "seller,s1,device,d1,\n"
             "\n"
             "seller,s2,foo,d2,\n"
             "seller,s3,device,d3,\n",
             "2 L seller:s1 device:d1 0\n",
             "links.csv:4: b_type: unknown entity type 'foo' (expected seller, "
             "address, payment_account, device, phone, email or ip)");
  EXPECT_ERR("links.csv", GC_INGEST_CSV,
             "a_type,a_key,b_type,b_key\n"
             ",s1,device,d1\n",
             "", "links.csv:2: a_type: missing entity type");
  EXPECT_ERR("e.csv", GC_INGEST_CSV,
             "type,key\n"
             "sellers,s1\n",
             "", "e.csv:2: type: unknown entity type 'sellers' (expected "
             "seller, address, payment_account, device, phone, email or ip)");

  /* Missing column in the header; unknown header; unknown links column;
   * duplicate column. */
  EXPECT_ERR("links.csv", GC_INGEST_CSV,
             "\n"
             "a_type,a_key,b_type,seen\n"
             "seller,s1,device,0\n",
             "", "links.csv:2: b_key: missing column in the header");
  EXPECT_ERR("e.csv", GC_INGEST_CSV, "type,labels\nseller,x\n", "",
             "e.csv:1: key: missing column in the header");
  EXPECT_ERR("links.csv", GC_INGEST_CSV, "seller,s1,device,d1\n", "",
             "links.csv:1: not a CSV header: expected the columns "
             "a_type,a_key,b_type,b_key[,seen] (links) or "
             "type,key[,labels][,seen][,attribute...] (entities)");
  EXPECT_ERR("links.csv", GC_INGEST_CSV, "a_type,a_key,b_type,b_key,when\n", "",
             "links.csv:1: when: unknown column in a links header (expected "
             "a_type, a_key, b_type, b_key and optionally seen)");
  EXPECT_ERR("e.csv", GC_INGEST_CSV, "type,key,color,color\n", "",
             "e.csv:1: color: duplicate column");
  EXPECT_ERR("e.csv", GC_INGEST_CSV, "type,key,Type\n", "",
             "e.csv:1: Type: duplicate column");
  EXPECT_ERR("e.csv", GC_INGEST_CSV, "type,key,,x\n", "",
             "e.csv:1: column 3: empty attribute name");

  /* Wrong number of fields in a row. */
  EXPECT_ERR("links.csv", GC_INGEST_CSV,
             "a_type,a_key,b_type,b_key,seen\n"
             "seller,s1,device,d1,1\n"
             "seller,s2,device\n",
             "2 L seller:s1 device:d1 1\n",
             "links.csv:3: expected 5 fields as in the header, found 3");
  EXPECT_ERR("links.csv", GC_INGEST_CSV,
             "a_type,a_key,b_type,b_key\n"
             "seller,s2,device,d2,extra\n",
             "", "links.csv:2: expected 4 fields as in the header, found 5");

  /* Bad numbers / times. */
  EXPECT_ERR("links.csv", GC_INGEST_CSV,
             "a_type,a_key,b_type,b_key,seen\n"
             "seller,s1,device,d1,17x\n",
             "", "links.csv:2: seen: bad time '17x' (expected unix seconds or "
             "an ISO-8601 date such as 2025-03-01T12:00:00Z)");
  EXPECT_ERR("links.csv", GC_INGEST_CSV,
             "a_type,a_key,b_type,b_key,seen\n"
             "seller,s1,device,d1,-5\n",
             "", "links.csv:2: seen: bad time '-5' (expected unix seconds or "
             "an ISO-8601 date such as 2025-03-01T12:00:00Z)");
  EXPECT_ERR("e.csv", GC_INGEST_CSV,
             "type,key,seen\n"
             "seller,s1,2025-02-30\n",
             "", "e.csv:2: seen: bad time '2025-02-30' (expected unix seconds "
             "or an ISO-8601 date such as 2025-03-01T12:00:00Z)");

  /* Unterminated quote: reported at the line where the record starts, even
   * when blank lines and more records follow inside the open quote. */
  EXPECT_ERR("q.csv", GC_INGEST_CSV,
             "type,key,note\n"
             "seller,s1,ok\n"
             "seller,s2,\"open\n"
             "\n"
             "seller,s3,x\n",
             "2 E seller:s1 [] {note=ok} 0\n",
             "q.csv:3: note: unterminated quoted field");
  EXPECT_ERR("q.csv", GC_INGEST_CSV, "type,\"key\n", "",
             "q.csv:1: column 2: unterminated quoted field");
  /* Text after a closing quote. */
  EXPECT_ERR("q.csv", GC_INGEST_CSV,
             "type,key\n"
             "seller,\"s1\"x\n",
             "", "q.csv:2: key: text after the closing quote of a quoted field "
             "(a quote inside a quoted field must be doubled: \"\")");

  /* Keys. */
  EXPECT_ERR("k.csv", GC_INGEST_CSV, "type,key\nseller,   \n", "",
             "k.csv:2: key: empty key");
  EXPECT_ERR("k.csv", GC_INGEST_CSV, "type,key\nphone,n/a\n", "",
             "k.csv:2: key: phone key 'n/a' has no digits");
  EXPECT_ERR("k.csv", GC_INGEST_CSV, "type,key\nseller,\xff\xfe\n", "",
             "k.csv:2: key: key is not valid UTF-8");
  EXPECT_ERR("self.csv", GC_INGEST_CSV,
             "a_type,a_key,b_type,b_key\n"
             "seller,s1,seller,s2\n"
             "seller, S1 ,SELLER,s1\n",
             "2 L seller:s1 seller:s2 0\n",
             "self.csv:3: link joins seller ' S1 ' to itself");
  /* Labels. */
  EXPECT_ERR("l.csv", GC_INGEST_CSV, "type,key,labels\nseller,s1,a;b\x01;c\n",
             "", "l.csv:2: labels: label contains a control character");

  /* A NUL byte. */
  result r = parse_all("nul.csv", GC_INGEST_CSV, "type,key\nseller,s\0x\n", 18,
                       __LINE__);
  CHECK(r.rc == GC_INGEST_EDATA);
  CHECK_STR(r.error, "nul.csv:2: NUL byte in the input (not a text file?)");
  CHECK(r.err_line == 2);
  CHECK_STR(r.err_field, "");
}

static void test_json_errors(void) {
  EXPECT_ERR("g.jsonl", GC_INGEST_JSONL,
             "{\"type\":\"seller\",\"key\":\"s1\"}\n"
             "\n"
             "{\"type\":\"seller\",\"key\":\"s2\"\n"
             "{\"type\":\"seller\",\"key\":\"s3\"}\n",
             "1 E seller:s1 [] {} 0\n",
             "g.jsonl:3: bad JSON: the object does not end on this line");
  EXPECT_ERR("g.jsonl", GC_INGEST_JSONL, "{\"type\":seller}\n", "",
             "g.jsonl:1: bad JSON: unexpected character (at byte 9)");
  EXPECT_ERR("g.jsonl", GC_INGEST_JSONL, "{\"type\":\"seller\",}\n", "",
             "g.jsonl:1: bad JSON: unexpected character (at byte 18)");
  EXPECT_ERR("g.jsonl", GC_INGEST_JSONL,
             "{\"type\":\"seller\",\"key\":\"s1\"} x\n", "",
             "g.jsonl:1: bad JSON: text after the object (at byte 30)");
  EXPECT_ERR("g.jsonl", GC_INGEST_JSONL, "[1,2]\n", "",
             "g.jsonl:1: expected a JSON object ('{' ...)");
  EXPECT_ERR("g.jsonl", GC_INGEST_AUTO,
             "{\"type\":\"seller\",\"key\":\"s1\"}\n"
             "type,key\n",
             "1 E seller:s1 [] {} 0\n",
             "g.jsonl:2: expected a JSON object ('{' ...)");
  EXPECT_ERR("g.jsonl", GC_INGEST_JSONL,
             "{\"type\":\"seller\",\"key\":\"s1\"}\n"
             "{\"type\":\"shop\",\"key\":\"s1\"}\n",
             "1 E seller:s1 [] {} 0\n",
             "g.jsonl:2: type: unknown entity type 'shop' (expected seller, "
             "address, payment_account, device, phone, email or ip)");
  EXPECT_ERR("g.jsonl", GC_INGEST_JSONL,
             "{\"a_type\":\"seller\",\"a_key\":\"s1\",\"b_type\":\"device\"}\n",
             "", "g.jsonl:1: b_key: missing");
  EXPECT_ERR("g.jsonl", GC_INGEST_JSONL, "{\"type\":\"seller\"}\n", "",
             "g.jsonl:1: key: missing");
  EXPECT_ERR("g.jsonl", GC_INGEST_JSONL,
             "{\"type\":\"seller\",\"key\":\"s1\",\"seen\":\"yesterday\"}\n", "",
             "g.jsonl:1: seen: bad time 'yesterday' (expected unix seconds or "
             "an ISO-8601 date such as 2025-03-01T12:00:00Z)");
  EXPECT_ERR("g.jsonl", GC_INGEST_JSONL,
             "{\"type\":\"seller\",\"key\":\"s1\",\"seen\":-1}\n", "",
             "g.jsonl:1: seen: time -1 out of range");
  EXPECT_ERR("g.jsonl", GC_INGEST_JSONL,
             "{\"type\":\"seller\",\"key\":\"s1\",\"seen\":1.5}\n", "",
             "g.jsonl:1: seen: expected whole unix seconds or a time string, "
             "found 1.5");
  EXPECT_ERR("g.jsonl", GC_INGEST_JSONL,
             "{\"type\":\"seller\",\"key\":\"s1\",\"seen\":[]}\n", "",
             "g.jsonl:1: seen: expected unix seconds or a time string, found "
             "array");
  EXPECT_ERR("g.jsonl", GC_INGEST_JSONL,
             "{\"type\":\"seller\",\"key\":\"s1\",\"labels\":\"a;b\"}\n", "",
             "g.jsonl:1: labels: expected an array of strings, found string");
  EXPECT_ERR("g.jsonl", GC_INGEST_JSONL,
             "{\"type\":\"seller\",\"key\":\"s1\",\"labels\":[\"a\",2]}\n", "",
             "g.jsonl:1: labels[1]: expected a string, found int");
  EXPECT_ERR("g.jsonl", GC_INGEST_JSONL,
             "{\"type\":\"seller\",\"key\":\"s1\",\"attributes\":{\"a\":[1]}}\n",
             "", "g.jsonl:1: attributes.a: expected a string, found array");
  EXPECT_ERR("g.jsonl", GC_INGEST_JSONL,
             "{\"type\":\"seller\",\"key\":true}\n", "",
             "g.jsonl:1: key: expected a string or an integer, found boolean");
  EXPECT_ERR("g.jsonl", GC_INGEST_JSONL,
             "{\"type\":\"seller\",\"key\":\"s1\",\"colour\":\"red\"}\n", "",
             "g.jsonl:1: colour: unknown member (expected type, key, labels, "
             "attributes, seen)");
  EXPECT_ERR("g.jsonl", GC_INGEST_JSONL,
             "{\"type\":\"seller\",\"key\":\"s1\",\"a_key\":\"x\"}\n", "",
             "g.jsonl:1: mixes link members (a_type, a_key, b_type, b_key) "
             "with entity members (type, key, labels, attributes)");
  EXPECT_ERR("g.jsonl", GC_INGEST_JSONL, "{\"seen\":1}\n", "",
             "g.jsonl:1: neither a link (a_type, a_key, b_type, b_key) nor an "
             "entity (type, key)");
  EXPECT_ERR("g.jsonl", GC_INGEST_JSONL, "{\"type\":\"seller\",\"key\":\"a\\u0000b\"}\n",
             "", "g.jsonl:1: key: contains a NUL character");
  EXPECT_ERR("g.jsonl", GC_INGEST_JSONL,
             "{\"a_type\":\"ip\",\"a_key\":\"10.0.0.1\",\"b_type\":\"ip\","
             "\"b_key\":\" 10.0.0.1\"}\n",
             "", "g.jsonl:1: link joins ip '10.0.0.1' to itself");
}

static void test_stop_and_sticky_error(void) {
  const char *in = "a_type,a_key,b_type,b_key\n"
                   "seller,s1,device,d1\n"
                   "seller,s2,device,d2\n"
                   "seller,s3,device,d3\n";
  result r;
  parse_chunked("s.csv", GC_INGEST_CSV, in, strlen(in), 0, 2, &r);
  CHECK(r.rc == GC_INGEST_ESTOPPED);
  CHECK_STR(r.records, "2 L seller:s1 device:d1 0\n3 L seller:s2 device:d2 0\n");

  out o;
  memset(&o, 0, sizeof o);
  gc_ingest_parser *p = gc_ingest_parser_new("s.csv", GC_INGEST_CSV, on_record, &o);
  CHECK(gc_ingest_parser_feed(p, "bogus\n", 6) == GC_INGEST_EDATA);
  CHECK(gc_ingest_parser_feed(p, in, strlen(in)) == GC_INGEST_EDATA);
  CHECK(gc_ingest_parser_finish(p) == GC_INGEST_EDATA);
  CHECK(o.seen == 0);
  CHECK(gc_ingest_parser_error_line(p) == 1);
  gc_ingest_parser_free(p);
  gc_ingest_parser_free(NULL);
}

static void test_types_and_times(void) {
  gd_etype t = 0;
  CHECK(gc_type_parse("Payment_Account", &t) == 0 &&
        t == GD_TYPE_PAYMENT_ACCOUNT);
  CHECK(gc_type_parse("ENTITY_TYPE_IP", &t) == 0 && t == GD_TYPE_IP);
  CHECK(gc_type_parse("entity_type_unspecified", &t) == -1);
  CHECK(gc_type_parse("unspecified", &t) == -1);
  CHECK(gc_type_parse("", &t) == -1);
  CHECK(gc_type_parse(NULL, &t) == -1);
  CHECK_STR(gd_type_name(GD_TYPE_EMAIL), "email");
  CHECK_STR(gd_type_name(99), "unknown");

  int64_t v = -1;
  CHECK(gc_time_parse("0", &v) == 0 && v == 0);
  CHECK(gc_time_parse("1735689600", &v) == 0 && v == 1735689600);
  CHECK(gc_time_parse("2025-01-01", &v) == 0 && v == 1735689600);
  CHECK(gc_time_parse("2025-03-01T12:00:00Z", &v) == 0 && v == 1740830400);
  CHECK(gc_time_parse("2025-03-01 12:00", &v) == 0 && v == 1740830400);
  CHECK(gc_time_parse("2025-03-01T14:00:00.123+02:00", &v) == 0 &&
        v == 1740830400);
  CHECK(gc_time_parse("2025-03-01T07:30:00-0430", &v) == 0 && v == 1740830400);
  CHECK(gc_time_parse("2024-02-29", &v) == 0 && v == 1709164800);
  CHECK(gc_time_parse("1970-01-01T00:00:00Z", &v) == 0 && v == 0);
  CHECK(gc_time_parse("9999-12-31T23:59:59Z", &v) == 0 && v == GC_TIME_MAX);
  CHECK(gc_time_parse("2023-02-29", &v) == -1);
  CHECK(gc_time_parse("2025-13-01", &v) == -1);
  CHECK(gc_time_parse("2025-03-01T24:00", &v) == -1);
  CHECK(gc_time_parse("2025-03-01T12", &v) == -1);
  CHECK(gc_time_parse("2025-03-01X", &v) == -1);
  CHECK(gc_time_parse("1969-12-31", &v) == -1);
  CHECK(gc_time_parse("999999999999999", &v) == -1);
  CHECK(gc_time_parse("12a", &v) == -1);
  CHECK(gc_time_parse("", &v) == -1);
  CHECK(gc_time_parse(NULL, &v) == -1);

  char buf[32];
  CHECK_STR(gc_time_format(1740830400, buf, sizeof buf), "2025-03-01T12:00:00Z");
  CHECK_STR(gc_time_format(0, buf, sizeof buf), "-");

  char norm[64];
  CHECK(gc_key_normalize(GD_TYPE_SELLER, "  Acme \t GmbH ", 14, norm) == 9);
  CHECK_STR(norm, "acme gmbh");
  CHECK(gc_key_normalize(GD_TYPE_PHONE, " +49 (30) 12-34 ", 16, norm) == 9);
  CHECK_STR(norm, "+49301234");
  CHECK(gc_key_normalize(GD_TYPE_PHONE, "+", 1, norm) == 0);

  CHECK(gc_utf8_valid("h\xc3\xa9llo", 6));
  CHECK(!gc_utf8_valid("\xc0\xaf", 2));         /* overlong */
  CHECK(!gc_utf8_valid("\xed\xa0\x80", 3));     /* surrogate */
  CHECK(!gc_utf8_valid("\xe2\x82", 2));         /* truncated */
  CHECK(gc_utf8_valid("\xf0\x9f\x98\x80", 4));

  gc_ingest_format f;
  CHECK(gc_ingest_format_for_path("dir.v2/links.CSV") == GC_INGEST_CSV);
  CHECK(gc_ingest_format_for_path("x.ndjson") == GC_INGEST_JSONL);
  CHECK(gc_ingest_format_for_path("x.jsonl") == GC_INGEST_JSONL);
  CHECK(gc_ingest_format_for_path("dir.csv/data") == GC_INGEST_AUTO);
  CHECK(gc_ingest_format_for_path("-") == GC_INGEST_AUTO);
  CHECK(gc_ingest_format_parse("JSONL", &f) == 0 && f == GC_INGEST_JSONL);
  CHECK(gc_ingest_format_parse("xml", &f) == -1);
}

static void test_long_line(void) {
  /* A line over the limit fails without being buffered whole. */
  size_t n = GC_INGEST_MAX_LINE + 10;
  char *big = malloc(n);
  CHECK(big != NULL);
  if (!big)
    return;
  memset(big, 'x', n);
  out o;
  memset(&o, 0, sizeof o);
  gc_ingest_parser *p = gc_ingest_parser_new("big.csv", GC_INGEST_CSV, on_record, &o);
  CHECK(gc_ingest_parser_feed(p, "type,key\n", 9) == GC_INGEST_OK);
  CHECK(gc_ingest_parser_feed(p, big, n) == GC_INGEST_EDATA);
  CHECK_STR(gc_ingest_parser_error(p), "big.csv:2: line longer than 16777216 bytes");
  gc_ingest_parser_free(p);
  free(big);
}

int main(void) {
  test_links_csv();
  test_entities_csv();
  test_quoting();
  test_crlf();
  test_bom();
  test_jsonl();
  test_csv_errors();
  test_json_errors();
  test_stop_and_sticky_error();
  test_types_and_times();
  test_long_line();
  printf("%d checks, %d failed\n", checks, failures);
  return failures ? 1 : 0;
}
