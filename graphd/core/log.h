/*
 * Logging. One line per message on stderr, written with one call so that
 * lines from concurrent threads stay whole. Two formats:
 *
 *   text (default)  2026-11-29T09:00:00.123Z info graphd: message
 *   json            {"ts":"2026-11-29T09:00:00.123Z","level":"info","msg":"message"}
 *
 * JSON Lines carry exactly those three keys; the message is escaped by
 * json-c. Only the rpc, server and jobs layers and main() log above debug;
 * store/ and algorithms/ return errors instead.
 *
 * The settings are process-wide and meant to be set once at start, before
 * other threads log.
 */
#ifndef GD_CORE_LOG_H
#define GD_CORE_LOG_H

#include <stdbool.h>

enum { GD_LOG_DEBUG, GD_LOG_INFO, GD_LOG_WARN, GD_LOG_ERROR };

/* Messages below this level are dropped. Default GD_LOG_INFO. */
void gd_log_set_level(int level);
/* JSON Lines (true) or text (false, the default). */
void gd_log_set_json(bool json);
/* "debug", "info", "warn" or "error" -> level; -1 for anything else. */
int gd_log_level_parse(const char *name);

void gd_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define gd_debug(...) gd_log(GD_LOG_DEBUG, __VA_ARGS__)
#define gd_info(...) gd_log(GD_LOG_INFO, __VA_ARGS__)
#define gd_warn(...) gd_log(GD_LOG_WARN, __VA_ARGS__)
#define gd_error(...) gd_log(GD_LOG_ERROR, __VA_ARGS__)

#endif
