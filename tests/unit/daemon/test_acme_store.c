/* ACME storage on a real directory: created 0700 (a too-open one of ours
 * tightened), files 0600 written whole, the account key made once (a second
 * load reads the same key), a certificate stored and read back (and refused
 * with a key that does not match), the lock held by one descriptor at a time
 * (another open of the same file is refused until it is closed), the
 * challenges file written, read and removed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <errno.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "acme/challenge.h"
#include "acme/store.h"

static char dir[256];

static int setup(void **state)
{
    (void)state;
    char tmpl[] = "/tmp/ferry-acme-store-XXXXXX";
    assert_non_null(mkdtemp(tmpl));
    snprintf(dir, sizeof(dir), "%s/a/b/acme", tmpl);
    return 0;
}

static mode_t mode_of(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_mode & 07777;
}

/* A self-signed certificate for a.test with its key, as a PEM chain. */
static char *cert_pem(EVP_PKEY **key)
{
    X509 *x = NULL;
    assert_int_equal(ferry_acme_challenge_cert("a.test", "x.y", &x, key), 0);
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(b, x);
    char *p;
    long n = BIO_get_mem_data(b, &p);
    /* The BIO's data has no NUL (strndup would read past it under ASan's
     * strict string checks). */
    char *out = malloc((size_t)n + 1);
    assert_non_null(out);
    memcpy(out, p, (size_t)n);
    out[n] = '\0';
    BIO_free(b);
    X509_free(x);
    return out;
}

static void test_directory_and_account_key(void **state)
{
    (void)state;
    assert_int_equal(ferry_acme_store_mkdir(dir), 0);
    assert_int_equal(mode_of(dir), 0700);
    chmod(dir, 0755);
    assert_int_equal(ferry_acme_store_mkdir(dir), 0); /* ours, too open: tightened */
    assert_int_equal(mode_of(dir), 0700);
    char err[256], path[512];
    EVP_PKEY *k1 = ferry_acme_store_account_key(dir, err, sizeof(err));
    assert_non_null(k1);
    snprintf(path, sizeof(path), "%s/account.key", dir);
    assert_int_equal(mode_of(path), 0600);
    EVP_PKEY *k2 = ferry_acme_store_account_key(dir, err, sizeof(err));
    assert_non_null(k2);
    assert_int_equal(EVP_PKEY_eq(k1, k2), 1); /* made once, then read */
    EVP_PKEY_free(k1);
    EVP_PKEY_free(k2);
    FILE *f = fopen(path, "w"); /* a damaged key is an error, never replaced */
    fputs("garbage\n", f);
    fclose(f);
    assert_null(ferry_acme_store_account_key(dir, err, sizeof(err)));
    assert_non_null(strstr(err, "not a PEM private key"));
    unlink(path);
}

static void test_certificate(void **state)
{
    (void)state;
    assert_int_equal(ferry_acme_store_mkdir(dir), 0);
    char why[600], path[512];
    assert_null(ferry_acme_store_load_cert(dir, "a.test", why, sizeof(why)));
    EVP_PKEY *key = NULL, *other = NULL;
    char *pem = cert_pem(&key);
    assert_int_equal(ferry_acme_store_save_cert(dir, "a.test", pem, key), 0);
    snprintf(path, sizeof(path), "%s/a.test.crt", dir);
    assert_int_equal(mode_of(path), 0600);
    snprintf(path, sizeof(path), "%s/a.test.key", dir);
    assert_int_equal(mode_of(path), 0600);
    struct ferry_acme_material *m = ferry_acme_store_load_cert(dir, "a.test", why, sizeof(why));
    assert_non_null(m);
    char *names[] = {"a.test"}, *more[] = {"a.test", "b.test"};
    assert_true(ferry_acme_material_covers(m, names, 1));
    assert_false(ferry_acme_material_covers(m, more, 2));
    assert_true(m->not_after > m->not_before);
    ferry_acme_material_free(m);
    /* the chain of another key: refused */
    char *pem2 = cert_pem(&other);
    assert_int_equal(ferry_acme_store_save_cert(dir, "a.test", pem2, key), 0);
    assert_null(ferry_acme_store_load_cert(dir, "a.test", why, sizeof(why)));
    assert_non_null(strstr(why, "does not match"));
    free(pem);
    free(pem2);
    EVP_PKEY_free(key);
    EVP_PKEY_free(other);
}

static void test_lock_and_challenges(void **state)
{
    (void)state;
    assert_int_equal(ferry_acme_store_mkdir(dir), 0);
    int fd = ferry_acme_store_try_lock(dir, "a.test");
    assert_true(fd >= 0);
    assert_int_equal(ferry_acme_store_try_lock(dir, "a.test"), -EWOULDBLOCK);
    int other = ferry_acme_store_try_lock(dir, "b.test"); /* another certificate: free */
    assert_true(other >= 0);
    close(other);
    close(fd);
    fd = ferry_acme_store_try_lock(dir, "a.test"); /* released with its descriptor */
    assert_true(fd >= 0);
    close(fd);

    assert_null(ferry_acme_store_get_challenges(dir, "a.test"));
    assert_int_equal(ferry_acme_store_put_challenges(dir, "a.test", "a.test tok.tp\n"), 0);
    char *text = ferry_acme_store_get_challenges(dir, "a.test");
    assert_string_equal(text, "a.test tok.tp\n");
    free(text);
    assert_int_equal(ferry_acme_store_put_challenges(dir, "a.test", NULL), 0);
    assert_null(ferry_acme_store_get_challenges(dir, "a.test"));
    assert_int_equal(ferry_acme_store_put_challenges(dir, "a.test", NULL), 0); /* none: fine */

    /* the order in flight: its URL, then its CSR's key; both removed at its end */
    EVP_PKEY *key = NULL, *back = NULL;
    assert_null(ferry_acme_store_get_order(dir, "a.test", &back));
    assert_int_equal(ferry_acme_store_put_order(dir, "a.test", "https://ca/order/7", NULL), 0);
    char *url = ferry_acme_store_get_order(dir, "a.test", &back);
    assert_string_equal(url, "https://ca/order/7");
    assert_null(back);
    free(url);
    X509 *x = NULL;
    assert_int_equal(ferry_acme_challenge_cert("a.test", "k", &x, &key), 0);
    X509_free(x);
    assert_int_equal(ferry_acme_store_put_order(dir, "a.test", NULL, key), 0);
    char path[512];
    snprintf(path, sizeof(path), "%s/a.test.order.key", dir);
    assert_int_equal(mode_of(path), 0600);
    url = ferry_acme_store_get_order(dir, "a.test", &back);
    assert_non_null(url);
    assert_non_null(back);
    assert_int_equal(EVP_PKEY_eq(key, back), 1);
    free(url);
    EVP_PKEY_free(back);
    back = NULL;
    assert_int_equal(ferry_acme_store_put_order(dir, "a.test", NULL, NULL), 0);
    assert_null(ferry_acme_store_get_order(dir, "a.test", &back));
    assert_int_equal(access(path, F_OK), -1);
    EVP_PKEY_free(key);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_directory_and_account_key, setup),
        cmocka_unit_test_setup(test_certificate, setup),
        cmocka_unit_test_setup(test_lock_and_challenges, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
