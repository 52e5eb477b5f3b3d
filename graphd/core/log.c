#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

static int gd__log_level = GD_LOG_INFO;

void gd_log_set_level(int level) { gd__log_level = level; }

void gd_log(int level, const char *fmt, ...) {
  static const char *const names[] = {"debug", "info", "warn", "error"};
  char line[1024], ts[32];
  struct timespec now;
  struct tm tm;
  va_list ap;
  int n;

  if (level < gd__log_level)
    return;
  clock_gettime(CLOCK_REALTIME, &now);
  gmtime_r(&now.tv_sec, &tm);
  strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
  n = snprintf(line, sizeof line, "%s.%03ldZ %s graphd: ", ts, now.tv_nsec / 1000000,
               names[level < 0 ? 0 : level > 3 ? 3 : level]);
  va_start(ap, fmt);
  vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
  va_end(ap);
  /* One fputs per line keeps concurrent lines whole. */
  fprintf(stderr, "%s\n", line);
}
