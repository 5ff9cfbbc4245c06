/* config: [acme NAME] sections and tls_acme (values, defaults, references,
 * and the -t errors: unknown account, no tls = on, no directory, wildcards). */
#include "cfg_test.h"

#define ACME_LE "[acme le]\ndirectory = https://127.0.0.1:14000/dir\n"
#define TLS_L "[listener l]\nbind = 127.0.0.1:8443\nbackend = b\ntls = on\n"

static void test_defaults_and_values(void **state)
{
    (void)state;
    struct ferry_config *cfg = cfg_ok(TLS_L "tls_acme = le Www.Example.com. api.example.com\n"
                                      ACME_LE CFG_BACKEND_B);
    assert_int_equal(cfg->nacmes, 1);
    const struct ferry_acme *a = &cfg->acmes[0];
    assert_string_equal(a->name, "le");
    assert_int_equal(a->line, 6);
    assert_string_equal(a->directory, "https://127.0.0.1:14000/dir");
    assert_null(a->email);
    assert_null(a->ca);
    assert_string_equal(a->storage, "/var/lib/ferry/acme/le");
    assert_int_equal(a->key_type, FERRY_ACME_KEY_ECDSA_P256);
    assert_int_equal(a->renew_before_s, 30 * 86400);
    assert_null(a->eab_kid);
    const struct ferry_listener *l = &cfg->listeners[0];
    assert_int_equal(l->ntls_acme, 1);
    assert_int_equal(l->ntls_certs, 0);
    assert_string_equal(l->tls_acme[0].acme, "le");
    assert_int_equal(l->tls_acme[0].acme_index, 0);
    assert_int_equal(l->tls_acme[0].line, 5);
    assert_int_equal(l->tls_acme[0].nnames, 2);
    assert_string_equal(l->tls_acme[0].names[0], "www.example.com");
    assert_string_equal(l->tls_acme[0].names[1], "api.example.com");
    ferry_config_free(cfg);

    cfg = cfg_ok(TLS_L "tls_acme = z a.example.com\ntls_acme = z b.example.com\n"
                 "[acme z]\ndirectory = https://ca.example/dir\nemail = ops@example.com\n"
                 "ca = /etc/ca.pem\nstorage = acme-z\nkey_type = rsa-2048\n"
                 "renew_before = 90s\neab_kid = kid-1\neab_hmac_key = abcdefghijklmnop_-12\n"
                 CFG_BACKEND_B);
    a = &cfg->acmes[0];
    assert_string_equal(a->email, "ops@example.com");
    assert_string_equal(a->ca, "/etc/ca.pem");
    assert_true(a->storage[0] == '/');
    assert_non_null(strstr(a->storage, "/acme-z"));
    assert_int_equal(a->key_type, FERRY_ACME_KEY_RSA_2048);
    assert_int_equal(a->renew_before_s, 90);
    assert_string_equal(a->eab_kid, "kid-1");
    assert_string_equal(a->eab_hmac_key, "abcdefghijklmnop_-12");
    assert_int_equal(cfg->listeners[0].ntls_acme, 2);
    ferry_config_free(cfg);

    cfg = cfg_ok(TLS_L "tls_acme = le a.example.com\n" ACME_LE "renew_before = 10d\n"
                 CFG_BACKEND_B);
    assert_int_equal(cfg->acmes[0].renew_before_s, 10 * 86400);
    ferry_config_free(cfg);
}

static void test_errors(void **state)
{
    (void)state;
    /* an account no [acme] section defines */
    cfg_expect_one(TLS_L "tls_acme = nope a.example.com\n" CFG_BACKEND_B, 5,
                   "tls_acme: unknown acme \"nope\"");
    /* tls_acme without tls = on */
    cfg_expect_one("[listener l]\nbind = 127.0.0.1:8443\nbackend = b\n"
                   "tls_acme = le a.example.com\n" ACME_LE CFG_BACKEND_B, 4,
                   "tls_acme has no effect without tls = on");
    /* [acme] without directory: at its header */
    cfg_expect_one(TLS_L "tls_acme = le a.example.com\n[acme le]\nemail = a@b.c\n"
                   CFG_BACKEND_B, 6, "[acme le] has no directory");
    /* wildcards cannot be validated with tls-alpn-01 */
    cfg_expect_one(TLS_L "tls_acme = le a.example.com *.example.com\n" ACME_LE CFG_BACKEND_B,
                   5, "wildcard name \"*.example.com\" cannot be validated");
    cfg_expect_one(TLS_L "tls_acme = le\n" ACME_LE CFG_BACKEND_B, 5,
                   "tls_acme needs an acme name and at least one DNS name");
    cfg_expect_one(TLS_L "tls_acme = le a.example.com a.example.com\n" ACME_LE CFG_BACKEND_B,
                   5, "given twice");
    cfg_expect_one(TLS_L "tls_acme = le bad..name\n" ACME_LE CFG_BACKEND_B, 5,
                   "invalid name \"bad..name\"");
    cfg_expect_one(TLS_L "tls_acme = le 127.0.0.1\n" ACME_LE CFG_BACKEND_B, 5,
                   "invalid name \"127.0.0.1\"");
    cfg_expect_one(TLS_L "tls_acme = le a.example.com\n[acme le]\n"
                   "directory = http://insecure/dir\n" CFG_BACKEND_B, 7,
                   "expected an https:// URL");
    cfg_expect_one(TLS_L "tls_acme = le a.example.com\n" ACME_LE "key_type = dsa\n"
                   CFG_BACKEND_B, 8, "ecdsa-p256 or rsa-2048");
    cfg_expect_one(TLS_L "tls_acme = le a.example.com\n" ACME_LE "renew_before = 400d\n"
                   CFG_BACKEND_B, 8, "renew_before");
    cfg_expect_one(TLS_L "tls_acme = le a.example.com\n" ACME_LE "email = nobody\n"
                   CFG_BACKEND_B, 8, "e-mail address");
    cfg_expect_one(TLS_L "tls_acme = le a.example.com\n" ACME_LE "eab_kid = k\n"
                   CFG_BACKEND_B, 8, "eab_kid needs eab_hmac_key");
    cfg_expect_one(TLS_L "tls_acme = le a.example.com\n" ACME_LE "colour = blue\n"
                   CFG_BACKEND_B, 8, "unknown key \"colour\" in [acme le]");
    cfg_expect_one(TLS_L "tls_acme = le a.example.com\n" ACME_LE "email = a@b.c\nemail = d@e.f\n"
                   CFG_BACKEND_B, 9, "email given twice");
    cfg_expect_one(TLS_L "tls_acme = le a.example.com\n" ACME_LE ACME_LE CFG_BACKEND_B, 8,
                   "duplicate section [acme le]");
    cfg_expect_one("[listener l]\nbind = 127.0.0.1:8443\nbackend = b\ntls = on\n" CFG_BACKEND_B,
                   1, "tls = on needs at least one tls_cert or tls_acme");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_and_values),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
