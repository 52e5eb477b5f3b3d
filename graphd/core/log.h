/*
 * Logging. Lines go to stderr as "LEVEL graphd: message". Only the rpc and
 * server layers and main() log above debug; store/ and algorithms/ return
 * errors instead.
 */
#ifndef GD_CORE_LOG_H
#define GD_CORE_LOG_H

enum { GD_LOG_DEBUG, GD_LOG_INFO, GD_LOG_WARN, GD_LOG_ERROR };

/* Messages below this level are dropped. Default GD_LOG_INFO. */
void gd_log_set_level(int level);
void gd_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define gd_debug(...) gd_log(GD_LOG_DEBUG, __VA_ARGS__)
#define gd_info(...) gd_log(GD_LOG_INFO, __VA_ARGS__)
#define gd_warn(...) gd_log(GD_LOG_WARN, __VA_ARGS__)
#define gd_error(...) gd_log(GD_LOG_ERROR, __VA_ARGS__)

#endif
