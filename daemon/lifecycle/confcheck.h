/* ferryd: loading the configuration with every check that needs no socket
 * and no DNS, in one run (ferry.ini(5): every error of every pass, in line
 * order, at its own line).
 *
 * The config module finds syntax, value and reference errors; the TLS layer
 * finds unreadable certificates, keys that do not match, bad cipher lists.
 * A file with errors of the first kind still has its TLS files checked, on
 * what could be read of it, so that an operator fixing a file sees all of
 * its errors at once rather than one pass at a time.
 */
#ifndef FERRY_CONFCHECK_H
#define FERRY_CONFCHECK_H

#include <stdint.h>

#include "ferry_config.h"

/* Loads `path`. Without errors, returns the configuration (its TLS files
 * are checked when the generation is built, which reports its errors the
 * same way). With errors, checks the TLS material of what could be read,
 * adds those errors (each reported once) and returns NULL. ferryd -t, the
 * start and every reload use it. */
struct ferry_config *ferry_config_load_checked(const char *path,
                                               struct ferry_config_errors *errs);

/* ferryd -t (ferryd(8)): what ferry_config_load_checked checks, and the
 * files ferryd would open for writing at start (a log or access_log file, the
 * state_file, in a directory that is missing or not writable: errors at
 * their lines). Warnings go to warns ("FILE:LINE: warning: message", in
 * line order): the configuration's own (health_timeout, backup-only
 * backends) and certificates (a listener's or a backend's tls_cert) expired
 * or expiring within FERRY_TEST_CERT_DAYS, naming their notAfter; now is
 * Unix time. warns is emptied first. Returns the configuration when it has
 * no error, else NULL. */
#define FERRY_TEST_CERT_DAYS 14
struct ferry_config *ferry_config_test(const char *path, int64_t now,
                                       struct ferry_config_errors *errs,
                                       struct ferry_config_errors *warns);

/* The `user` and `group` of [global] must exist (the privilege drop at
 * start needs them): an error at each one's line otherwise. ferryd -t and
 * the start (before anything is bound) use it. */
void ferry_config_check_accounts(const struct ferry_config *cfg,
                                 struct ferry_config_errors *errs);

#endif
