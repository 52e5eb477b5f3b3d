/* Unit tests for graphd/core: error table, UTF-8 validation. */
#include "core/error.h"
#include "core/util.h"
#include "tap.h"

static void test_error_table(void) {
  gd_err e;
  CHECK_EQ_U(gd_err_grpc_status(GD_OK), 0);
  CHECK_EQ_U(gd_err_grpc_status(GD_EINVALID), 3);
  CHECK_EQ_U(gd_err_grpc_status(GD_ENOTFOUND), 5);
  CHECK_EQ_U(gd_err_grpc_status(GD_EMAPFULL), 8);
  CHECK_EQ_U(gd_err_grpc_status(GD_EUNAVAILABLE), 14);
  CHECK_EQ_U(gd_err_grpc_status(GD_EUNAUTHENTICATED), 16);
  CHECK_EQ_U(gd_err_grpc_status(9999), 13);
  CHECK_STR(gd_strerror(GD_ENOTFOUND), "not found");
  CHECK_STR(gd_strerror(-1), "unknown error");
  CHECK_EQ_U(gd_err_set(&e, GD_EINVALID, "empty key"), GD_EINVALID);
  gd_err_prefix(&e, "links[%d].a.key", 3);
  CHECK_STR(e.msg, "links[3].a.key: empty key");
  CHECK_EQ_U(e.code, GD_EINVALID);
  gd_err_clear(&e);
  CHECK_EQ_U(e.code, GD_OK);
}

static void test_utf8(void) {
  CHECK(gd_utf8_valid("", 0));
  CHECK(gd_utf8_valid("abc", 3));
  CHECK(gd_utf8_valid("\xc3\xa9", 2));         /* é */
  CHECK(gd_utf8_valid("\xe2\x82\xac", 3));     /* € */
  CHECK(gd_utf8_valid("\xf0\x9f\x98\x80", 4)); /* emoji */
  CHECK(!gd_utf8_valid("\xc3", 1));            /* truncated */
  CHECK(!gd_utf8_valid("\xc0\xaf", 2));        /* overlong */
  CHECK(!gd_utf8_valid("\xe0\x80\xaf", 3));    /* overlong */
  CHECK(!gd_utf8_valid("\xed\xa0\x80", 3));    /* surrogate */
  CHECK(!gd_utf8_valid("\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
  CHECK(!gd_utf8_valid("\xff", 1));
  CHECK(!gd_utf8_valid("a\0b", 3)); /* NUL */
}

static void test_be64(void) {
  uint8_t b[8];
  gd_be64_put(b, UINT64_C(0x0102030405060708));
  CHECK_EQ_U(b[0], 1);
  CHECK_EQ_U(b[7], 8);
  CHECK_EQ_U(gd_be64_get(b), UINT64_C(0x0102030405060708));
}

TAP_MAIN(T(test_error_table), T(test_utf8), T(test_be64))
