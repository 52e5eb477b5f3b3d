/*
 * Streaming parser for graphd ingest files. Independent of gRPC: it takes
 * bytes and hands out records through a callback, so it can be unit-tested
 * and fuzzed on its own (link it through `ingest_dep`).
 *
 * Formats
 * -------
 * links CSV     header with the columns a_type, a_key, b_type, b_key and
 *               optionally seen, in any order:
 *                   a_type,a_key,b_type,b_key,seen
 *                   seller,s17,device,d-9f2a,1735689600
 *               An empty seen is 0 ("the commit time"). Other columns are an
 *               error (so that a typo is not silently dropped).
 * entities CSV  header with type and key, optionally labels and seen; every
 *               further column is an attribute named by its header:
 *                   type,key,labels,country,name
 *                   seller,s17,counterfeit;watch,DE,Acme GmbH
 *               labels are ';'-separated (pieces trimmed, empty ones
 *               skipped). An empty attribute cell is "not given" (no
 *               attribute is sent), since the server merges attributes by
 *               name and an empty value would overwrite a stored one.
 *               A column named seen is the observation time, not an
 *               attribute (as in the links CSV and in JSON Lines).
 * JSON Lines    one JSON object per line (parsed with json-c, strict mode).
 *               A link:   {"a_type":"seller","a_key":"s1","b_type":"ip",
 *                          "b_key":"10.0.0.1","seen":1735689600}
 *               An entity:{"type":"seller","key":"s1","labels":["x"],
 *                          "attributes":{"country":"DE"},"seen":0}
 *               Keys may be strings or integers; attribute values strings,
 *               numbers or booleans (null = not given); seen an integer or a
 *               time string (see gc_time_parse). Unknown members are errors.
 *
 * CSV follows RFC 4180: fields may be quoted, a quoted field may contain
 * commas, doubled quotes ("") and line breaks; a quote inside an unquoted
 * field is taken literally; text after a closing quote is an error. Lines
 * may end in LF or CRLF. Header names are matched case-insensitively after
 * trimming. A UTF-8 byte order mark at the start is skipped. Blank lines
 * (empty or only spaces/tabs) are ignored in every format.
 *
 * The format is the one passed to gc_ingest_parser_new, or, with
 * GC_INGEST_AUTO, decided by the first non-blank line: '{' means JSON Lines,
 * anything else is a CSV header (gc_ingest_format_for_path picks by file
 * extension first).
 *
 * Validation done here, so that a bad record is reported with its file and
 * line instead of failing a whole server message mid-stream: entity types
 * (see gc_type_parse); keys 1..4096 bytes of UTF-8, not empty after
 * the server's normalisation (gc_key_normalize); a link may not join an
 * entity to itself (compared after normalisation); labels 1..128 bytes of
 * UTF-8 without control characters; attribute names 1..128 bytes, values
 * 0..4096 bytes of UTF-8; times 0..9999-12-31T23:59:59Z. NUL bytes in the
 * input and lines over GC_INGEST_MAX_LINE bytes are errors.
 *
 * Errors
 * ------
 * The first error stops the parser. Its message has the form
 *     links.csv:17: b_type: unknown entity type 'foo'
 * (name:line: field: text; the field part is left out when the error is not
 * about one field). The line is the physical line number (1-based) on which
 * the record starts; a CSV record spanning several lines (a quoted line
 * break) is reported at its first line.
 *
 * Thread safety: a parser is used by one thread at a time; distinct parsers
 * are independent. The other functions here are reentrant.
 */
#ifndef GC_INGEST_H
#define GC_INGEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/entity.h"

/* Entity types (gd_etype, GD_TYPE_*) and the limits the parser checks
 * (GD_KEY_MAX, GD_LABEL_MAX, GD_ATTR_NAME_MAX, GD_ATTR_VALUE_MAX) are the
 * server's own definitions. */
/* Largest accepted time: 9999-12-31T23:59:59Z. */
#define GC_TIME_MAX INT64_C(253402300799)
/* Longest physical line (bytes, without the line break). */
#define GC_INGEST_MAX_LINE (16u * 1024 * 1024)

/*
 * Parses an entity type name: seller, address, payment_account, device,
 * phone, email, ip, in any case, or the proto names ENTITY_TYPE_SELLER ...
 * (any case). Leading/trailing spaces are not allowed (trim first).
 * Returns 0 and sets *ret_type, or -1 if s is not a type name (NULL-safe).
 */
int gc_type_parse(const char *s, gd_etype *ret_type);

/*
 * Parses a time: unix seconds ("1735689600") or ISO-8601 in UTC:
 *   2025-03-01
 *   2025-03-01T12:00            (seconds optional; 'T' or one space)
 *   2025-03-01T12:00:00Z        (fraction of a second accepted and dropped)
 *   2025-03-01T12:00:00+02:00   (offsets +HH:MM, +HHMM or +HH)
 * No zone means UTC. Values must lie in 0..GC_TIME_MAX.
 * Returns 0 and sets *ret_time, or -1 (s is NULL, empty, malformed, an
 * impossible date such as 2025-02-30, or out of range).
 */
int gc_time_parse(const char *s, int64_t *ret_time);

/* Formats t as "2025-03-01T12:00:00Z" into buf (at least 32 bytes). t == 0
 * formats as "-". Returns buf. */
char *gc_time_format(int64_t t, char *buf, size_t size);

/*
 * Writes the server's normalised form of key (see EntityRef in
 * graphd.proto) into buf (size >= len + 1): white space trimmed and inner
 * runs folded to one space, ASCII letters lower-cased; PHONE keeps only the
 * digits and one leading '+'. Returns the normalised length (0 = the server
 * would reject the key as empty).
 */
