/* ferryd: work another thread asks of a worker, run on the worker's own
 * thread through its inbox (see ferry_worker_run in worker.h). */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>

#include "asynccore/runtime.h"
#include "worker.h"

/* ---- work run on a worker, through its inbox ---- */

struct run_msg {
    struct ac_future base;
    struct ferry_worker *fw;
    ferry_worker_fn fn;
    ferry_worker_done_fn done;
    void *arg;
    bool ran;
};

static ac_poll_t run_poll(struct ac_future *f, struct ac_context *cx)
{
    struct run_msg *m = (struct run_msg *)f;
    (void)cx;
    m->fn(m->fw, m->arg);
    m->ran = true;
    return AC_READY;
}

static void run_drop(struct ac_future *f)
{
    struct run_msg *m = (struct run_msg *)f;
    if (m->done)
        m->done(m->fw, m->arg, m->ran);
    m->done = NULL;
}

static void run_free(struct ac_future *f) { free(f); }
static const struct ac_future_vtable run_vt = {run_poll, run_drop};

int ferry_worker_run(struct ferry_worker *fw, ferry_worker_fn fn, void *arg,
                     ferry_worker_done_fn done)
{
    struct run_msg *m = malloc(sizeof(*m));
    if (!m) {
        if (done)
            done(fw, arg, false);
        return -ENOMEM;
    }
    *m = (struct run_msg){.base.vt = &run_vt, .fw = fw, .fn = fn, .done = done, .arg = arg};
    return ac_spawn(fw->w, &m->base, run_free); /* on failure m is dropped: done runs */
}

/* ---- the drain signal ---- */

static void cut_drain(struct ferry_worker *fw, void *arg)
{
    (void)arg;
    ac_local_notify_all(&fw->drain);
    ferry_conn_wake_running(fw); /* forwarding connections read the signal when polled */
}

int ferry_worker_cut(struct ferry_worker *fw) { return ferry_worker_run(fw, cut_drain, NULL, NULL); }
