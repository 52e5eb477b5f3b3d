/*
 * graphd-worker: command line, signals, spec input, final status line and
 * exit code. The job itself is gd_worker_run (run.c); the command line,
 * spec format and progress protocol are documented in worker.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <sys/prctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "worker/worker.h"

static atomic_int cancel_flag, committing;
static volatile sig_atomic_t progress_fd_sig = -1;

/* Seconds a cancel may take on the tidy path before the worker leaves. */
#define CANCEL_GRACE_S 1

/*
 * Cancel. The first SIGTERM/SIGINT sets the flag that igraph's
 * interruption handler and the stage loop check (the tidy path: memory
 * freed, "cancelled" printed by main) and arms a one-second alarm, because
 * some steps cannot be interrupted (the projection, igraph's graph
 * conversion and Leiden's set-up take about a second each on 2M ties). If
 * the job is still running when the alarm fires, or on a second signal, the
 * worker prints "cancelled" and _exits at once: nothing is written before
 * the final transaction, so there is nothing to undo (a read transaction
 * left behind is a stale reader slot, cleared by mdb_reader_check). Once the
 * write stage has begun (`committing`), signals are ignored: the snapshot
 * commits whole and the run reports it. Only async-signal-safe calls here.
 */
static void leave_cancelled(void) {
  if (atomic_load(&committing))
    return;
  int fd = progress_fd_sig;
  if (fd >= 0) {
    static const char m[] = "cancelled\n";
    ssize_t w = write(fd, m, sizeof m - 1);
    (void)w;
  }
  _exit(GD_WORKER_EXIT_CANCELLED);
}

static void on_signal(int sig) {
  int saved = errno;
  if (sig == SIGALRM || atomic_exchange(&cancel_flag, 1))
    leave_cancelled();
  else
    alarm(CANCEL_GRACE_S);
  errno = saved;
}

static void usage(FILE *f) {
  fputs("usage: graphd-worker --data DIR [--spec FILE|-] [--progress-fd N] [--ties-fd N]\n"
        "                     [--max-sellers N] [--max-ties N]\n"
        "                     [--map-size-max-mb N] [--max-memory-mb N] [--parent-pid PID]\n"
        "Runs one clustering job and writes its snapshot (see graphd/worker/worker.h).\n",
        f);
}

/* Reads all of fd, at most max bytes (more is an error). */
static int read_all(int fd, char **ret, size_t *ret_n, size_t max, gd_err *err) {
  size_t cap = 4096, n = 0;
  char *buf = malloc(cap);
  if (!buf)
    return gd_err_set(err, GD_ENOMEM, "out of memory");
  for (;;) {
    if (n == cap) {
      if (cap > max) {
        free(buf);
        return gd_err_set(err, GD_EINVALID, "spec: over %zu bytes", max);
      }
      char *nb = realloc(buf, cap * 2);
      if (!nb) {
        free(buf);
        return gd_err_set(err, GD_ENOMEM, "out of memory");
      }
      buf = nb;
      cap *= 2;
    }
    ssize_t r = read(fd, buf + n, cap - n);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0) {
      int e = errno;
      free(buf);
      return gd_err_set(err, GD_EIO, "spec: %s", strerror(e));
    }
    if (r == 0)
      break;
    n += (size_t)r;
  }
  if (n > max) {
    free(buf);
    return gd_err_set(err, GD_EINVALID, "spec: over %zu bytes", max);
  }
  *ret = buf;
  *ret_n = n;
  return GD_OK;
}

static int parse_num(const char *opt, const char *v, uint64_t min, uint64_t *ret, gd_err *err) {
  char *end;
  errno = 0;
  unsigned long long x = strtoull(v, &end, 10);
  if (!*v || *v == '-' || *end || errno == ERANGE || x < min)
    return gd_err_set(err, GD_EINVALID, "%s: '%s' is not an integer >= %llu", opt, v,
                      (unsigned long long)min);
  *ret = x;
  return GD_OK;
}

