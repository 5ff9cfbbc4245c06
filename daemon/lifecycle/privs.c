/* ferryd: dropping privileges after binding and reading keys.
 *
 * Order matters: supplementary groups, then the group, then the user (once
 * the uid is not 0 the others can no longer be changed), then no_new_privs.
 * Changing the uid away from 0 clears the effective and permitted
 * capabilities. Any failure is fatal: running with more rights than asked is
 * worse than not running.
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "lifecycle/privs.h"

/* A decimal id ("65534") into *id; false for anything else. */
static bool numeric_id(const char *s, unsigned long *id)
{
    if (!s[0] || strspn(s, "0123456789") != strlen(s) || strlen(s) > 9)
        return false;
    *id = strtoul(s, NULL, 10);
    return true;
}

/* A user by name, else by number (ferry.ini(5): a name or a number). */
static struct passwd *find_user(const char *user)
{
    unsigned long id;
    struct passwd *pw = getpwnam(user);
    if (!pw && numeric_id(user, &id))
        pw = getpwuid((uid_t)id);
    return pw;
}

static int lookup_group(const char *name, gid_t *gid, char *err, size_t errlen)
{
    unsigned long id;
    struct group *gr = getgrnam(name);
    if (!gr && numeric_id(name, &id))
        gr = getgrgid((gid_t)id);
    if (!gr) {
        snprintf(err, errlen, "unknown group '%s'", name);
        return -1;
    }
    *gid = gr->gr_gid;
    return 0;
}

int ferry_privs_lookup(const char *user, const char *group, uid_t *uid, gid_t *gid, char *err,
                       size_t errlen)
{
    *uid = (uid_t)-1;
    *gid = (gid_t)-1;
    if (user[0]) {
        struct passwd *pw = find_user(user);
        if (!pw) {
            snprintf(err, errlen, "unknown user '%s'", user);
            return -1;
        }
        *uid = pw->pw_uid;
        *gid = pw->pw_gid;
    }
    return group[0] ? lookup_group(group, gid, err, errlen) : 0;
}

int ferry_drop_privileges(const char *user, const char *group, char *err, size_t errlen)
{
    if (!user[0] && !group[0])
        return 0;
    struct passwd *pw = NULL;
    gid_t gid = (gid_t)-1;
    if (user[0]) {
        pw = find_user(user);
        if (!pw) {
            snprintf(err, errlen, "unknown user '%s'", user);
            return -1;
        }
        gid = pw->pw_gid;
    }
    if (group[0] && lookup_group(group, &gid, err, errlen) != 0)
        return -1;
    if ((!pw || (getuid() == pw->pw_uid && geteuid() == pw->pw_uid)) && getgid() == gid &&
        getegid() == gid && getuid() != 0)
        goto no_new_privs; /* already that user (e.g. started so by systemd): nothing to drop */
    if (pw ? initgroups(pw->pw_name, gid) != 0 : setgroups(1, &gid) != 0) {
        snprintf(err, errlen, "cannot set supplementary groups: %s", strerror(errno));
        return -1;
    }
    if (setgid(gid) != 0) {
        snprintf(err, errlen, "cannot set group %u: %s", (unsigned)gid, strerror(errno));
        return -1;
    }
    if (pw && setuid(pw->pw_uid) != 0) {
        snprintf(err, errlen, "cannot set user %s: %s", user, strerror(errno));
        return -1;
    }
    if (pw && pw->pw_uid != 0 && (setuid(0) == 0 || geteuid() == 0)) {
        snprintf(err, errlen, "could regain root after dropping to %s", user);
        return -1;
    }
no_new_privs:
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
        snprintf(err, errlen, "cannot set no_new_privs: %s", strerror(errno));
        return -1;
    }
    return 0;
}
