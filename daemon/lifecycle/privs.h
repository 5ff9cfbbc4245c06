/* ferryd: dropping privileges (see privs.c). */
#ifndef FERRY_PRIVS_H
#define FERRY_PRIVS_H

#include <stddef.h>
#include <sys/types.h>

/* The ids ferry_drop_privileges would switch to ((uid_t)-1 / (gid_t)-1:
 * unchanged). Returns 0, or -1 with a message in err. */
int ferry_privs_lookup(const char *user, const char *group, uid_t *uid, gid_t *gid, char *err,
                       size_t errlen);

/* Switches to user/group ("" for none; the group defaults to the user's) and
 * sets no_new_privs. Returns 0, or -1 with a message in err. */
int ferry_drop_privileges(const char *user, const char *group, char *err, size_t errlen);

#endif
