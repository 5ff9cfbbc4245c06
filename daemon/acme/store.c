/* ferryd ACME: the storage directory (see store.h). */
#include "acme/store.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* Largest file read from storage. */
#define STORE_FILE_MAX (1u << 20)

void ferry_acme_store_path(char *buf, size_t cap, const char *dir, const char *base,
                           const char *ext)
{
    snprintf(buf, cap, "%s/%s%s", dir, base, ext);
}

int ferry_acme_store_mkdir(const char *dir)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof(path), "%s", dir) >= (int)sizeof(path))
        return -ENAMETOOLONG;
    for (char *p = path + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char c = *p;
        *p = '\0';
        if (mkdir(path, 0700) < 0 && errno != EEXIST)
            return -errno;
        *p = c;
        if (c == '\0')
            break;
    }
    struct stat st;
    if (stat(path, &st) < 0)
        return -errno;
    if (!S_ISDIR(st.st_mode))
        return -ENOTDIR;
    /* Ours and too open (made by hand, an old umask): keys must not be readable. */
    if ((st.st_mode & 077) && st.st_uid == geteuid() && chmod(path, 0700) < 0)
        return -errno;
    return 0;
}

/* Whole file into a malloc'd NUL-terminated buffer; NULL with errno. */
static char *slurp(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    char *buf = malloc(STORE_FILE_MAX + 1);
    size_t n = 0;
    ssize_t r = 0;
    while (buf && n < STORE_FILE_MAX && (r = read(fd, buf + n, STORE_FILE_MAX - n)) > 0)
        n += (size_t)r;
    int e = !buf ? ENOMEM : r < 0 ? errno : n >= STORE_FILE_MAX ? EFBIG : 0;
    close(fd);
    if (e) {
        free(buf);
        errno = e;
        return NULL;
    }
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

/* Writes path atomically with mode 0600: temporary file, fsync, rename. */
static int put_file(const char *path, const char *data, size_t len)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof(tmp))
        return -ENAMETOOLONG;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    size_t done = 0;
    int err = 0;
    while (done < len && !err) {
        ssize_t w = write(fd, data + done, len - done);
        if (w < 0 && errno != EINTR)
            err = -errno;
        else if (w > 0)
            done += (size_t)w;
    }
    if (!err && fsync(fd) < 0)
        err = -errno;
    if (close(fd) < 0 && !err)
        err = -errno;
    if (!err && rename(tmp, path) < 0)
        err = -errno;
    if (err)
        unlink(tmp);
    return err;
}

static char *key_pem(EVP_PKEY *key, size_t *len)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *out = NULL, *p;
    if (bio && PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL) == 1) {
        long n = BIO_get_mem_data(bio, &p);
        if (n > 0 && (out = malloc((size_t)n + 1))) {
            memcpy(out, p, (size_t)n);
            out[n] = '\0';
            *len = (size_t)n;
        }
    }
    BIO_free(bio);
    return out;
}

static EVP_PKEY *read_key(const char *path)
{
    size_t len;
    char *pem = slurp(path, &len);
    if (!pem)
        return NULL;
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    EVP_PKEY *k = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    OPENSSL_cleanse(pem, len);
    free(pem);
    ERR_clear_error();
    if (!k)
        errno = EINVAL;
    return k;
}

EVP_PKEY *ferry_acme_store_account_key(const char *dir, char *errbuf, size_t cap)
{
    char path[PATH_MAX];
    ferry_acme_store_path(path, sizeof(path), dir, "account", ".key");
    EVP_PKEY *k = read_key(path);
    if (k)
        return k;
    if (errno != ENOENT) {
        snprintf(errbuf, cap, "%s: %s", path, errno == EINVAL ? "not a PEM private key"
                                                               : strerror(errno));
        return NULL;
    }
    k = EVP_EC_gen("P-256");
    size_t len = 0;
    char *pem = k ? key_pem(k, &len) : NULL;
    int fd = pem ? open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600) : -1;
    int err = fd < 0 ? errno : 0;
    if (fd >= 0) {
        if (write(fd, pem, len) != (ssize_t)len || fsync(fd) < 0)
            err = errno ? errno : EIO;
        close(fd);
        if (err)
            unlink(path);
    }
    if (pem)
        OPENSSL_cleanse(pem, len);
    free(pem);
    if (err == EEXIST) { /* another instance made it first: use theirs */
        EVP_PKEY_free(k);
        k = read_key(path);
        err = k ? 0 : errno;
    }
    if (!err && k)
        return k;
    EVP_PKEY_free(k);
    snprintf(errbuf, cap, "%s: %s", path, strerror(err ? err : ENOMEM));
    return NULL;
}