size_t gc_key_normalize(gd_etype type, const char *key, size_t len,
                        char *buf);

/* Returns true when s[0..len) is valid UTF-8 (no overlongs, no surrogates,
 * nothing above U+10FFFF). */
bool gc_utf8_valid(const char *s, size_t len);

typedef enum gc_ingest_format {
  GC_INGEST_AUTO = 0,  /* decide from the first non-blank line */
  GC_INGEST_CSV = 1,   /* links or entities CSV, decided by the header */
  GC_INGEST_JSONL = 2, /* JSON Lines, links and entities mixed freely */
} gc_ingest_format;

/* By extension (case-insensitive): .csv -> CSV; .jsonl, .ndjson, .json ->
 * JSONL; anything else (and NULL, "-") -> AUTO. */
gc_ingest_format gc_ingest_format_for_path(const char *path);

/* Parses "csv", "jsonl", "ndjson", "json", "auto" (any case). Returns 0 and
 * sets *ret_format, or -1. */
int gc_ingest_format_parse(const char *s, gc_ingest_format *ret_format);

typedef enum gc_ingest_kind {
  GC_INGEST_LINK = 1,
  GC_INGEST_ENTITY = 2,
} gc_ingest_kind;

typedef struct gc_ingest_attr {
  const char *name;  /* 1..GD_ATTR_NAME_MAX bytes, NUL-terminated */
  const char *value; /* 0..GD_ATTR_VALUE_MAX bytes, NUL-terminated */
} gc_ingest_attr;

/*
 * One parsed record. Every pointer in it is a view into the parser's
 * buffers: valid only during the callback that receives it. Copy what you
 * keep. Keys are passed as written (the server normalises them), but
 * types, labels, seen and CSV header names are trimmed.
 */
typedef struct gc_ingest_record {
  gc_ingest_kind kind;
  unsigned long line; /* physical line (1-based) where the record starts */
  struct {
    gd_etype a_type;
    const char *a_key;
    gd_etype b_type;
    const char *b_key;
    int64_t seen; /* 0 = not given */
  } link;         /* valid when kind == GC_INGEST_LINK */
  struct {
    gd_etype type;
    const char *key;
    const char *const *labels; /* n_labels entries */
    size_t n_labels;
    const gc_ingest_attr *attrs; /* n_attrs entries, in column/member order */
    size_t n_attrs;
    int64_t seen;
  } entity;       /* valid when kind == GC_INGEST_ENTITY */
} gc_ingest_record;

/*
 * Receives each record. Return 0 to go on; any other value stops the
 * parser: the feed/finish call that is running returns GC_INGEST_ESTOPPED
 * (and so do later calls). The callback must not call back into the parser.
 */
typedef int (*gc_ingest_record_cb)(void *userdata, const gc_ingest_record *rec);

/* Return codes of the parser functions. */
enum {
  GC_INGEST_OK = 0,
  GC_INGEST_EDATA = 1,    /* bad input: see gc_ingest_parser_error() */
  GC_INGEST_ESTOPPED = 2, /* the callback returned non-zero */
  GC_INGEST_ENOMEM = 3,   /* out of memory */
};

typedef struct gc_ingest_parser gc_ingest_parser;

/*
 * Creates a parser. name is used in error messages (copied; NULL or "-"
 * gives "<stdin>"). cb may not be NULL. Returns NULL when out of memory.
 * Free with gc_ingest_parser_free.
 */
gc_ingest_parser *gc_ingest_parser_new(const char *name,
                                       gc_ingest_format format,
                                       gc_ingest_record_cb cb, void *userdata);

/*
 * Feeds the next len bytes of the input (any split: records may span calls).
 * Complete records are delivered to the callback before this returns.
 * Returns GC_INGEST_OK, GC_INGEST_EDATA (the first bad record, at which
 * point no later record has been delivered), GC_INGEST_ESTOPPED or
 * GC_INGEST_ENOMEM. After a non-OK return the parser is stopped and
 * returns the same code from every later feed/finish.
 */
int gc_ingest_parser_feed(gc_ingest_parser *p, const void *buf, size_t len);

/*
 * Ends the input: a last line without a line break is parsed, and a quoted
 * CSV field still open is an error ("unterminated quoted field", reported
 * at the line where its record starts). Returns as gc_ingest_parser_feed.
 * An input with no records at all (empty, blank, or a CSV header alone) is
 * fine.
 */
int gc_ingest_parser_finish(gc_ingest_parser *p);

/* The error message ("name:line: field: text"), or "" when there is none.
 * Valid until the parser is freed. */
const char *gc_ingest_parser_error(const gc_ingest_parser *p);

/* Parts of the last error: its line (0 if none), the field ("" when the
 * error is not about one field) and the text without the prefixes. */
unsigned long gc_ingest_parser_error_line(const gc_ingest_parser *p);
const char *gc_ingest_parser_error_field(const gc_ingest_parser *p);
const char *gc_ingest_parser_error_text(const gc_ingest_parser *p);

/* The format in use: the one given, or the detected one (AUTO until the
 * first non-blank line has been seen). */
gc_ingest_format gc_ingest_parser_format(const gc_ingest_parser *p);

/* Physical lines completed so far, records delivered so far. */
unsigned long gc_ingest_parser_lines(const gc_ingest_parser *p);
unsigned long gc_ingest_parser_records(const gc_ingest_parser *p);

/* Frees the parser (NULL is fine). */
void gc_ingest_parser_free(gc_ingest_parser *p);

#endif /* GC_INGEST_H */
