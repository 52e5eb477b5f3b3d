#include "core/log.h"

#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static int gd__log_level = GD_LOG_INFO;
static bool gd__log_json;

static const char *const gd__level_names[] = {"debug", "info", "warn", "error"};

void gd_log_set_level(int level) { gd__log_level = level; }

void gd_log_set_json(bool json) { gd__log_json = json; }

int gd_log_level_parse(const char *name) {
  for (int i = 0; i < 4; i++)
    if (strcmp(name, gd__level_names[i]) == 0)
      return i;
  return -1;
}

void gd_log(int level, const char *fmt, ...) {
  char msg[1024], ts[48], day[32];
  struct timespec now;
  struct tm tm;
  va_list ap;

  if (level < gd__log_level)
    return;
  const char *lvl = gd__level_names[level < 0 ? 0 : level > 3 ? 3 : level];
  clock_gettime(CLOCK_REALTIME, &now);
  gmtime_r(&now.tv_sec, &tm);
  strftime(day, sizeof day, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(ts, sizeof ts, "%s.%03ldZ", day, now.tv_nsec / 1000000);
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);

  if (gd__log_json) {
    json_object *o = json_object_new_object();
    if (o) {
      json_object_object_add(o, "ts", json_object_new_string(ts));
      json_object_object_add(o, "level", json_object_new_string(lvl));
      json_object_object_add(o, "msg", json_object_new_string(msg));
      const char *line =
          json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
      if (line) {
        fprintf(stderr, "%s\n", line);
        json_object_put(o);
        return;
      }
      json_object_put(o);
    }
    /* Out of memory: fall through to a text line rather than lose it. */
  }
  fprintf(stderr, "%s %s graphd: %s\n", ts, lvl, msg);
}