struct ferry_acme_material *ferry_acme_store_load_cert(const char *dir, const char *base,
                                                       char *why, size_t cap)
{
    char path[PATH_MAX];
    ferry_acme_store_path(path, sizeof(path), dir, base, ".key");
    EVP_PKEY *key = read_key(path);
    if (!key) {
        snprintf(why, cap, "%s: %s", path, errno == EINVAL ? "not a PEM private key"
                                                            : strerror(errno));
        return NULL;
    }
    size_t len;
    ferry_acme_store_path(path, sizeof(path), dir, base, ".crt");
    char *pem = slurp(path, &len);
    struct ferry_acme_material *m = NULL;
    const char *reason = strerror(errno);
    if (pem)
        m = ferry_acme_material_from_pem(pem, len, key, &reason);
    if (!m)
        snprintf(why, cap, "%s: %s", path, reason);
    free(pem);
    EVP_PKEY_free(key);
    return m;
}

int ferry_acme_store_save_cert(const char *dir, const char *base, const char *chain_pem,
                               EVP_PKEY *key)
{
    char path[PATH_MAX];
    size_t len = 0;
    char *pem = key_pem(key, &len);
    if (!pem)
        return -ENOMEM;
    ferry_acme_store_path(path, sizeof(path), dir, base, ".key");
    int err = put_file(path, pem, len);
    OPENSSL_cleanse(pem, len);
    free(pem);
    if (err)
        return err;
    ferry_acme_store_path(path, sizeof(path), dir, base, ".crt");
    return put_file(path, chain_pem, strlen(chain_pem));
}

int ferry_acme_store_try_lock(const char *dir, const char *base)
{
    char path[PATH_MAX];
    ferry_acme_store_path(path, sizeof(path), dir, base, ".lock");
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int err = errno == EWOULDBLOCK ? -EWOULDBLOCK : -errno;
        close(fd);
        return err;
    }
    return fd;
}

int ferry_acme_store_put_challenges(const char *dir, const char *base, const char *text)
{
    char path[PATH_MAX];
    ferry_acme_store_path(path, sizeof(path), dir, base, ".challenges");
    if (text)
        return put_file(path, text, strlen(text));
    return unlink(path) < 0 && errno != ENOENT ? -errno : 0;
}

int ferry_acme_store_put_order(const char *dir, const char *base, const char *url, EVP_PKEY *key)
{
    char path[PATH_MAX];
    int err = 0;
    if (key) {
        size_t len = 0;
        char *pem = key_pem(key, &len);
        if (!pem)
            return -ENOMEM;
        ferry_acme_store_path(path, sizeof(path), dir, base, ".order.key");
        err = put_file(path, pem, len);
        OPENSSL_cleanse(pem, len);
        free(pem);
        return err;
    }
    ferry_acme_store_path(path, sizeof(path), dir, base, ".order");
    if (url)
        return put_file(path, url, strlen(url));
    if (unlink(path) < 0 && errno != ENOENT)
        err = -errno;
    ferry_acme_store_path(path, sizeof(path), dir, base, ".order.key");
    if (unlink(path) < 0 && errno != ENOENT && !err)
        err = -errno;
    return err;
}

char *ferry_acme_store_get_order(const char *dir, const char *base, EVP_PKEY **key)
{
    char path[PATH_MAX];
    ferry_acme_store_path(path, sizeof(path), dir, base, ".order");
    char *url = slurp(path, NULL);
    if (url) {
        url[strcspn(url, "\r\n")] = '\0';
        ferry_acme_store_path(path, sizeof(path), dir, base, ".order.key");
        *key = read_key(path);
    }
    return url;
}

char *ferry_acme_store_get_challenges(const char *dir, const char *base)
{
    char path[PATH_MAX];
    ferry_acme_store_path(path, sizeof(path), dir, base, ".challenges");
    return slurp(path, NULL);
}
