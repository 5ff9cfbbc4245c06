/* TEST-ONLY EMULATION of FreeBSD's <sys/event.h> on Linux (tests/kqueue_emul/).
 *
 * Lets asynccore's kqueue backend (asynccore/src/poller_kqueue.c) be built
 * and run under its unit suite on a machine without kqueue: meson setup
 * -Dkqueue_emulation=true. The declarations follow FreeBSD 14's
 * sys/sys/event.h; the behaviour (kevent_emul.c) follows the kevent(2)
 * manual for what the backend uses. It is not a kqueue: see the README
 * beside this file for what it covers and where it differs.
 */
#ifndef KQUEUE_EMUL_SYS_EVENT_H
#define KQUEUE_EMUL_SYS_EVENT_H

#include <stdint.h>
#include <time.h>

#define KQUEUE_EMULATION 1

struct kevent {
    uintptr_t ident;       /* identifier for this event (a descriptor, or a user number) */
    short filter;          /* filter for event */
    unsigned short flags;  /* action flags for kqueue */
    unsigned int fflags;   /* filter flag value */
    int64_t data;          /* filter data value */
    void *udata;           /* opaque user data identifier */
    uint64_t ext[4];       /* extensions */
};

#define EV_SET(kevp_, a, b, c, d, e, f)                                                   \
    do {                                                                                  \
        *(kevp_) = (struct kevent){                                                       \
            .ident = (a), .filter = (b), .flags = (c), .fflags = (d), .data = (e),        \
            .udata = (f), .ext = {0},                                                     \
        };                                                                                \
    } while (0)

/* filters */
#define EVFILT_READ (-1)
#define EVFILT_WRITE (-2)
#define EVFILT_USER (-11)

/* actions */
#define EV_ADD 0x0001     /* add event to kq (implies enable) */
#define EV_DELETE 0x0002  /* delete event from kq */
#define EV_ENABLE 0x0004  /* enable event */
#define EV_DISABLE 0x0008 /* disable event (not reported) */

/* flags */
#define EV_ONESHOT 0x0010 /* only report one occurrence */
#define EV_CLEAR 0x0020   /* clear event state after reporting */
#define EV_RECEIPT 0x0040 /* force EV_ERROR on success, data == 0 */

/* returned values */
#define EV_EOF 0x8000   /* EOF detected */
#define EV_ERROR 0x4000 /* error, data contains errno */

/* EVFILT_USER: fflags control and the trigger */
#define NOTE_FFNOP 0x00000000u
#define NOTE_FFAND 0x40000000u
#define NOTE_FFOR 0x80000000u
#define NOTE_FFCOPY 0xc0000000u
#define NOTE_FFCTRLMASK 0xc0000000u
#define NOTE_FFLAGSMASK 0x00ffffffu
#define NOTE_TRIGGER 0x01000000u

int kqueue(void);
int kevent(int kq, const struct kevent *changelist, int nchanges, struct kevent *eventlist,
           int nevents, const struct timespec *timeout);

#endif
