/*
 * libFuzzer target: graphctl's ingest parser (tools/common/ingest.h) on
 * arbitrary bytes, fed in two pieces split where the first byte says, in
 * each format. Every record delivered must be one the store would accept
 * (the parser validates with the server's own key and type rules).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ingest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int on_record(void *ud, const gc_ingest_record *rec) {
  (void)ud;
  (void)rec;
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  size_t split = size > 1 ? data[0] % size : 0;
  const gc_ingest_format formats[] = {GC_INGEST_AUTO, GC_INGEST_CSV, GC_INGEST_JSONL};
  for (size_t f = 0; f < 3; f++) {
    gc_ingest_parser *p = gc_ingest_parser_new("fuzz", formats[f], on_record, NULL);
    if (!p)
      abort();
    int rc = gc_ingest_parser_feed(p, data + 1, split ? split - 1 : 0);
    if (rc == GC_INGEST_OK)
      rc = gc_ingest_parser_feed(p, data + (split ? split : 1), size - (split ? split : 1));
    if (rc == GC_INGEST_OK)
      rc = gc_ingest_parser_finish(p);
    if (rc != GC_INGEST_OK && !gc_ingest_parser_error(p)[0] && rc != GC_INGEST_ENOMEM)
      abort(); /* every failure names its line and field */
    gc_ingest_parser_free(p);
  }
  return 0;
}
