/*
 * Server streams that follow a source (rpc_int.h, rpc_follow): WatchJob
 * follows a job, WatchAlerts the alert log.
 *
 * The server may call on_cancel on another thread while the call is being
 * finished; follow_mu and refs keep the state alive for it (the call
 * itself is kept alive by the server during on_cancel). One lock for all
 * such streams: it is held only to move a pointer or a count.
 */
#include "rpc/rpc_int.h"

static pthread_mutex_t follow_mu = PTHREAD_MUTEX_INITIALIZER;

void rpc_follow_init(rpc_follow *f, gd_call *c, void (*unlisten)(rpc_follow *),
                     void (*destroy)(rpc_follow *)) {
  pthread_mutex_init(&f->mu, NULL);
  f->refs = 1;
  f->call = c;
  f->unlisten = unlisten;
  f->destroy = destroy;
  pthread_mutex_lock(&follow_mu);
  gd_call_set_user(c, f);
  pthread_mutex_unlock(&follow_mu);
}

void rpc_follow_abandon(rpc_follow *f) {
  pthread_mutex_lock(&follow_mu);
  gd_call_set_user(f->call, NULL);
  pthread_mutex_unlock(&follow_mu);
  pthread_mutex_destroy(&f->mu);
  f->destroy(f);
}

static void unref(rpc_follow *f) {
  pthread_mutex_lock(&follow_mu);
  bool last = --f->refs == 0;
  pthread_mutex_unlock(&follow_mu);
  if (last) {
    pthread_mutex_destroy(&f->mu);
    f->destroy(f);
  }
}

void rpc_follow_end(rpc_follow *f, int code, const char *msg) {
  f->unlisten(f);
  pthread_mutex_lock(&follow_mu);
  gd_call_set_user(f->call, NULL);
  pthread_mutex_unlock(&follow_mu);
  gd_call_finish(f->call, code, msg, NULL, 0);
  unref(f);
}

void rpc_follow_start(rpc_follow *f, bool listening, void (*send)(rpc_follow *f)) {
  if (!listening) {
    gd_call *c = f->call;
    rpc_follow_abandon(f);
    rpc_fail_code(c, GD_ENOMEM, "out of memory");
    return;
  }
  pthread_mutex_lock(&f->mu);
  if (!f->writing && !f->done)
    send(f);
  pthread_mutex_unlock(&f->mu);
}

bool rpc_follow_written(rpc_follow *f, bool end) {
  f->writing = false;
  if (!end && !f->done)
    return false;
  if (f->finished)
    return false;
  f->done = f->finished = true;
  return true;
}

void rpc_follow_cancel(gd_call *c) {
  pthread_mutex_lock(&follow_mu);
  rpc_follow *f = gd_call_user(c);
  if (f)
    f->refs++;
  pthread_mutex_unlock(&follow_mu);
  if (!f)
    return;
  pthread_mutex_lock(&f->mu);
  f->done = true;
  bool fin = !f->writing && !f->finished;
  if (fin)
    f->finished = true;
  pthread_mutex_unlock(&f->mu);
  if (fin)
    rpc_follow_end(f, GD_ECANCELLED, "call cancelled");
  unref(f);
}