int main(int argc, char **argv) {
  enum { O_DATA = 1, O_SPEC, O_PROGRESS, O_TIES, O_MAXS, O_MAXT, O_MAPMAX, O_MAXMEM, O_PARENT,
         O_HELP };
  static const struct option longopts[] = {
      {"data", required_argument, NULL, O_DATA},
      {"spec", required_argument, NULL, O_SPEC},
      {"progress-fd", required_argument, NULL, O_PROGRESS},
      {"ties-fd", required_argument, NULL, O_TIES},
      {"max-sellers", required_argument, NULL, O_MAXS},
      {"max-ties", required_argument, NULL, O_MAXT},
      {"map-size-max-mb", required_argument, NULL, O_MAPMAX},
      {"max-memory-mb", required_argument, NULL, O_MAXMEM},
      {"parent-pid", required_argument, NULL, O_PARENT},
      {"help", no_argument, NULL, O_HELP},
      {NULL, 0, NULL, 0},
  };
  const char *spec_path = "-";
  uint64_t v, max_mem_mb = 0;
  int ties_fd = -1;
  gd_worker_opts o = {.max_sellers = 20000000, .max_ties = 200000000, .progress_fd = 1,
                      .cancel = &cancel_flag, .committing = &committing};
  gd_worker_spec spec;
  gd_err err = {0};
  int rc = GD_OK, opt;

  /* Signals first: a cancel may come at any moment after spawn. */
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  progress_fd_sig = 1;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGALRM, &sa, NULL);
  signal(SIGPIPE, SIG_IGN); /* a closed progress pipe is EPIPE: cancel */

  opterr = 0;
  while (rc == GD_OK && (opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    switch (opt) {
    case O_DATA:
      o.data_dir = optarg;
      break;
    case O_SPEC:
      spec_path = optarg;
      break;
    case O_PROGRESS:
      if (!(rc = parse_num("--progress-fd", optarg, 0, &v, &err))) {
        if (v > INT32_MAX || fcntl((int)v, F_GETFD) < 0)
          rc = gd_err_set(&err, GD_EINVALID, "--progress-fd: %s is not an open descriptor",
                          optarg);
        else
          o.progress_fd = progress_fd_sig = (int)v;
      }
      break;
    case O_TIES:
      if (!(rc = parse_num("--ties-fd", optarg, 0, &v, &err))) {
        if (v > INT32_MAX || fcntl((int)v, F_GETFD) < 0)
          rc = gd_err_set(&err, GD_EINVALID, "--ties-fd: %s is not an open descriptor", optarg);
        else
          ties_fd = (int)v;
      }
      break;
    case O_MAXS:
      rc = parse_num("--max-sellers", optarg, 0, &o.max_sellers, &err);
      break;
    case O_MAXT:
      rc = parse_num("--max-ties", optarg, 0, &o.max_ties, &err);
      break;
    case O_MAPMAX:
      if (!(rc = parse_num("--map-size-max-mb", optarg, 1, &v, &err)))
        o.map_size_max = v << 20;
      break;
    case O_MAXMEM:
      rc = parse_num("--max-memory-mb", optarg, 1, &max_mem_mb, &err);
      break;
    case O_PARENT:
      /* Die with the daemon: SIGTERM (a cancel) when the parent goes, and
       * at once if it is gone already. */
      if (!(rc = parse_num("--parent-pid", optarg, 1, &v, &err))) {
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if ((uint64_t)getppid() != v)
          raise(SIGTERM);
      }
      break;
    case O_HELP:
      usage(stdout);
      return 0;
    default:
      rc = gd_err_set(&err, GD_EINVALID, "unknown or incomplete option '%s'",
                      argv[optind - 1]);
    }
  }
  if (!rc && optind < argc)
    rc = gd_err_set(&err, GD_EINVALID, "unexpected argument '%s'", argv[optind]);
  if (!rc && !o.data_dir)
    rc = gd_err_set(&err, GD_EINVALID, "--data DIR is required");
  if (!rc && max_mem_mb) {
    struct rlimit rl = {max_mem_mb << 20, max_mem_mb << 20};
    if (setrlimit(RLIMIT_AS, &rl) != 0)
      rc = gd_err_set(&err, GD_EINVALID, "--max-memory-mb: %s", strerror(errno));
  }
  if (rc) {
    gd_worker_progress(o.progress_fd, NULL, "error %s: %s", gd_strerror(rc), err.msg);
    usage(stderr);
    return gd_worker_exit_code(rc);
  }

  /* The spec. */
  char *text = NULL;
  size_t n = 0;
  int fd = 0;
  if (strcmp(spec_path, "-") != 0 && (fd = open(spec_path, O_RDONLY | O_CLOEXEC)) < 0) {
    rc = gd_err_set(&err, errno == ENOENT ? GD_EINVALID : GD_EIO, "--spec %s: %s", spec_path,
                    strerror(errno));
  } else {
    rc = read_all(fd, &text, &n, GD_WORKER_SPEC_MAX, &err);
    if (fd > 0)
      close(fd);
  }
  if (!rc)
    rc = gd_worker_spec_parse(text, n, &spec, &err);
  free(text);
  if (rc) {
    gd_worker_progress(o.progress_fd, NULL, "error %s: %s", gd_strerror(rc), err.msg);
    return gd_worker_exit_code(rc);
  }

  uint64_t id = 0;
  if (ties_fd >= 0)
    rc = gd_worker_ties(&o, &spec, ties_fd, &id, &err);
  else
    rc = gd_worker_run(&o, &spec, &id, &err);
  atomic_store(&committing, 1); /* the outcome is decided: no late hard exit */
  gd_worker_spec_free(&spec);
  if (rc == GD_OK)
    gd_worker_progress(o.progress_fd, NULL, "done %llu", (unsigned long long)id);
  else if (rc == GD_ECANCELLED)
    gd_worker_progress(o.progress_fd, NULL, "cancelled");
  else
    gd_worker_progress(o.progress_fd, NULL, "error %s: %s", gd_strerror(rc), err.msg);
  return gd_worker_exit_code(rc);
}
